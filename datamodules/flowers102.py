"""Oxford Flowers-102, one of Ren et al.'s (ICLR 2023) downstream tasks: 102 classes, an ID evaluation set, no OOD.

Layout under the data root (torchvision's Flowers102 folder):
    flowers-102/jpg/image_<00001..08189>.jpg     the images (102flowers.tgz)
    flowers-102/imagelabels.mat                  `labels`: each image's class 1..102
    flowers-102/setid.mat                        `trnid` (1,020), `valid` (1,020), `tstid` (6,149): image ids

Which official split is which set is OUR CHOICE: training reads the official *test* split `tstid` (6,149: the
paper's training-set size), the ID evaluation the official *validation* split `valid` (1,020); the official
training split `trnid` is not read. The authors' development code (Joshua-Ren/P2_better_v0, every commit up to
895092c) never mentions Flowers, so their assignment could not be checked. Transforms: also our choice (no
development code): the backbone's own (timm's data config: random-resized crop and flip; resize and centre crop).
Labels are 0..101 (the file's minus one), as torchvision's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import Flowers102

from .base import ID_TEST, DatasetMissing
from .fakes import random_pixels
from .imagedata import DataSource, ImageShiftDataModule, LabeledFiles, SetSpec

FLOWERS_DIR = "flowers-102"
FLOWERS_CLASS_COUNT = 102
# torchvision's class names where the installed release has them (not every release this package admits does).
FLOWERS_CLASSES = tuple(getattr(Flowers102, "classes", [f"flower {i}" for i in range(1, FLOWERS_CLASS_COUNT + 1)]))
# Our set -> the official split it reads (torchvision's split names).
OFFICIAL_SPLIT = {"train": "test", ID_TEST: "val"}
FLOWERS_SOURCE = DataSource(
    "Oxford Flowers-102",
    "<root>/flowers-102/{jpg/image_<id>.jpg,imagelabels.mat,setid.mat} (torchvision's Flowers102 folder)",
    "`lpft-bench data download flowers102` (102flowers.tgz, imagelabels.mat and setid.mat from "
    "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/, md5-checked)",
)


class FlowersFiles(Flowers102):
    """torchvision's reader of the split files; the md5s it would check belong to the download, which checks
    them, so a copy written from other bytes (the fakes) reads as well. Presence is checked by the caller."""

    def _check_integrity(self) -> bool:
        return True


def read_flowers(directory: Path, official_split: str) -> LabeledFiles:
    for name in ("imagelabels.mat", "setid.mat", "jpg"):
        if not (directory / name).exists():
            raise DatasetMissing(directory / name, "Flowers-102 file not found")
    try:
        flowers = FlowersFiles(str(directory.parent), split=official_split, download=False)
    except (ValueError, KeyError, TypeError, OSError) as error:  # scipy's report of a malformed .mat file
        raise DatasetMissing(directory, f"Flowers-102 .mat files are malformed: {error!r}") from None
    labels = np.asarray(flowers._labels, dtype=np.int64)
    if not np.all((labels >= 0) & (labels < FLOWERS_CLASS_COUNT)):
        raise DatasetMissing(directory / "imagelabels.mat", "labels must be 1..102")
    return LabeledFiles(flowers._image_files, labels)


class Flowers102Task(ImageShiftDataModule):
    """Flowers-102 (Ren et al.'s task): train 6,149 (official test), ID eval 1,020 (official val), 102 classes."""

    name = "flowers102"
    class_names = FLOWERS_CLASSES
    sets = (
        SetSpec("train", "train", FLOWERS_DIR, FLOWERS_SOURCE, 6_149),
        SetSpec(ID_TEST, "id", FLOWERS_DIR, FLOWERS_SOURCE, 1_020),
    )

    def load(self, spec: SetSpec, path: Path) -> LabeledFiles:
        return read_flowers(path, OFFICIAL_SPLIT[spec.name])

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """`images_per_class` images of every class in each official split, with the two .mat files (1-based ids
        and labels, as the originals)."""
        from scipy.io import savemat

        folder = root / FLOWERS_DIR
        (folder / "jpg").mkdir(parents=True, exist_ok=True)
        labels, splits = [], {"trnid": [], "valid": [], "tstid": []}
        for key in splits:
            for label in range(1, FLOWERS_CLASS_COUNT + 1):
                for _ in range(images_per_class):
                    labels.append(label)
                    splits[key].append(len(labels))
                    Image.fromarray(random_pixels(rng)).save(folder / "jpg" / f"image_{len(labels):05d}.jpg")
        savemat(folder / "imagelabels.mat", {"labels": np.asarray([labels], dtype=np.uint8)})
        savemat(folder / "setid.mat", {key: np.asarray([ids], dtype=np.uint16) for key, ids in splits.items()})
