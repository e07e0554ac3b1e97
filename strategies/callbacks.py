"""Behaviour of phases, supplied as Lightning callbacks."""
from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset

from safetensors.torch import load_file, save_file

from lpft_bench.storage import atomic_write, write_json

from .metrics import average_initial_energy, feature_change, parameter_distance
from .posthoc import forward_outputs
from .selection import select_epoch


class ProgressNote(Callback):
    """After every epoch, a one-line note of where the phase is (epoch, total, last selection-set accuracy) in
    `path`, which the matrix's progress bar shows whichever process runs the job."""

    def __init__(self, path, phase: str, selection_set: str):
        self.path, self.phase, self.key = path, phase, f"acc/{selection_set}"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        accuracy = trainer.callback_metrics.get(self.key)
        write_json(self.path, {"phase": self.phase, "epoch": trainer.current_epoch + 1, "epochs": trainer.max_epochs,
                               "acc": None if accuracy is None else round(100 * float(accuracy), 1)})


class SelectedWeights(Callback):
    """The weights of the epoch selection would pick so far (the recorder's rows, so a resumed phase picks as an
    uninterrupted one), held in memory: what the phase's final pass evaluates when that is not its last epoch.
    With each resume checkpoint (`EpochCheckpoint`), `flush` writes them into `directory`, one file named by its
    epoch, unless they are the checkpoint's own model, and `keep_only_flushed` removes older files once the
    checkpoint is in place: whatever checkpoint a resumed phase restarts from, the weights of the epoch its rows
    select are in it or beside it."""

    def __init__(self, directory: Path, recorder: "EpochRecorder", selection_set: str):
        self.directory, self.recorder, self.selection_set = Path(directory), recorder, selection_set
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch: int | None = None
        self._written: int | None = None
        self._in_checkpoint: int | None = None  # the selected epoch, where it is the checkpoint's own epoch
        self._restored: int | None = None

    def path(self, epoch: int) -> Path:
        return self.directory / f"selected-{epoch}.safetensors"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self.recorder.epochs
        chosen = select_epoch(rows, self.selection_set) if rows else None
        if chosen is not None and chosen is rows[-1] and chosen["epoch"] == trainer.current_epoch:
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
            self.epoch = chosen["epoch"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is not None:  # resumed from a checkpoint of the selected epoch: its model is that epoch's
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
            self.epoch, self._restored = self._restored, None

    def flush(self, checkpoint_epoch: int) -> None:
        """Before the checkpoint of `checkpoint_epoch` (rank zero): write the selected weights if they are another
        epoch's and changed since the last write."""
        self._in_checkpoint = self.epoch if self.epoch == checkpoint_epoch else None
        if self.state is None or self._in_checkpoint is not None or self._written == self.epoch:
            return
        state = {k: v.contiguous() for k, v in self.state.items()}
        atomic_write(self.path(self.epoch), lambda tmp: save_file(state, str(tmp)))
        self._written = self.epoch

    def keep_only_flushed(self) -> None:
        """Remove every file the checkpoint now in place does not need."""
        needed = self.path(self.epoch) if self._in_checkpoint is None and self.epoch is not None else None
        for path in self.directory.glob("selected-*.safetensors"):
            if path != needed:
                path.unlink(missing_ok=True)

    def state_dict(self) -> dict:
        return {"in_checkpoint": self._in_checkpoint}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = state_dict["in_checkpoint"]

    def weights_of(self, epoch: int) -> dict[str, torch.Tensor]:
        """Epoch `epoch`'s weights: in memory, or (a resumed phase that selects an epoch from before its restart)
        the file written with the checkpoint it resumed from."""
        if self.epoch == epoch:
            return self.state
        if self.path(epoch).exists():
            return load_file(str(self.path(epoch)))
        raise RuntimeError(f"the weights of selected epoch {epoch} are neither in memory nor in {self.path(epoch)}")


class EpochRecorder(Callback):
    """Collects every evaluated epoch's logged metrics into plain dicts (the job record's history).

    A NaN or infinite training loss stops the fit after that batch: the epoch is recorded with `diverged`
    (and no non-finite number), which selection never picks.
    Its state is saved in Lightning checkpoints, so a resumed phase keeps the epochs run before the crash."""

    def __init__(self):
        self.epochs: list[dict] = []
        self._validated = False
        self.diverged_epoch: int | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            self.diverged_epoch = trainer.current_epoch
            trainer.should_stop = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = not trainer.sanity_checking

    # Lightning validates inside the training epoch; by its end both train and eval metrics are reduced.
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        diverged = self.diverged_epoch == trainer.current_epoch
        if not (self._validated or diverged):
            return
        row = {"epoch": trainer.current_epoch}
        for name, value in trainer.callback_metrics.items():
            number = float(value.item() if isinstance(value, torch.Tensor) else value)
            row[name] = number if math.isfinite(number) else None
        if diverged:
            row["diverged"] = True
        self.epochs.append(row)

    def state_dict(self) -> dict:
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epochs = list(state_dict["epochs"])


def probe_outputs(model: nn.Module, dataset: Dataset, device: torch.device):
    """Features, logits and labels of a (small) probe set in eval mode."""
    return forward_outputs(model, DataLoader(dataset, batch_size=256, generator=torch.Generator()), device)


@torch.no_grad()
def head_outputs(head: nn.Module, features: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The head's logits of given features in eval mode (its modes restored after), in batches as a pass makes."""
    modes = {m: m.training for m in head.modules()}
    head.eval()
    logits = torch.cat([head(features[i : i + 256].to(device)).float().cpu() for i in range(0, len(features), 256)])
    for module, mode in modes.items():
        module.training = mode
    return logits


class FinetuneDiagnostics(Callback):
    """The start of what Ren et al. and Kumar et al. measure around fine-tuning, on a fixed training probe subset,
    in eval mode: the starting head's accuracy and loss on training data, the average initial energy, the head
    norm. Checkpointed (four numbers), so a resumed fit reports its true start; the end (`feature_diagnostics`)
    is measured on the phase's final pass."""

    def __init__(self, train_probe: Dataset, probe_features: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`probe_features`: the backbone's features and the labels of `train_probe` where they are known (the
        probe's feature cache): then only the head runs."""
        self.train_probe, self.probe_features = train_probe, probe_features
        self.start: dict = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start:  # restored from a checkpoint: the fit had already begun
            return
        model = pl_module.model
        if self.probe_features is None:
            _, logits, labels = probe_outputs(model, self.train_probe, pl_module.device)
        else:
            features, labels = self.probe_features
            logits = head_outputs(model.head, features, pl_module.device)
        head_norm = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.head.parameters()))
        self.start = {
            "train_acc": float((logits.argmax(-1) == labels).float().mean()),
            "train_loss": float(F.cross_entropy(logits, labels)),
            "average_initial_energy": average_initial_energy(logits, labels),
            "head_norm": float(head_norm),
        }

    def state_dict(self) -> dict:
        return {"start": self.start}

    def load_state_dict(self, state_dict: dict) -> None:
        self.start = dict(state_dict["start"])


def feature_diagnostics(initial: dict[str, torch.Tensor], final: dict[str, torch.Tensor], splits: dict[str, str],
                        pretrained: dict[str, torch.Tensor], backbone: dict[str, torch.Tensor]) -> dict:
    """Feature change z_0 -> z_T per evaluation set (rows: the same probe examples), its ID/OOD ratio, and the
    backbone's distance from the pretrained weights."""
    change = {name: feature_change(initial[name], final[name]) for name in initial}
    id_sets = [n for n in change if splits[n] == "id"]
    id_distance = sum(change[n]["distance"] for n in id_sets) / max(len(id_sets), 1)
    ratios = {n: id_distance / change[n]["distance"] if change[n]["distance"] > 0 else float("nan")
              for n in change if splits[n] == "ood"}
    return {
        "feature_change": change,
        "id_over_ood_feature_change": ratios,
        "backbone_distance_from_pretrained": parameter_distance(pretrained, backbone),
    }
