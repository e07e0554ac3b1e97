"""The paper's linear probe: features extracted once, cached, and an L2 logistic-regression path on them."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import DataLoader


@torch.no_grad()
def extract_features(backbone: nn.Module, loader: DataLoader, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features of every example, in eval mode (no augmentation, no BatchNorm updates)."""
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    for x, y in loader:
        features.append(backbone(x.to(device)).float().cpu())
        labels.append(y)
    backbone.train(was_training)
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


# Up to this many training-feature entries the C path runs on one BLAS/OpenMP thread: threads synchronising at
# every L-BFGS step cost more than they compute (1,350 x 1,280 features, 50 Cs: 8.6 s on two threads, 3.6 s on
# one; 20,000 x 2,048, 3 Cs: 7.1 s and 6.1 s, on 2 cores). Larger problems keep the libraries' threads.
SINGLE_THREAD_ENTRIES = 2**24


@dataclass(frozen=True)
class ProbeSettings:
    """How the logistic probe standardises, solves and selects.

    standardise: "scalar" divides every feature entry by one mean and one std taken over all training-feature
        entries (the authors' log_reg_sk.py); "per-feature" standardises each feature column.
    ties: among Cs with the best validation accuracy, "smaller-C" keeps the first (most regularised) one, as
        the official strict `>` does; "val-log-loss" keeps the one with the lowest validation log-loss
        (a small validation set saturates accuracy over decades of C).
    features_view: the training features' view: "train-transform" (one seeded augmented view per image, as
        the official extraction) or "eval-transform".
    """

    standardise: str
    max_iter: int
    ties: str
    features_view: str

    def describe(self) -> dict:
        return {"standardise": self.standardise, "solver": f"lbfgs, max_iter={self.max_iter}, warm start",
                "ties": self.ties, "features_view": self.features_view}


PROBE_SETTINGS = {
    "paper": ProbeSettings(standardise="scalar", max_iter=200, ties="smaller-C", features_view="train-transform"),
    "clean": ProbeSettings(standardise="per-feature", max_iter=1000, ties="val-log-loss", features_view="eval-transform"),
}


@dataclass
class ProbeResult:
    """A linear head on the raw feature scale (weight: classes x dim) and the path that chose it."""

    weight: np.ndarray
    bias: np.ndarray
    C: float
    path: list[dict]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias


def _standardisation(train_x: np.ndarray, standardise: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per feature column; the scalar rule repeats its one mean and std across the columns."""
    if standardise == "scalar":
        columns = train_x.shape[1]
        return np.full(columns, np.mean(train_x)), np.full(columns, np.std(train_x))
    if standardise == "per-feature":
        scaler = StandardScaler().fit(train_x)
        return scaler.mean_, scaler.scale_
    raise ValueError(f"standardise must be 'scalar' or 'per-feature', not {standardise!r}")


def _log_loss(classifier: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    """Mean validation NLL over the examples whose class the probe was trained on (the others score zero
    probability under every C alike)."""
    known = np.isin(y, classifier.classes_)
    if not known.any():
        return 0.0
    log_probabilities = classifier.predict_log_proba(x[known])
    columns = np.searchsorted(classifier.classes_, y[known])
    return float(-log_probabilities[np.arange(len(columns)), columns].mean())


def fit_logistic_path(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    Cs: Sequence[float],
    num_classes: int,
    settings: ProbeSettings = PROBE_SETTINGS["clean"],
) -> ProbeResult:
    """L2 logistic regression on standardised features for each C (warm-started, small to large), C chosen
    by validation accuracy (ties as `settings.ties` says), weights mapped back to the raw feature scale.
    Classes absent from the training set get zero rows, as in the paper."""
    if settings.ties not in ("smaller-C", "val-log-loss"):
        raise ValueError(f"ties must be 'smaller-C' or 'val-log-loss', not {settings.ties!r}")
    mean, scale = _standardisation(train_x, settings.standardise)
    xs_train, xs_val = (train_x - mean) / scale, (val_x - mean) / scale
    classifier = LogisticRegression(C=Cs[0], max_iter=settings.max_iter, warm_start=True)
    best, best_score, path = None, None, []
    with threadpool_limits(limits=1 if train_x.size <= SINGLE_THREAD_ENTRIES else None):
        for C in sorted(Cs):
            classifier.set_params(C=C)
            with warnings.catch_warnings():
                # Convergence is judged by the validation accuracy along the path; tiny smoke sets have few
                # samples per class, which sklearn warns about.
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
                classifier.fit(xs_train, train_y)
            point = {"C": float(C), "val_acc": float((classifier.predict(xs_val) == val_y).mean())}
            if settings.ties == "val-log-loss":
                point["val_log_loss"] = _log_loss(classifier, xs_val, val_y)
            path.append(point)
            # Higher accuracy wins; on equal accuracy a strictly lower log-loss wins (else the smaller C stays).
            score = (point["val_acc"], -point.get("val_log_loss", 0.0))
            if best_score is None or score > best_score:
                best_score = score
                best = (float(C), classifier.coef_.copy(), classifier.intercept_.copy(), classifier.classes_.copy())
    C, coef, intercept, classes = best
    if len(classes) == 2:  # sklearn keeps one row for two classes: logit(c1) - logit(c0) = w.x + b
        coef = np.stack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    weight = np.zeros((num_classes, train_x.shape[1]), dtype=np.float64)
    bias = np.zeros(num_classes, dtype=np.float64)
    weight[classes] = coef / scale
    bias[classes] = intercept - (coef * mean / scale).sum(axis=1)
    return ProbeResult(weight.astype(np.float32), bias.astype(np.float32), C, path)
