"""STL-10 as a training task, one of Ren et al.'s (ICLR 2023): 10 classes at 96 px, an ID test set, no OOD set.

Layout under the data root (the same folder CIFAR-10's benchmark reads its STL-10 OOD set from):
    stl10_binary/{train_X.bin,train_y.bin,test_X.bin,test_y.bin}    STL-10 binaries: 96x96 column-major uint8,
                                                                    labels 1..10 (train 5,000 / test 8,000)

Training reads the 5,000 labelled training images (no unlabelled ones, no folds), the ID evaluation the 8,000
test images, labels in STL-10's own order with the monkey class kept, as the authors' development code
(Joshua-Ren/P2_better_v0 util/datasets.py L39-43 at 895092c: torchvision's STL10, split='train' / 'test').
Transforms: their get_std_transform (L83-99), as CIFAR-100's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ID_TEST
from .cifar import STL10_CLASSES, STL10_DIR, read_stl10, write_stl10_fake
from .imagedata import ArrayImages, DataSource, ImageShiftDataModule, SetSpec
from .transforms import Pipeline, padded_crop_pipelines

STL10_TASK_SOURCE = DataSource(
    "STL-10 (binary)",
    "<root>/stl10_binary/{train_X.bin,train_y.bin,test_X.bin,test_y.bin} (the unlabelled file is not read)",
    "`lpft-bench data download stl10` (http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz, md5-checked, "
    "unpacked into the data root)",
)


class Stl10Task(ImageShiftDataModule):
    """STL-10 (Ren et al.'s task): train 5,000, ID test 8,000, 10 classes, no OOD set."""

    name = "stl10"
    class_names = STL10_CLASSES
    sets = (
        SetSpec("train", "train", STL10_DIR, STL10_TASK_SOURCE, 5_000),
        SetSpec(ID_TEST, "id", STL10_DIR, STL10_TASK_SOURCE, 8_000),
    )

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        return padded_crop_pipelines(size)

    def load(self, spec: SetSpec, path: Path) -> ArrayImages:
        return read_stl10(path, "train" if spec.split == "train" else "test")

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """The train and test binaries, every class (monkeys are a class here)."""
        for split in ("train", "test"):
            write_stl10_fake(root, split, images_per_class, rng)
