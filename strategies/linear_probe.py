"""The paper's linear probe: features extracted once, cached, and an L2 logistic-regression path on them."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader

from lpft_bench.storage import atomic_write


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


def cached_features(path: Path, backbone: nn.Module, loader: DataLoader, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Features from the cache at `path` (keyed by everything that determines them), extracting them on a miss."""
    if path.exists():
        with np.load(path) as data:
            return data["features"], data["labels"]
    features, labels = extract_features(backbone, loader, device)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a path
            np.savez(handle, features=features, labels=labels)

    atomic_write(path, write)
    return features, labels


@dataclass
class ProbeResult:
    """A linear head on the raw feature scale (weight: classes x dim) and the path that chose it."""

    weight: np.ndarray
    bias: np.ndarray
    C: float
    path: list[dict]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias


def fit_logistic_path(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    Cs: Sequence[float],
    num_classes: int,
    max_iter: int = 1000,
) -> ProbeResult:
    """L2 logistic regression on standardised features for each C (warm-started, small to large),
    C chosen by validation accuracy (ties: the smaller C), weights mapped back to the raw feature scale.
    Classes absent from the training set get zero rows, as in the paper."""
    scaler = StandardScaler().fit(train_x)
    xs_train, xs_val = scaler.transform(train_x), scaler.transform(val_x)
    classifier = LogisticRegression(C=Cs[0], max_iter=max_iter, warm_start=True)
    best, path = None, []
    for C in sorted(Cs):
        classifier.set_params(C=C)
        with warnings.catch_warnings():
            # Convergence is judged by the validation accuracy along the path; tiny smoke sets have few
            # samples per class, which sklearn warns about.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
            classifier.fit(xs_train, train_y)
        accuracy = float((classifier.predict(xs_val) == val_y).mean())
        path.append({"C": float(C), "val_acc": accuracy})
        if best is None or accuracy > best[0]:
            best = (accuracy, float(C), classifier.coef_.copy(), classifier.intercept_.copy(), classifier.classes_.copy())
    _, C, coef, intercept, classes = best
    if len(classes) == 2:  # sklearn keeps one row for two classes: logit(c1) - logit(c0) = w.x + b
        coef = np.stack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    scale = scaler.scale_
    weight = np.zeros((num_classes, train_x.shape[1]), dtype=np.float64)
    bias = np.zeros(num_classes, dtype=np.float64)
    weight[classes] = coef / scale
    bias[classes] = intercept - (coef * scaler.mean_ / scale).sum(axis=1)
    return ProbeResult(weight.astype(np.float32), bias.astype(np.float32), C, path)
