"""ImageNet -> ImageNet-V2, -R, -Sketch and -A: one training, four OOD evaluations.

Layout under the data root:
    imagenet/train/<wnid>/*.JPEG                                  ILSVRC-2012 train (1,281,167)
    imagenet/val/<wnid>/*.JPEG                                    ILSVRC-2012 val sorted into wnid folders (50,000)
    imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg       ImageNetV2 matched-frequency (10,000)
    imagenet-r/<wnid>/*.jpg                                       ImageNet-R, 200 classes (30,000)
    sketch/<wnid>/*.JPEG                                          ImageNet-Sketch (50,889)
    imagenet-a/<wnid>/*.jpg                                       ImageNet-A, 200 classes (7,500)

Labels are ImageNet-1k indices (the sorted-wnid order, timm's `ImageNetInfo`). A folder set may hold only some
of the classes; a folder that is not a class of its set is an error. ImageNet-V2 folders are integer class
indices: folder "10" is class 10, whatever its position in a sorted listing. ImageNet-R and -A take the argmax
over their 200 classes only (`EvalSet.class_subset`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from timm.data import ImageNetInfo

from .base import ID_TEST
from .class_tables import IMAGENET_A_WNIDS, IMAGENET_R_WNIDS
from .fakes import write_images
from .imagedata import ClassFolders, DataSource, ImageShiftDataModule, SetSpec
from .transforms import Pipeline, center_crop, horizontal_flip, random_resized_crop, resize

IMAGENET_WNIDS: tuple[str, ...] = tuple(ImageNetInfo("imagenet-1k").label_names())
IMAGENET_INDEX: dict[str, int] = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}

IMAGENET = DataSource(
    "ImageNet (ILSVRC-2012)",
    "<root>/imagenet/{train,val}/<wnid>/*.JPEG (the validation images sorted into the same wnid folders)",
    "https://image-net.org/download (registration); sort val into wnid folders with the devkit's ground truth "
    "(e.g. the widely used valprep.sh)",
)
IMAGENET_V2 = DataSource(
    "ImageNetV2 matched-frequency",
    "<root>/imagenetv2-matched-frequency-format-val/<class index 0..999>/*.jpeg",
    "imagenetv2-matched-frequency.tar.gz from https://huggingface.co/datasets/vaishaal/ImageNetV2 "
    "(github.com/modestyachts/ImageNetV2), unpacked into the data root",
)
IMAGENET_R = DataSource(
    "ImageNet-R",
    "<root>/imagenet-r/<wnid>/*.jpg (200 wnids)",
    "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar (github.com/hendrycks/imagenet-r), unpacked into the data root",
)
IMAGENET_SKETCH = DataSource(
    "ImageNet-Sketch",
    "<root>/sketch/<wnid>/*.JPEG",
    "github.com/HaohanWang/ImageNet-Sketch (ImageNet-Sketch.zip; also on Kaggle and the Hugging Face hub), "
    "whose sketch/ folder goes into the data root",
)
IMAGENET_A = DataSource(
    "ImageNet-A",
    "<root>/imagenet-a/<wnid>/*.jpg (200 wnids)",
    "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar (github.com/hendrycks/natural-adv-examples), "
    "unpacked into the data root",
)

IMAGENET_TRAIN_DIR = "imagenet/train"
IMAGENET_VAL_DIR = "imagenet/val"
IMAGENET_V2_DIR = "imagenetv2-matched-frequency-format-val"
# The fake's ImageNet-V2 folders: their sorted order differs from their numeric order.
FAKE_V2_FOLDERS = ("0", "2", "10", "100", "999")


def imagenet_subset(wnids: tuple[str, ...]) -> tuple[int, ...]:
    """The ImageNet-1k indices of these wnids, ascending."""
    return tuple(sorted(IMAGENET_INDEX[wnid] for wnid in wnids))


class ImageNetShift(ImageShiftDataModule):
    """ImageNet (ID) vs ImageNet-V2, -R, -Sketch and -A (OOD), 1000 classes."""

    name = "imagenet"
    class_names = IMAGENET_WNIDS
    augment_by_default = False
    sets = (
        SetSpec("train", "train", IMAGENET_TRAIN_DIR, IMAGENET, 1_281_167),
        SetSpec(ID_TEST, "id", IMAGENET_VAL_DIR, IMAGENET, 50_000),
        SetSpec("imagenet-v2", "ood", IMAGENET_V2_DIR, IMAGENET_V2, 10_000),
        SetSpec("imagenet-r", "ood", "imagenet-r", IMAGENET_R, 30_000, imagenet_subset(IMAGENET_R_WNIDS)),
        SetSpec("imagenet-sketch", "ood", "sketch", IMAGENET_SKETCH, 50_889),
        SetSpec("imagenet-a", "ood", "imagenet-a", IMAGENET_A, 7_500, imagenet_subset(IMAGENET_A_WNIDS)),
    )

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        """The authors' datasets_imagenet.yaml: resize 224 (bicubic) + centre crop 224 for training and
        evaluation alike; `augment=True` is their datasets_imagenet_augs.yaml's random-resized-crop + flip."""
        return ([random_resized_crop(size, "bilinear"), horizontal_flip()],
                [resize(size, "bicubic"), center_crop(size)])

    def load(self, spec: SetSpec, path: Path) -> ClassFolders:
        if spec.name == "imagenet-v2":
            labels = {str(index): index for index in range(len(IMAGENET_WNIDS))}
        elif spec.class_subset is not None:
            labels = {IMAGENET_WNIDS[index]: index for index in spec.class_subset}
        else:
            labels = IMAGENET_INDEX
        return ClassFolders(path, labels, require_all=False)

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """A few classes of each ImageNet set, at both ends of the 1k index range."""
        some = [IMAGENET_WNIDS[i] for i in (0, 1, 500, 999)]
        folders = {
            IMAGENET_TRAIN_DIR: (some, ".JPEG"),
            IMAGENET_VAL_DIR: (some, ".JPEG"),
            IMAGENET_V2_DIR: (FAKE_V2_FOLDERS, ".jpeg"),
            "imagenet-r": ([IMAGENET_R_WNIDS[i] for i in (0, 100, 199)], ".jpg"),
            "sketch": ([IMAGENET_WNIDS[i] for i in (0, 999)], ".JPEG"),
            "imagenet-a": ([IMAGENET_A_WNIDS[i] for i in (0, 100, 199)], ".jpg"),
        }
        for directory, (classes, suffix) in folders.items():
            for name in classes:
                write_images(root / directory / name, images_per_class, rng, suffix)
