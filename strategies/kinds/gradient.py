"""Gradient phases: one `Trainer.fit` each, so freezing and BatchNorm modes never change mid-fit (safe under DDP)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Checkpoint

from lpft_bench.faults import fault_point
from lpft_bench.interrupts import StopOnSignal
from lpft_bench.datamodules.base import ID_TEST, ID_VAL
from lpft_bench.storage import set_aside
from lpft_bench.strategies.callbacks import (EpochRecorder, FinetuneDiagnostics, ProgressNote, SelectedWeights,
                                             feature_diagnostics, probe_outputs)
from lpft_bench.strategies.module import AdaptationModule
from lpft_bench.strategies.posthoc import forward_outputs
from lpft_bench.strategies.selection import select_epoch
from lpft_bench.strategies.trainability import (ApplyTrainability, BiasesAndHead, HeadOnly, LayerGroups,
                                                Trainability)

from .base import PhaseContext, PhaseKind, cpu_state, head_state, register_kind, rng_states, set_rng_states


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


def probe_indices(length: int, size: int) -> list[int]:
    """A fixed subset (seed 0, same for every job) of a set's examples, on which feature metrics are measured."""
    if length <= size:
        return list(range(length))
    return sorted(torch.randperm(length, generator=torch.Generator().manual_seed(0))[:size].tolist())


def probe_subset(dataset, size: int):
    indices = probe_indices(len(dataset), size)
    return dataset if len(indices) == len(dataset) else torch.utils.data.Subset(dataset, indices)


class EpochCheckpoint(Checkpoint):
    """The phase's resume checkpoint at `path`: model, optimizer, scheduler, loop and callback state and the RNG
    state, replaced atomically at the end of a training epoch (every epoch but the last, or the first epoch
    ending `every_minutes` after the last write), whatever Lightning's `ModelCheckpoint` flags do in a given version.

    A `Checkpoint`, so Lightning calls it after every other callback: their end-of-epoch state (the recorded
    epochs, the diagnostics' start) is in it, and the selected weights are flushed before it. Every rank calls
    `save_checkpoint`; global rank zero writes."""

    def __init__(self, path: Path, phase_key: str, selected: SelectedWeights, every_minutes: float = 0):
        self.path, self.phase_key, self.selected, self.every_minutes = path, phase_key, selected, every_minutes
        self._last_write = time.monotonic()

    def _due(self, trainer) -> bool:
        if trainer.current_epoch + 1 >= trainer.max_epochs:
            return False  # the fit ends here and its result goes to the phase store: nothing left to resume
        if not self.every_minutes:
            return True
        due = time.monotonic() - self._last_write >= 60 * self.every_minutes
        return trainer.strategy.broadcast(due, src=0)  # one decision, or the ranks' collective save deadlocks

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._due(trainer):
            if trainer.is_global_zero:
                self.selected.flush(trainer.current_epoch)
            partial = self.path.with_name(f".{self.path.name}.partial")
            trainer.save_checkpoint(partial, weights_only=False)  # a resume point: optimiser, loops, callbacks
            if trainer.is_global_zero:
                fault_point(f"write {self.path.name}")
                os.replace(partial, self.path)
                self.selected.keep_only_flushed()
            self._last_write = time.monotonic()
            trainer.strategy.barrier("EpochCheckpoint")
        fault_point(f"epoch {self.phase_key} {trainer.current_epoch}")

    def state_dict(self) -> dict:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict) -> None:
        set_rng_states(state_dict["rng"])

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


