"""Behaviour of phases, supplied as Lightning callbacks."""
from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset

from safetensors.torch import save_file

from lpft_bench.storage import atomic_write, write_json

from .metrics import average_initial_energy, feature_change, parameter_distance
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
    """Keeps the weights of the epoch selection would pick so far (the recorder's rows, so a resumed phase picks as
    an uninterrupted one), in `path`: what the job is calibrated at when that is not its last epoch."""

    def __init__(self, path, recorder: "EpochRecorder", selection_set: str):
        self.path, self.recorder, self.selection_set = path, recorder, selection_set

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self.recorder.epochs
        chosen = select_epoch(rows, self.selection_set) if rows else None
        if trainer.is_global_zero and chosen is not None and chosen is rows[-1] and chosen["epoch"] == trainer.current_epoch:
            state = {k: v.detach().cpu().contiguous() for k, v in pl_module.model.state_dict().items()}
            atomic_write(self.path, lambda tmp: save_file(state, str(tmp)))


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


@torch.no_grad()
def _outputs(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 256):
    """Features, logits and labels of `dataset` in eval mode; the model's train/eval state is restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    features, logits, labels = [], [], []
    for x, y in DataLoader(dataset, batch_size=batch_size):
        z = model.backbone(x.to(device))
        features.append(z.float().cpu())
        logits.append(model.head(z).float().cpu())
        labels.append(y)
    for module, mode in modes.items():
        module.training = mode
    return torch.cat(features), torch.cat(logits), torch.cat(labels)


class FinetuneDiagnostics(Callback):
    """What Ren et al. and Kumar et al. measure around fine-tuning, on fixed probe subsets, in eval mode.

    At the start of the fit: accuracy and loss of the starting head on training data, the average initial
    energy, the head norm, and the features z_0 of every probe set. At its end: feature change z_0 -> z_T
    per evaluation set, its ID/OOD ratio, and the backbone's distance from the pretrained weights.
    The start state is checkpointed, so a resumed fit still compares with the true z_0.
    """

    def __init__(self, train_probe: Dataset, eval_probes: dict[str, Dataset], splits: dict[str, str],
                 pretrained: dict[str, torch.Tensor]):
        self.train_probe = train_probe
        self.eval_probes = eval_probes
        self.splits = splits
        self.pretrained = pretrained
        self.start: dict = {}
        self.initial_features: dict[str, torch.Tensor] = {}
        self.end: dict = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start:  # restored from a checkpoint: the fit had already begun
            return
        model, device = pl_module.model, pl_module.device
        _, logits, labels = _outputs(model, self.train_probe, device)
        head_norm = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.head.parameters()))
        self.start = {
            "train_acc": float((logits.argmax(-1) == labels).float().mean()),
            "train_loss": float(F.cross_entropy(logits, labels)),
            "average_initial_energy": average_initial_energy(logits, labels),
            "head_norm": float(head_norm),
        }
        self.initial_features = {name: _outputs(model, ds, device)[0] for name, ds in self.eval_probes.items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model, device = pl_module.model, pl_module.device
        change = {name: feature_change(self.initial_features[name], _outputs(model, ds, device)[0])
                  for name, ds in self.eval_probes.items()}
        id_sets = [n for n in change if self.splits[n] == "id"]
        id_distance = sum(change[n]["distance"] for n in id_sets) / max(len(id_sets), 1)
        ratios = {n: id_distance / change[n]["distance"] if change[n]["distance"] > 0 else float("nan")
                  for n in change if self.splits[n] == "ood"}
        backbone = {k: v for k, v in model.backbone.named_parameters()}
        self.end = {
            "feature_change": change,
            "id_over_ood_feature_change": ratios,
            "backbone_distance_from_pretrained": parameter_distance(self.pretrained, backbone),
        }

    def state_dict(self) -> dict:
        return {"start": self.start, "initial_features": self.initial_features}

    def load_state_dict(self, state_dict: dict) -> None:
        self.start = dict(state_dict["start"])
        self.initial_features = dict(state_dict["initial_features"])
