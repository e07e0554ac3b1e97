"""Gradient phases: one `Trainer.fit` each, so freezing and BatchNorm modes never change mid-fit (safe under DDP)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Checkpoint

from lpft_bench.faults import fault_point
from lpft_bench.interrupts import StopOnSignal
from lpft_bench.paths import load_safetensors
from lpft_bench.storage import set_aside
from lpft_bench.strategies.callbacks import EpochRecorder, FinetuneDiagnostics, ProgressNote, SelectedWeights
from lpft_bench.strategies.module import AdaptationModule
from lpft_bench.strategies.selection import select_epoch
from lpft_bench.strategies.trainability import (ApplyTrainability, BiasesAndHead, HeadOnly, LayerGroups,
                                                Trainability)

from .base import PhaseContext, PhaseKind, head_state, register_kind


def reinitialise(module: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Fresh PyTorch-default parameters (and BatchNorm statistics) for exactly the named submodules."""
    for name in names:
        for submodule in module.get_submodule(name).modules():
            if hasattr(submodule, "reset_parameters"):
                submodule.reset_parameters()


def reinitialise_from(module: torch.nn.Module, fresh: torch.nn.Module, names: tuple[str, ...]) -> None:
    """The named submodules' parameters and buffers taken from `fresh`, the same architecture newly built by
    timm: the model's own initialiser (ResNet's zero-init of each block's last BatchNorm gamma), not PyTorch's
    per-layer defaults."""
    blocks = dict(module.named_modules())
    unknown = [name for name in names if name not in blocks]
    if unknown:
        raise ValueError(f"cannot re-initialise {unknown}: not submodules of {type(module).__name__} "
                         "(ResNet-50's last blocks are layer4.0, layer4.1, layer4.2; a smaller ResNet may have only layer4.0)")
    for name in names:
        blocks[name].load_state_dict(fresh.get_submodule(name).state_dict())


def probe_subset(dataset, size: int):
    """A fixed subset (seed 0, same for every job) on which feature metrics are measured."""
    if len(dataset) <= size:
        return dataset
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return torch.utils.data.Subset(dataset, sorted(indices.tolist()))