def initial_features(context: PhaseContext, probes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """z_0 on each evaluation set's probe examples: the probe's cached features where the backbone is still the
    pretrained one, else one pass over the probe examples now (before the fit, which a resumed phase restores)."""
    model, dm = context.model.to(context.device), context.datamodule
    initial, uncached = {}, {}
    for eval_set in dm.eval_sets:
        indices = probes[eval_set.name]
        cached = context.pretrained_features(eval_set.name, eval_set.dataset)
        if cached is not None:
            initial[eval_set.name] = torch.from_numpy(cached[0][indices])
        else:
            uncached[eval_set.name] = torch.utils.data.Subset(eval_set.dataset, indices)
    if uncached:
        # A backbone no probe shares (random or re-initialised): NHWC, as the fit and its final pass (z_T) run; a
        # scratch job's start passes take about half the CPU time of NCHW. The cache's features stay NCHW (above).
        model.to(memory_format=torch.channels_last)
        for name, subset in uncached.items():
            initial[name] = probe_outputs(model, subset, context.device)[0]
        model.to(memory_format=torch.contiguous_format)
    return initial


def start_features(context: PhaseContext, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The training probe's features and labels where the backbone is still the pretrained one and the probe
    has cached the training set's eval view (a clean-mode LP has): the diagnostics' start needs no pass of its own.
    Never extracted for this alone: that would be the whole training set."""
    cached = context.pretrained_features("train", context.datamodule.splits.train_eval, cached_only=True)
    return None if cached is None else (torch.from_numpy(cached[0][indices]), torch.from_numpy(cached[1][indices]))


def final_pass(model, selected_state, context: PhaseContext) -> dict[str, tuple]:
    """Each evaluation set's features, logits and labels on the selected epoch's weights (one forward per set);
    the model is left as the phase ended."""
    dm = context.datamodule
    end = cpu_state(model) if selected_state is not None else None
    if end is not None:
        model.load_state_dict(selected_state)
    model.to(context.device)
    outputs = {s.name: forward_outputs(model, dm.eval_loader(s.dataset), context.device) for s in dm.eval_sets}
    if end is not None:
        model.load_state_dict(end)
    return outputs


class GradientPhase(PhaseKind):
    """Trains by SGD/AdamW for `epochs` what its `trainability` policy says, evaluating the selection set after
    every epoch (every set with `eval_every_epoch`); checkpointed (`EpochCheckpoint`), so a killed phase
    resumes. Where the backbone trains, one final pass over every set on the selected epoch's weights measures
    feature change, and the engine reads accuracy and calibration off it."""

    by_gradient = True

    def __init__(self, name: str, trainability: Trainability):
        self.name, self.trainability = name, trainability
        self.trains_backbone, self.fields = trainability.trains_backbone, trainability.fields

    def validate(self, phase) -> None:
        self.trainability.validate(phase)
        if phase.epochs < 1:
            raise ValueError(f"phase {phase.name!r}: a gradient phase needs epochs >= 1, got {phase.epochs}")

    def keeps_backbone(self, phase) -> bool:
        """The head-probing kind, where no backbone block is re-initialised or trained with the head."""
        return isinstance(self.trainability, HeadOnly) and not phase.also_train and not phase.reinit

    def forward_passes(self, phase, sizes: dict[str, int], probe_size: int, extracted: set[str]) -> int:
        """Every training image each epoch, the selection set each validation, every evaluation set once (the
        final pass), and where the backbone trains the training probe at the start (counted even where a
        clean-mode probe's cached eval view of the training set serves it: a paper-mode probe caches another
        view) and, for z_0, each set's features where the store has not extracted them yet."""
        eval_sizes = {name: n for name, n in sizes.items() if name != "train"}
        selection = ID_VAL if ID_VAL in eval_sizes else ID_TEST
        validations = phase.epochs // phase.validate_every
        passes = phase.epochs * sizes["train"] + validations * eval_sizes.get(selection, 0) + sum(eval_sizes.values())
        if self.trains_backbone:
            passes += min(probe_size, sizes["train"])
            if not phase.reinit:
                passes += sum(n for name, n in eval_sizes.items() if name not in extracted)
                extracted.update(eval_sizes)
        return passes

    def run(self, phase, context: PhaseContext) -> dict:
        model, dm = context.model, context.datamodule
        if phase.head_init == "random":
            reinitialise(model, ("head",))
        if phase.reinit:
            reinitialise_from(model.backbone, context.fresh_backbone(), phase.reinit)
        dm.epoch_sets = None if context.eval_every_epoch else [dm.selection_set]
        recorder = EpochRecorder()
        selected = SelectedWeights(context.files.selected_dir, recorder, dm.selection_set)
        checkpoint = EpochCheckpoint(context.files.checkpoint, context.phase_key, selected,
                                     context.checkpoint_every_minutes)
        note = ProgressNote(context.files.progress, phase.name, dm.selection_set)
        callbacks = [recorder, selected, note, checkpoint, StopOnSignal(context.phase_key),
                     ApplyTrainability(self.trainability, phase)]
        diagnostics, initial = None, None
        if self.trains_backbone:
            size = context.hparams.get("probe_size", 512)
            probes = {s.name: probe_indices(len(s.dataset), size) for s in dm.eval_sets}
            initial = initial_features(context, probes)
            diagnostics = FinetuneDiagnostics(probe_subset(dm.splits.train_eval, size),
                                              start_features(context, probe_indices(len(dm.splits.train_eval), size)))
            callbacks.append(diagnostics)
        trainer = context.make_trainer(max_epochs=phase.epochs, callbacks=callbacks,
                                       check_val_every_n_epoch=phase.validate_every)
        module = AdaptationModule(model, phase, self.trainability, dm.epoch_eval_sets, dm.num_classes,
                                  pretrained=context.pretrained)
        # Lightning keeps whatever train/eval modes modules have at fit start; a phase starts from train mode
        # and its callbacks put the frozen parts in eval mode.
        model.train()
        # NHWC during the fit, a speed knob (never part of a job's identity): cuDNN's and oneDNN's convolutions
        # prefer it (digits ResNet on one CPU thread: a training step 1.6x, an evaluation forward 2.3x faster).
        # Parameters keep their names and values; NCHW again after the fit and its final pass, because an eval-mode
        # forward in NHWC differs from NCHW in the last bits and the linear probe's features must not.
        model.to(memory_format=torch.channels_last)
        if context.compile:
            model.compile()  # in place: state_dict keys (phase store, checkpoints) are unchanged
        start = head_state(model.head)
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=checkpoint.resume_path(), weights_only=True)
        finally:
            dm.epoch_sets = None
        record = {"name": phase.name, "phase": phase.describe(), "start": start, "epochs": recorder.epochs,
                  "end": head_state(model.head)}
        if recorder.diverged_epoch is not None:
            record["diverged_epoch"] = recorder.diverged_epoch
        chosen = select_epoch(recorder.epochs, dm.selection_set)
        if chosen is not None and chosen is not recorder.epochs[-1]:
            context.selected_state = selected.weights_of(chosen["epoch"])
        if diagnostics is not None:
            record["start"].update(diagnostics.start)
            if chosen is not None:
                # Still NHWC, as the selection passes of the fit ran: these weights' features are no probe's.
                outputs = final_pass(model, context.selected_state, context)
                context.final_outputs = {name: (logits, labels) for name, (_, logits, labels) in outputs.items()}
                final = {name: outputs[name][0][probes[name]] for name in probes}
                backbone_state = context.selected_state or cpu_state(model)
                backbone = {name: backbone_state[f"backbone.{name}"] for name, _ in model.backbone.named_parameters()}
                record.update(feature_diagnostics(initial, final, {s.name: s.split for s in dm.eval_sets},
                                                  context.pretrained, backbone))
        model.to(memory_format=torch.contiguous_format)
        return record


register_kind(GradientPhase("all", LayerGroups(fields=("frozen_groups", "unfreeze_every"))))
register_kind(GradientPhase("head", HeadOnly()))
register_kind(GradientPhase("groups", LayerGroups(fields=("train_groups",), needs_train_groups=True)))
register_kind(GradientPhase("biases", BiasesAndHead()))

