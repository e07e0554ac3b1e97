"""The embedded default benchmark: scikit-learn's real handwritten digits, upright (ID) vs rotated (OOD).

Everything comes from what PyPI ships. The 1,797 digits are split once, with a fixed seed, into a
pretraining pool (used only to pretrain the default backbone, with rotation augmentation, so its
features are good for ID and OOD inputs alike: the regime of Kumar et al.'s theory) and a downstream
pool. The downstream task trains on upright digits; each OOD set holds every held-out test digit rotated
by a fixed angle both ways (±30°, ±60°): twice the test set, the same images for every job.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .base import ID_TEST, ID_VAL, EvalSet, ShiftDataModule, ShiftSplits

IMAGE_SIZE = 32
SPLIT_SEED = 20220101  # fixed forever: changing it changes the benchmark
OOD_ANGLES = {"rotated-mild": 30.0, "rotated-strong": 60.0}  # degrees, each set both ways


@lru_cache(maxsize=1)
def load_digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as 1x32x32 images in [0, 1] and their labels; made once a process (a matrix builds a job's
    splits 27 times), so callers index them and never write into them."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return images, torch.tensor(bunch.target, dtype=torch.long)


def _split_indices(n: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    pretrain, downstream = order[: n // 2], order[n // 2 :]
    n_test = len(downstream) * 3 // 10
    return {"pretrain": pretrain, "test": downstream[:n_test], "train_pool": downstream[n_test:]}


def rotate_randomly(images: torch.Tensor, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image by an angle whose magnitude is uniform in [low, high], random sign."""
    magnitudes = low + (high - low) * torch.rand(len(images), generator=generator)
    signs = torch.randint(0, 2, (len(images),), generator=generator) * 2 - 1
    return rotate(images, magnitudes * signs)


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its own angle in degrees (zeros where the rotated image has no pixels)."""
    radians = torch.deg2rad(degrees)
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros_like(radians)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@lru_cache(maxsize=1)
def _rotated_test_digits() -> dict[str, torch.Tensor]:
    """Each OOD set's images: every test digit rotated by +angle, then every one by -angle (the same for every
    seed); made once a process, read-only like load_digits_images'."""
    images, _ = load_digits_images()
    test_images = images[torch.as_tensor(_split_indices(len(images))["test"])]
    n_test = len(test_images)
    return {name: rotate(test_images.repeat(2, 1, 1, 1),
                         torch.cat([torch.full((n_test,), angle), torch.full((n_test,), -angle)]))
            for name, angle in OOD_ANGLES.items()}


def pretraining_pool() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits reserved for pretraining the default backbone (disjoint from every downstream split)."""
    images, labels = load_digits_images()
    idx = torch.as_tensor(_split_indices(len(images))["pretrain"])
    return images[idx], labels[idx]


class DigitsShift(ShiftDataModule):
    """Upright digits (ID) vs every test digit rotated by ±30° (`rotated-mild`) and ±60° (`rotated-strong`).

    Clean mode: the ID validation set is carved from the training pool, deterministically per seed;
    the ID test set is fixed. Images are normalised with the backbone's mean/std.
    """

    name = "digits"
    ships_data = True
    data_version = 1  # 1: OOD sets at fixed angles (before: one random angle per test digit)

    def __init__(self, val_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.mean = torch.tensor(self.data_config.get("mean", (0.5,))).view(-1, 1, 1)
        self.std = torch.tensor(self.data_config.get("std", (0.5,))).view(-1, 1, 1)
        self.val_fraction = val_fraction

    def _dataset(self, images: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
        return TensorDataset((images - self.mean) / self.std, labels)

    def build_splits(self) -> ShiftSplits:
        images, labels = load_digits_images()
        idx = _split_indices(len(images))
        pool = idx["train_pool"][np.random.default_rng(self.seed).permutation(len(idx["train_pool"]))]
        n_val = int(len(pool) * self.val_fraction)
        train_idx, val_idx, test_idx = pool[n_val:], pool[:n_val], idx["test"]
        train = self._dataset(images[train_idx], labels[train_idx])
        test_images, test_labels = images[test_idx], labels[test_idx]
        eval_sets = [
            EvalSet(ID_VAL, self._dataset(images[val_idx], labels[val_idx]), "id"),
            EvalSet(ID_TEST, self._dataset(test_images, test_labels), "id"),
        ]
        n_test = len(test_idx)
        for name, rotated in _rotated_test_digits().items():
            eval_sets.append(EvalSet(name, self._dataset(rotated, test_labels.repeat(2)), "ood",
                                     groups=np.tile(np.arange(n_test), 2)))
        return ShiftSplits(train=train, train_eval=train, eval_sets=eval_sets, num_classes=10,
                           class_names=[str(d) for d in range(10)])


def centre_crop_zoom(images: torch.Tensor, keep: float) -> torch.Tensor:
    """Crop the central `keep` fraction of each side and resize back: digits appear larger and clipped."""
    size = images.shape[-1]
    margin = int(round(size * (1 - keep) / 2))
    cropped = images[..., margin : size - margin, margin : size - margin]
    return F.interpolate(cropped, size=(size, size), mode="bilinear", align_corners=False)


class DigitsToy(DigitsShift):
    """Ren et al.'s toy task on real digits: the first 3 classes, every downstream image rotated (15-45°)
    and centre-cropped (a shift from the upright pretraining data). ID sets are shifted like the training
    set; the OOD set `unshifted` holds the same test digits as the pretraining data looks."""

    name = "digits-toy"
    data_version = 0  # its sets did not change with digits' fixed OOD angles
    CLASSES = (0, 1, 2)

    def build_splits(self) -> ShiftSplits:
        images, labels = load_digits_images()
        keep = torch.isin(labels, torch.tensor(self.CLASSES))
        shifted = centre_crop_zoom(rotate_randomly(images, 15.0, 45.0, torch.Generator().manual_seed(SPLIT_SEED)), 0.8)
        idx = {name: part[keep[part].numpy()] for name, part in _split_indices(len(images)).items()}
        pool = idx["train_pool"][np.random.default_rng(self.seed).permutation(len(idx["train_pool"]))]
        n_val = int(len(pool) * self.val_fraction)
        train_idx, val_idx, test_idx = pool[n_val:], pool[:n_val], idx["test"]
        train = self._dataset(shifted[train_idx], labels[train_idx])
        eval_sets = [
            EvalSet(ID_VAL, self._dataset(shifted[val_idx], labels[val_idx]), "id"),
            EvalSet(ID_TEST, self._dataset(shifted[test_idx], labels[test_idx]), "id"),
            EvalSet("unshifted", self._dataset(images[test_idx], labels[test_idx]), "ood"),
        ]
        return ShiftSplits(train=train, train_eval=train, eval_sets=eval_sets, num_classes=len(self.CLASSES),
                           class_names=[str(c) for c in self.CLASSES])
