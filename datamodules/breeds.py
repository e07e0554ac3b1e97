"""BREEDS Living-17 and Entity-30: ImageNet superclasses, trained on some subclasses, tested on others.

Layout under the data root: the ImageNet folders, `imagenet/{train,val}/<wnid>/*.JPEG` (see imagenet.py),
of which only the task's subclasses are read (every one of them must be there). Training: the train images
of each class's source subclasses; ID evaluation (`id_test`): their val images; OOD evaluation: the val
images of the target subclasses. Labels are the BREEDS class indices of `class_tables`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ID_TEST
from .class_tables import ENTITY30, LIVING17, BreedsClass
from .fakes import write_images
from .imagedata import ClassFolders, ImageShiftDataModule, SetSpec
from .transforms import Pipeline, center_crop, horizontal_flip, random_resized_crop, resize, scaled
from .imagenet import IMAGENET, IMAGENET_TRAIN_DIR, IMAGENET_VAL_DIR


class BreedsShift(ImageShiftDataModule):
    """A BREEDS task: `classes` says which ImageNet subclasses make each class, on each side of the shift."""

    classes: tuple[BreedsClass, ...]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    # datasets_living17.yaml and datasets_entity30.yaml L19-22 and L32-35 at 36fb2ef: std 0.228, not 0.229.
    paper_std = ((0.228, 0.224, 0.225),) * 2

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        """The authors' datasets_living17.yaml and datasets_entity30.yaml: torchvision's random-resized-crop
        + flip for training, resize 256 + centre crop 224 for evaluation, all bilinear."""
        return ([random_resized_crop(size, "bilinear"), horizontal_flip()],
                [resize(scaled(size, 256), "bilinear"), center_crop(size)])

    def load(self, spec: SetSpec, path: Path) -> ClassFolders:
        side = "target" if spec.split == "ood" else "source"
        labels = {wnid: label for label, c in enumerate(self.classes) for wnid in getattr(c, side)}
        return ClassFolders(path, labels, require_all=True)

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """Every wnid of the task, in ImageNet's train and val folders."""
        for breeds_class in cls.classes:
            for wnid in breeds_class.source + breeds_class.target:
                for folder in (IMAGENET_TRAIN_DIR, IMAGENET_VAL_DIR):
                    write_images(root / folder / wnid, images_per_class, rng, ".JPEG")


class Living17(BreedsShift):
    name = "living17"
    classes = LIVING17
    sets = (
        SetSpec("train", "train", IMAGENET_TRAIN_DIR, IMAGENET, 44_200),
        SetSpec(ID_TEST, "id", IMAGENET_VAL_DIR, IMAGENET, 1_700),
        SetSpec("living17-target", "ood", IMAGENET_VAL_DIR, IMAGENET, 1_700),
    )


class Entity30(BreedsShift):
    name = "entity30"
    classes = ENTITY30
    sets = (
        SetSpec("train", "train", IMAGENET_TRAIN_DIR, IMAGENET),  # the reference gives no training count
        SetSpec(ID_TEST, "id", IMAGENET_VAL_DIR, IMAGENET, 6_000),
        SetSpec("entity30-target", "ood", IMAGENET_VAL_DIR, IMAGENET, 6_000),
    )
