"""What a gradient phase trains, one policy per idea: which parameters get gradients, which modules run in
eval mode, which parameters are held back until a later epoch. Each gradient kind owns one policy
(`kinds.gradient`); `ApplyTrainability`, one callback, applies it. A new freezing idea is one policy class and
one kind line.

Modes are set at every epoch start (validation switches the whole model to eval and back to train), and a phase
with `batchnorm="eval"` keeps every BatchNorm layer in eval mode on top of what its policy says. Parameters
held back (gradual unfreezing) are in the optimiser from the start, so nothing is registered mid-fit (safe under
DDP): their gradients are dropped before each step, so the optimiser skips them altogether (no momentum, no
weight decay)."""
from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Iterable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from .layers import frozen_throughout, group_modules, grouped_parameters, not_yet_unfrozen

if TYPE_CHECKING:
    from .phases import Phase


class Trainability:
    """A policy. `fields`: the `Phase` fields only phases of its kind may set; `trains_backbone`: some backbone
    parameter gets gradients (the feature-change diagnostics apply)."""

    fields: tuple[str, ...] = ()
    trains_backbone: bool = True

    def validate(self, phase: Phase) -> None:
        """Raise ValueError naming the field when `phase` cannot run under this policy."""

    def trained(self, model: nn.Module, phase: Phase) -> Iterable[nn.Parameter]:
        """The parameters that get gradients (and go to the optimiser) in this phase."""
        raise NotImplementedError

    def set_modes(self, model: nn.Module, phase: Phase, epoch: int) -> None:
        """Put what does not train this epoch in eval mode (the model arrives in train mode)."""

    def withheld(self, model: nn.Module, phase: Phase, epoch: int) -> list[nn.Parameter]:
        """Parameters in the optimiser that must not change during `epoch`."""
        return []

    def apply_requires_grad(self, model: nn.Module, phase: Phase) -> None:
        trained = {id(p) for p in self.trained(model, phase)}
        for p in model.parameters():
            p.requires_grad_(id(p) in trained)


class LayerGroups(Trainability):
    """The whole model but the layer groups the phase freezes: `frozen_groups` all phase long, everything but
    `train_groups` where it names some (surgical fine-tuning), the groups below the top ⌊epoch / n⌋ + 1 with
    `unfreeze_every` = n (gradual unfreezing: held back, in eval mode)."""

    def __init__(self, fields: tuple[str, ...], needs_train_groups: bool = False):
        self.fields, self.needs_train_groups = fields, needs_train_groups

    def validate(self, phase: Phase) -> None:
        if self.needs_train_groups and not phase.train_groups:
            raise ValueError(f"phase {phase.name!r}: trains={phase.trains!r} needs the train_groups it trains")

    @staticmethod
    def _names_groups(phase: Phase) -> bool:
        # Plain FT never asks for layer groups: it runs on models that have none (the toy MLP).
        return bool(phase.train_groups or phase.frozen_groups or phase.unfreeze_every)

    def trained(self, model, phase):
        if not self._names_groups(phase):
            return list(model.parameters())
        grouped = grouped_parameters(model)
        frozen = set(frozen_throughout(phase, list(grouped)))
        return [p for group, named in grouped.items() if group not in frozen for _, p in named]

    def _frozen_at(self, model, phase, epoch) -> tuple[list[str], list[str]]:
        if not self._names_groups(phase):
            return [], []
        names = list(grouped_parameters(model))
        return frozen_throughout(phase, names), not_yet_unfrozen(phase, names, epoch)

    def set_modes(self, model, phase, epoch) -> None:
        frozen, waiting = self._frozen_at(model, phase, epoch)
        for module in group_modules(model, frozen + waiting) if frozen or waiting else ():
            module.eval()

    def withheld(self, model, phase, epoch):
        _, waiting = self._frozen_at(model, phase, epoch)
        if not waiting:
            return []
        grouped = grouped_parameters(model)
        return [p for group in waiting for _, p in grouped[group]]


class HeadOnly(Trainability):
    """The head, and the backbone modules named in `also_train` (re-initialised blocks); the rest of the
    backbone frozen and in eval mode (no BatchNorm statistics drift, no dropout)."""

    trains_backbone = False

    def trained(self, model, phase):
        also = [p for name in phase.also_train for p in model.backbone.get_submodule(name).parameters()]
        return [*also, *model.head.parameters()]

    def set_modes(self, model, phase, epoch) -> None:
        model.backbone.eval()
        for name in phase.also_train:
            model.backbone.get_submodule(name).train()


class BiasesAndHead(Trainability):
    """BitFit (Ben Zaken et al. 2022): every bias of the backbone and the whole head train; weights stay, and so
    do BatchNorm statistics (BatchNorm runs in eval mode: the biases adapt features, not their normalisation)."""

    def trained(self, model, phase):
        biases = [p for name, p in model.backbone.named_parameters() if name.rsplit(".", 1)[-1] == "bias"]
        return [*biases, *model.head.parameters()]

    def set_modes(self, model, phase, epoch) -> None:
        _batchnorm_eval(model)


def _batchnorm_eval(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class ApplyTrainability(Callback):
    """The policy's modes at every epoch start (BatchNorm in eval mode too where the phase says
    `batchnorm="eval"`), and its held-back parameters' gradients dropped before every optimiser step."""

    def __init__(self, policy: Trainability, phase: Phase):
        self.policy, self.phase = policy, phase
        self.withheld: list[torch.nn.Parameter] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        self.policy.set_modes(model, self.phase, trainer.current_epoch)
        if self.phase.batchnorm == "eval":
            _batchnorm_eval(model)
        self.withheld = self.policy.withheld(model, self.phase, trainer.current_epoch)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        for p in self.withheld:
            p.grad = None
