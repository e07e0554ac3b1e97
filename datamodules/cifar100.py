"""CIFAR-100, one of Ren et al.'s (ICLR 2023) downstream tasks: 100 fine classes, an ID test set, no OOD set.

Layout under the data root:
    cifar-100-python/{train,test}       torchvision's CIFAR-100 pickles (50,000 / 10,000), labels `fine_labels`

Training reads `train`, the ID evaluation `test`, as the authors' development code (Joshua-Ren/P2_better_v0
util/datasets.py L60-65 at 895092c: torchvision's CIFAR100, train=True / train=False). Transforms: their
get_std_transform (L83-99): resize to the input size, a random crop padded by an eighth and a flip for
training, the resize alone for evaluation. Their normalisation (CIFAR-10's mean and std whatever the backbone)
is not copied: images are normalised as the backbone expects.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR100

from .base import ID_TEST, DatasetMissing
from .fakes import random_pixels
from .imagedata import DataSource, ImageShiftDataModule, SetSpec
from .transforms import Pipeline, padded_crop_pipelines

CIFAR100_DIR = "cifar-100-python"
# The fine label names in label order (the `fine_label_names` of the archive's `meta`: alphabetical).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
CIFAR100_SOURCE = DataSource(
    "CIFAR-100 (python pickles)",
    "<root>/cifar-100-python/{train,test} (torchvision's CIFAR-100 folder)",
    "`lpft-bench data download cifar100` (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, md5-checked, "
    "unpacked into the data root)",
)


class Cifar100Pickles(CIFAR100):
    """torchvision's CIFAR-100 reader without its per-file md5s (the download checks the archive's; a copy
    written from other bytes is as valid) and with the label names as the fixed table above."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.classes = list(CIFAR100_CLASSES)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


def read_cifar100(directory: Path, train: bool) -> Cifar100Pickles:
    name = "train" if train else "test"
    if not (directory / name).is_file():
        raise DatasetMissing(directory / name, "CIFAR-100 pickle not found")
    try:
        dataset = Cifar100Pickles(str(directory.parent), train=train)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
        raise DatasetMissing(directory / name, f"CIFAR-100 pickle is malformed: {error!r}") from None
    if not set(dataset.targets) <= set(range(len(CIFAR100_CLASSES))):
        raise DatasetMissing(directory / name, "CIFAR-100 fine labels must be 0..99")
    return dataset


class Cifar100(ImageShiftDataModule):
    """CIFAR-100 (Ren et al.'s task): train 50,000, ID test 10,000, 100 classes, no OOD set."""

    name = "cifar100"
    class_names = CIFAR100_CLASSES
    sets = (
        SetSpec("train", "train", CIFAR100_DIR, CIFAR100_SOURCE, 50_000),
        SetSpec(ID_TEST, "id", CIFAR100_DIR, CIFAR100_SOURCE, 10_000),
    )

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        return padded_crop_pipelines(size)

    def load(self, spec: SetSpec, path: Path) -> Cifar100Pickles:
        return read_cifar100(path, train=spec.split == "train")

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """`train` and `test` pickles as the archive holds them (fine and coarse labels, channel-major rows)."""
        folder = root / CIFAR100_DIR
        folder.mkdir(parents=True, exist_ok=True)
        labels = [label for label in range(len(CIFAR100_CLASSES)) for _ in range(images_per_class)]
        for name in ("train", "test"):
            data = np.stack([random_pixels(rng).transpose(2, 0, 1).reshape(-1) for _ in labels])
            with open(folder / name, "wb") as f:
                pickle.dump({"batch_label": name, "fine_labels": labels, "coarse_labels": [label // 5 for label in labels],
                             "filenames": [f"{name}_{i}.png" for i in range(len(labels))], "data": data}, f)
        with open(folder / "meta", "wb") as f:
            pickle.dump({"fine_label_names": list(CIFAR100_CLASSES), "coarse_label_names": [f"coarse_{i}" for i in range(20)]}, f)
