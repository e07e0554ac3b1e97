"""The oracle probe: the paper's LP fitted on an OOD set itself, scored on a held-out half of it.

It measures how good the frozen features are for that set (the ceiling of any linear head on them), which
tells which regime a benchmark is in: Kumar et al.'s prediction (LP-FT >= LP > FT OOD) is about features near
this ceiling, where LP trained on ID data alone already reaches most of it."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .linear_probe import PROBE_SETTINGS, ProbeSettings, fit_logistic_path

ORACLE_SEED = 0  # the halves are part of the measurement: the same for every job


def split_by_group(indices: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`indices` into (the rest, a random `fraction` of their groups), every example of a group on one side."""
    unique = np.unique(groups[indices])
    n_taken = max(1, int(len(unique) * fraction))
    taken = np.isin(groups[indices], unique[np.random.default_rng(seed).permutation(len(unique))[:n_taken]])
    return indices[~taken], indices[taken]


def oracle_probe(features: np.ndarray, labels: np.ndarray, Cs: Sequence[float], num_classes: int,
                 groups: np.ndarray | None = None, settings: ProbeSettings = PROBE_SETTINGS["clean"],
                 seed: int = ORACLE_SEED) -> dict | None:
    """Fit the LP on one half of an evaluation set, C chosen on a fifth of that half (as LP's C is chosen on
    ID validation carved from train, and with the LP's `settings`), and score it on the other half, which
    it never saw. None where the fit part holds fewer than two classes (a tiny or one-class set has no ceiling
    to measure).

    `groups` names the source image of each example (default: each its own), so that two views of one
    digit never sit on both sides of a split."""
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    fit, held_out = split_by_group(np.arange(len(labels)), groups, 0.5, seed)
    train, val = split_by_group(fit, groups, 0.2, seed + 1)
    if len(np.unique(labels[train])) < 2:
        return None
    probe = fit_logistic_path(features[train], labels[train], features[val], labels[val], Cs, num_classes,
                              settings)
    # Like sklearn's own predict: only classes the fit saw can be predicted (the others' rows are zeros).
    seen = np.unique(labels[train])
    predicted = seen[probe.logits(features[held_out])[:, seen].argmax(-1)]
    accuracy = float((predicted == labels[held_out]).mean())
    return {"acc": accuracy, "C": probe.C, "fit": len(fit), "held_out": len(held_out)}
