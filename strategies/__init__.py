"""Adaptation strategies as phase schedules, registered by name."""
from __future__ import annotations

import numpy as np

from .phases import Phase, Strategy

# Kumar et al.: C in logspace(-7, 2, 50), chosen on ID validation accuracy.
PAPER_PROBE_CS = tuple(float(c) for c in np.logspace(-7, 2, 50))
FT_LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
LPFT_LR_GRID = (3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4)

_TRAINING = {"epochs": 10, "batch_size": 64}


def _probe(hp: dict) -> Phase:
    return Phase("lp", trains="logistic-probe", probe_Cs=PAPER_PROBE_CS)


def _finetune(hp: dict, batchnorm: str, head_init: str) -> Phase:
    return Phase("ft", trains="all", epochs=hp["epochs"], lr=hp["lr"], batchnorm=batchnorm, head_init=head_init)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy(
            "scratch",
            "same architecture from random initialisation, everything trained",
            lambda hp: [_finetune(hp, "train", "random")],
            defaults={**_TRAINING, "lr": 1e-2},
            grid={"lr": FT_LR_GRID},
            pretrained=False,
        ),
        Strategy(
            "lp",
            "linear probe: cached eval-mode features, L2 logistic regression, C chosen on ID validation",
            lambda hp: [_probe(hp)],
            defaults={},
        ),
        Strategy(
            "ft",
            "full fine-tuning from a fresh head, BatchNorm in train mode",
            lambda hp: [_finetune(hp, "train", "random")],
            defaults={**_TRAINING, "lr": 1e-3},
            grid={"lr": FT_LR_GRID},
        ),
        Strategy(
            "lp-ft",
            "linear probe, then full fine-tuning from exactly that head, BatchNorm in eval mode",
            lambda hp: [_probe(hp), _finetune(hp, "eval", "keep")],
            defaults={**_TRAINING, "lr": 1e-4},
            grid={"lr": LPFT_LR_GRID},
        ),
    ]
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


__all__ = ["FT_LR_GRID", "LPFT_LR_GRID", "PAPER_PROBE_CS", "Phase", "STRATEGIES", "Strategy", "get_strategy"]