class EpochCheckpoint(Checkpoint):
    """The phase's resume checkpoint at `path`, replaced atomically at the end of every training epoch, whatever
    Lightning's `ModelCheckpoint` flags do in a given version (2.6 writes `save_last` only when training ends).

    A `Checkpoint`, so Lightning calls it after every other callback: their end-of-epoch state (the recorded
    epochs, the diagnostics' start) is in it. Every rank calls `save_checkpoint`; global rank zero writes."""

    def __init__(self, path: Path, phase_key: str):
        self.path, self.phase_key = path, phase_key

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        partial = self.path.with_name(f".{self.path.name}.partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            fault_point(f"write {self.path.name}")
            os.replace(partial, self.path)
        trainer.strategy.barrier("EpochCheckpoint")
        fault_point(f"epoch {self.phase_key} {trainer.current_epoch}")

    def resume_path(self) -> Path | None:
        """The checkpoint to resume from, if one loads; a truncated or unreadable one is moved aside."""
        if not self.path.exists():
            return None
        try:
            torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError... for a damaged file
            set_aside(self.path, f"checkpoint unreadable ({error}), the phase restarts from its first epoch")
            return None
        return self.path


class GradientPhase(PhaseKind):
    """Trains by SGD/AdamW for `epochs` what its `trainability` policy says; checkpointed every epoch
    (`EpochCheckpoint`), so a killed phase resumes."""

    by_gradient = True

    def __init__(self, name: str, trainability: Trainability):
        self.name, self.trainability = name, trainability
        self.trains_backbone, self.fields = trainability.trains_backbone, trainability.fields

    def validate(self, phase) -> None:
        self.trainability.validate(phase)
        if phase.epochs < 1:
            raise ValueError(f"phase {phase.name!r}: a gradient phase needs epochs >= 1, got {phase.epochs}")

    def forward_passes(self, phase, sizes: dict[str, int], probe_size: int, extracted: set[str]) -> int:
        """Every training image each epoch, every evaluation set each validation, and where the backbone trains
        the diagnostics (training probe at the start, each evaluation probe at start and end)."""
        eval_sizes = [n for name, n in sizes.items() if name != "train"]
        passes = phase.epochs * sizes["train"] + phase.epochs // phase.validate_every * sum(eval_sizes)
        if self.trains_backbone:
            passes += min(probe_size, sizes["train"]) + 2 * sum(min(probe_size, n) for n in eval_sizes)
        return passes

    def run(self, phase, context: PhaseContext) -> dict:
        model, dm = context.model, context.datamodule
        checkpoint_dir = context.work_dir / "checkpoints" / context.phase_key
        if phase.head_init == "random":
            reinitialise(model, ("head",))
        if phase.reinit:
            reinitialise_from(model.backbone, context.fresh_backbone(), phase.reinit)
        recorder = EpochRecorder()
        last = checkpoint_dir / "last.ckpt"
        checkpoint = EpochCheckpoint(last, context.phase_key)
        note = ProgressNote(context.work_dir / "progress.json", phase.name, dm.selection_set)
        selected = SelectedWeights(checkpoint_dir / "selected.safetensors", recorder, dm.selection_set)
        callbacks = [recorder, selected, note, checkpoint, StopOnSignal(context.phase_key),
                     ApplyTrainability(self.trainability, phase)]
        diagnostics = None
        if self.trains_backbone:
            size = context.hparams.get("probe_size", 512)
            diagnostics = FinetuneDiagnostics(
                train_probe=probe_subset(dm.splits.train_eval, size),
                eval_probes={s.name: probe_subset(s.dataset, size) for s in dm.eval_sets},
                splits={s.name: s.split for s in dm.eval_sets},
                pretrained=context.pretrained,
            )
            callbacks.append(diagnostics)
        trainer = context.make_trainer(max_epochs=phase.epochs, callbacks=callbacks,
                                       check_val_every_n_epoch=phase.validate_every)
        module = AdaptationModule(model, phase, self.trainability, dm.eval_sets, dm.num_classes,
                                  pretrained=context.pretrained)
        # Lightning keeps whatever train/eval modes modules have at fit start; a phase starts from train mode
        # and its callbacks put the frozen parts in eval mode.
        model.train()
        # NHWC during the fit, a speed knob (never part of a job's identity): cuDNN's and oneDNN's convolutions
        # prefer it (digits ResNet on one CPU thread: a training step 1.6x, an evaluation forward 2.3x faster).
        # Parameters keep their names and values; NCHW again after the fit, because an eval-mode forward in NHWC
        # differs from NCHW in the last bits and the linear probe's features must not.
        model.to(memory_format=torch.channels_last)
        if context.compile:
            model.compile()  # in place: state_dict keys (phase store, checkpoints) are unchanged
        start = head_state(model.head)
        trainer.fit(module, datamodule=dm, ckpt_path=checkpoint.resume_path(), weights_only=True)
        model.to(memory_format=torch.contiguous_format)
        record = {"name": phase.name, "phase": phase.describe(), "start": start, "epochs": recorder.epochs,
                  "end": head_state(model.head)}
        if recorder.diverged_epoch is not None:
            record["diverged_epoch"] = recorder.diverged_epoch
        chosen = select_epoch(recorder.epochs, dm.selection_set)
        if chosen is not None and chosen is not recorder.epochs[-1] and selected.path.exists():
            context.selected_state = load_safetensors(selected.path)
        if diagnostics is not None:
            record["start"].update(diagnostics.start)
            record.update(diagnostics.end)
        return record


register_kind(GradientPhase("all", LayerGroups(fields=("frozen_groups", "unfreeze_every"))))
register_kind(GradientPhase("head", HeadOnly()))
register_kind(GradientPhase("groups", LayerGroups(fields=("train_groups",), needs_train_groups=True)))
register_kind(GradientPhase("biases", BiasesAndHead()))

