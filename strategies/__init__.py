"""Adaptation strategies as phase schedules, registered by name."""
from __future__ import annotations

import numpy as np

from .phases import Phase, Strategy

# Kumar et al.: C in logspace(-7, 2, 50), chosen on ID validation accuracy.
PAPER_PROBE_CS = tuple(float(c) for c in np.logspace(-7, 2, 50))
FT_LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
LPFT_LR_GRID = (3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4)

_TRAINING = {"epochs": 10, "batch_size": 64, "head": "linear", "probe_size": 512}
_HEAD_PROBING = {"hp_epochs": 10, "hp_lr": 1e-2}


def _probe(hp: dict) -> Phase:
    """The paper's logistic-regression LP for a linear head; an MLP head is probed by SGD (as for large data)."""
    if hp.get("head", "linear") == "mlp" or hp.get("probe") == "sgd":
        return Phase("lp", trains="head", epochs=hp["hp_epochs"], lr=hp["hp_lr"], head_init="random",
                     schedule="constant", validate_every=max(hp["hp_epochs"], 1))
    return Phase("lp", trains="logistic-probe", probe_Cs=PAPER_PROBE_CS)


def _head_probe(hp: dict, label_smoothing: float = 0.0, also_train: tuple[str, ...] = ()) -> list[Phase]:
    """HP for τ = hp_epochs epochs (constant LR, so the head at epoch τ is an early stop of a longer HP)."""
    if hp["hp_epochs"] == 0:
        return []
    return [Phase("hp", trains="head", epochs=hp["hp_epochs"], lr=hp["hp_lr"], head_init="random",
                  label_smoothing=label_smoothing, schedule="constant", also_train=also_train,
                  reinit=also_train, validate_every=hp["hp_epochs"])]


def _finetune(hp: dict, batchnorm: str, head_init: str, label_smoothing: float = 0.0) -> Phase:
    return Phase("ft", trains="all", epochs=hp["epochs"], lr=hp["lr"], batchnorm=hp.get("batchnorm", batchnorm),
                 head_init=head_init, label_smoothing=label_smoothing)


def _label_smoothed_head_probe(hp: dict) -> list[Phase]:
    if hp["ft_smoothing"] > 0 and hp["ft_smoothing"] >= hp["hp_smoothing"]:
        raise ValueError(f"lshp-ft needs ft_smoothing < hp_smoothing (got {hp['ft_smoothing']} >= {hp['hp_smoothing']}): "
                         "otherwise the energy reserved by smoothing the head probe vanishes or reverses in FT")
    return [*_head_probe(hp, hp["hp_smoothing"]), _finetune(hp, "train", _after_head_probe(hp), hp["ft_smoothing"])]


def _after_head_probe(hp: dict) -> str:
    """τ = 0 means no HP phase: FT then starts from a fresh head, exactly as plain FT."""
    return "keep" if hp["hp_epochs"] > 0 else "random"


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy(
            "scratch",
            "same architecture from random initialisation, everything trained",
            lambda hp: [_finetune(hp, "train", "random")],
            defaults={**_TRAINING, "lr": 1e-2, "batchnorm": "train"},
            grid={"lr": FT_LR_GRID},
            pretrained=False,
        ),
        Strategy(
            "lp",
            "linear probe: cached eval-mode features, L2 logistic regression, C chosen on ID validation "
            "(head=mlp or probe=sgd: a head-only SGD probe)",
            lambda hp: [_probe(hp)],
            defaults={"head": "linear", "probe": "logistic", **_HEAD_PROBING},
        ),
        Strategy(
            "ft",
            "full fine-tuning from a fresh head, BatchNorm in train mode",
            lambda hp: [_finetune(hp, "train", "random")],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train"},
            grid={"lr": FT_LR_GRID},
        ),
        Strategy(
            "lp-ft",
            "linear probe, then full fine-tuning from exactly that head, BatchNorm in eval mode",
            lambda hp: [_probe(hp), _finetune(hp, "eval", "keep")],
            defaults={**_TRAINING, "lr": 1e-4, "batchnorm": "eval", "probe": "logistic", **_HEAD_PROBING},
            grid={"lr": LPFT_LR_GRID},
        ),
        Strategy(
            "hp-ft",
            "head probing for τ = hp_epochs epochs by SGD (backbone frozen), then full fine-tuning; τ = 0 is FT",
            lambda hp: [*_head_probe(hp), _finetune(hp, "train", _after_head_probe(hp))],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING},
            grid={"hp_epochs": (0, 1, 2, 5, 10, 20, 50, 100, 200), "lr": FT_LR_GRID},
        ),
        Strategy(
            "lshp-ft",
            "head probing with label smoothing η = hp_smoothing, then FT with η_FT = ft_smoothing < η",
            lambda hp: _label_smoothed_head_probe(hp),
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING,
                      "hp_smoothing": 0.3, "ft_smoothing": 0.0},
            grid={"hp_smoothing": (0.1, 0.3, 0.5), "lr": FT_LR_GRID},
        ),
        Strategy(
            "mlp-head",
            "a 2-layer head (hidden 256) head-probed, then FT (head=mlp also works with lp, ft, lp-ft, hp-ft)",
            lambda hp: [*_head_probe(hp), _finetune(hp, "train", _after_head_probe(hp))],
            defaults={**_TRAINING, "head": "mlp", "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING},
            grid={"hp_epochs": (0, 10, 50), "lr": FT_LR_GRID},
        ),
        Strategy(
            "reinit-ft",
            "re-initialise the named backbone blocks (e.g. ResNet-50 layer4.2), train them with the head "
            "during HP, then fine-tune everything",
            lambda hp: [*_head_probe(hp, also_train=tuple(hp["reinit_blocks"])),
                        _finetune(hp, "train", _after_head_probe(hp))],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING,
                      "reinit_blocks": ("layer4.0",)},
            grid={"lr": FT_LR_GRID},
        ),
    ]
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


__all__ = ["FT_LR_GRID", "LPFT_LR_GRID", "PAPER_PROBE_CS", "Phase", "STRATEGIES", "Strategy", "get_strategy"]
