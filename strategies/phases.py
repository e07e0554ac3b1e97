"""A strategy is an ordered list of phases; each phase is one `Trainer.fit` (or one closed-form probe)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Callable

from lpft_bench.errors import UsageError

from .kinds import PHASE_KINDS, phase_kind

BATCHNORM_MODES = ("train", "eval")


@dataclass(frozen=True)
class Phase:
    """What trains, for how long, how, and from which head.

    trains: the phase's kind (`strategies.kinds`, which says how it runs): "all" (backbone and head), "head" (backbone frozen and in eval mode, except the modules
        named in `also_train`), "groups" (only the layer groups in `train_groups` train: surgical
        fine-tuning), "logistic-probe" (the paper's LP: cached eval-mode features, standardised, L2
        logistic regression over a regularisation path chosen on ID validation), or a step in weight space:
        "weight-interpolation" (WiSE-FT: (1 - α)·θ0 + α·θ1 for each α in `alphas`, θ0 the model at the start
        of the previous phase, θ1 the model it ended with; α chosen on ID validation) or "weight-average"
        (a model soup of the runs of strategy `ingredient` at each learning rate in `sweep_lrs`, `average`
        "uniform" or "greedy"). Both record one row per candidate in `epochs` (its position in "epoch").
    reestimate_bn: a weight-space phase recomputes BatchNorm statistics on the un-augmented training data
        (False: the statistics are interpolated or averaged like the weights).
    batchnorm: "train" updates running statistics during the phase, "eval" keeps them fixed.
    head_init: "random" (a fresh head) or "keep" (the head the previous phase left).
    reinit: backbone modules (e.g. ResNet-50 "layer4.2") re-initialised at the start of the phase.
    schedule: "cosine" (per epoch, no warm-up) or "constant" (head probing: the head after τ epochs
        is then the same whatever the total, so a τ sweep is a sweep of early stopping).
    validate_every: evaluate every n epochs (the last epoch is always evaluated). A head-only phase followed by
        another hands it its selected epoch (the authors' LP-FT starts from the probe's ckp_best_val).
    seed: the phase runs as the job of this seed runs it, whatever the job's own seed (None: the job's); the
        authors' ImageNet LP-FT starts every replication from the seed-0 probe.
    Layer groups (strategies.layers: "stem", the stages, "neck", "head") are frozen by `train_groups`
    (trains="groups"), `frozen_groups` (all phase long) or `unfreeze_every` = n (top-down: the head alone,
    then one more group every n epochs). Learning rates: `lr` × `lr_decay`^(depth from the top: head 0),
    × `backbone_lr_ratio` below the head. `l2sp_alpha`, `l2sp_beta`: L2-SP, the loss plus
    (α/2)‖w − w0‖² over backbone parameters (w0: the pretrained ones) plus (β/2)‖head‖².
    """

    name: str
    trains: str
    epochs: int = 0
    lr: float = 0.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batchnorm: str = "train"
    label_smoothing: float = 0.0
    head_init: str = "keep"
    probe_Cs: Sequence[float] = ()  # a grid specification (strategies.grids.LogSpace) or explicit values
    also_train: tuple[str, ...] = ()
    reinit: tuple[str, ...] = ()
    schedule: str = "cosine"
    validate_every: int = 1
    train_groups: tuple[str, ...] = ()
    frozen_groups: tuple[str, ...] = ()
    unfreeze_every: int = 0
    lr_decay: float = 1.0
    backbone_lr_ratio: float = 1.0
    l2sp_alpha: float = 0.0
    l2sp_beta: float = 0.0
    alphas: tuple[float, ...] = ()
    average: str = ""
    ingredient: str = ""
    sweep_lrs: tuple[float, ...] = ()
    reestimate_bn: bool = True
    seed: int | None = None

    def __post_init__(self):
        kind = phase_kind(self.trains)
        if self.batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"phase {self.name!r}: batchnorm={self.batchnorm!r}, expected one of {BATCHNORM_MODES}")
        if self.epochs and (self.validate_every < 1 or self.epochs % self.validate_every):
            raise ValueError(f"phase {self.name!r}: validate_every={self.validate_every} must divide epochs={self.epochs} "
                             "(the last epoch is always evaluated)")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"phase {self.name!r}: schedule={self.schedule!r}, expected 'cosine' or 'constant'")
        if self.head_init not in ("random", "keep"):
            raise ValueError(f"phase {self.name!r}: head_init={self.head_init!r}, expected 'random' or 'keep'")
        for other in PHASE_KINDS.values():
            for name in other.fields if other is not kind else ():
                if getattr(self, name) != _DEFAULTS[name]:
                    raise ValueError(f"phase {self.name!r}: {name} belongs to trains={other.name!r} phases, "
                                     f"not trains={self.trains!r}")
        kind.validate(self)

    def describe(self) -> dict:
        """Its name, kind and every field that differs from its default, grids by their specification: what
        the phase means, so a field added later (at its default) never changes an existing phase's identity.
        The defaults themselves are therefore part of every identity (pinned: tests/golden/phase_defaults.json)."""
        return {f.name: _described(getattr(self, f.name)) for f in fields(self)
                if f.name in _ALWAYS_DESCRIBED or getattr(self, f.name) != f.default}


_ALWAYS_DESCRIBED = ("name", "trains")
_DEFAULTS = {f.name: f.default for f in fields(Phase)}


def _described(value):
    return value.describe() if hasattr(value, "describe") else value


@dataclass(frozen=True)
class Strategy:
    """A named recipe: default hyperparameters and the phases built from them (what a matrix sweeps is the
    suite's or experiment file's business: benchmark/suites.py holds every grid)."""

    name: str
    description: str
    build_phases: Callable[[dict], list[Phase]]
    defaults: dict
    pretrained: bool = True
    # Hyperparameters taken only when given, each with a value of its type (absent, they are no part of a job's
    # hyperparameters, so its identity is what it was before they existed).
    optional: dict = field(default_factory=dict)

    @property
    def takes(self) -> dict:
        """Every hyperparameter the strategy takes: its default, or for an optional one a value of its type."""
        return {**self.optional, **self.defaults}

    def hparams(self, overrides: dict | None = None) -> dict:
        unknown = set(overrides or {}) - set(self.takes)
        if unknown:
            raise UsageError(f"strategy {self.name!r} has no hyperparameters {sorted(unknown)}; it takes {sorted(self.takes)}")
        for name, value in (overrides or {}).items():
            default = self.takes[name]
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UsageError(f"strategy {self.name!r}: {name} must be a number like {default!r}, got {value!r}")
        return {**self.defaults, **(overrides or {})}

    def phases(self, overrides: dict | None = None) -> list[Phase]:
        return self.build_phases(self.hparams(overrides))
