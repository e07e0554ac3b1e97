"""A strategy is an ordered list of phases; each phase is one `Trainer.fit` (or one closed-form probe)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

TRAINS = ("all", "head", "logistic-probe")
BATCHNORM_MODES = ("train", "eval")


@dataclass(frozen=True)
class Phase:
    """What trains, for how long, how, and from which head.

    trains: "all" (backbone and head), "head" (backbone frozen and in eval mode, except the modules
        named in `also_train`), or "logistic-probe" (the paper's LP: cached eval-mode features,
        standardised, L2 logistic regression over a regularisation path chosen on ID validation).
    batchnorm: "train" updates running statistics during the phase, "eval" keeps them fixed.
    head_init: "random" (a fresh head) or "keep" (the head the previous phase left).
    reinit: backbone modules (e.g. ResNet-50 "layer4.2") re-initialised at the start of the phase.
    schedule: "cosine" (per epoch, no warm-up) or "constant" (head probing: the head after τ epochs
        is then the same whatever the total, so a τ sweep is a sweep of early stopping).
    validate_every: evaluate every n epochs (the last epoch is always evaluated).
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
    probe_Cs: tuple[float, ...] = ()
    also_train: tuple[str, ...] = ()
    reinit: tuple[str, ...] = ()
    schedule: str = "cosine"
    validate_every: int = 1

    def __post_init__(self):
        if self.trains not in TRAINS:
            raise ValueError(f"phase {self.name!r}: trains={self.trains!r}, expected one of {TRAINS}")
        if self.batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"phase {self.name!r}: batchnorm={self.batchnorm!r}, expected one of {BATCHNORM_MODES}")
        if self.epochs and (self.validate_every < 1 or self.epochs % self.validate_every):
            raise ValueError(f"phase {self.name!r}: validate_every={self.validate_every} must divide epochs={self.epochs} "
                             "(the last epoch is always evaluated)")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"phase {self.name!r}: schedule={self.schedule!r}, expected 'cosine' or 'constant'")
        if self.head_init not in ("random", "keep"):
            raise ValueError(f"phase {self.name!r}: head_init={self.head_init!r}, expected 'random' or 'keep'")

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Strategy:
    """A named recipe: default hyperparameters, the grid a suite sweeps, and phases built from them."""

    name: str
    description: str
    build_phases: Callable[[dict], list[Phase]]
    defaults: dict
    grid: dict = field(default_factory=dict)
    pretrained: bool = True

    def hparams(self, overrides: dict | None = None) -> dict:
        unknown = set(overrides or {}) - set(self.defaults)
        if unknown:
            raise KeyError(f"strategy {self.name!r} has no hyperparameters {sorted(unknown)}; it takes {sorted(self.defaults)}")
        return {**self.defaults, **(overrides or {})}

    def phases(self, overrides: dict | None = None) -> list[Phase]:
        return self.build_phases(self.hparams(overrides))
