"""CIFAR-10 -> STL-10 and CIFAR-10.1: one training, two OOD evaluations.

Layout under the data root:
    cifar-10-batches-py/{data_batch_1..5,test_batch}     torchvision's CIFAR-10 pickles (50,000 / 10,000)
    stl10_binary/{test_X.bin,test_y.bin}                 STL-10 test: 96x96 column-major uint8, labels 1..10 (8,000)
    cifar10.1/cifar10.1_{v6,v4}_{data,labels}.npy        CIFAR-10.1: N x 32 x 32 x 3 uint8 + labels (v6 2,000; v4 2,021)

STL-10's monkey images are dropped (7,200 remain) and its labels mapped to CIFAR-10's order; CIFAR's frog logit
stays, so a frog prediction on STL-10 is an error. The option `cifar101_version` picks "v6" (default) or "v4".
As the paper did, images are only resized to the input size (no crop) and training is not augmented by default.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, STL10

from .base import ID_TEST, DatasetMissing
from .class_tables import CIFAR10_CLASSES, STL10_TO_CIFAR10
from .fakes import random_pixels
from .imagedata import ArrayImages, DataSource, ImageShiftDataModule, SetSpec
from .transforms import Pipeline, horizontal_flip, random_resized_crop, resize

CIFAR10_SOURCE = DataSource(
    "CIFAR-10 (python pickles)",
    "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch} (torchvision's CIFAR-10 folder)",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz unpacked into the data root "
    "(or torchvision.datasets.CIFAR10(<root>, download=True))",
)
STL10_SOURCE = DataSource(
    "STL-10 (binary)",
    "<root>/stl10_binary/{test_X.bin,test_y.bin} (only the test files are read)",
    "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz unpacked into the data root",
)
CIFAR101_SOURCE = DataSource(
    "CIFAR-10.1",
    "<root>/cifar10.1/cifar10.1_<version>_data.npy (N x 32 x 32 x 3 uint8) + cifar10.1_<version>_labels.npy",
    "the .npy files of datasets/ in github.com/modestyachts/CIFAR-10.1, copied into <root>/cifar10.1/",
)
CIFAR10_DIR = "cifar-10-batches-py"
STL10_DIR = "stl10_binary"
CIFAR101_DIR = "cifar10.1"
CIFAR101_COUNTS = {"v6": 2_000, "v4": 2_021}
STL10_SIZE = 96
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


class CifarPickles(CIFAR10):
    """torchvision's CIFAR-10 reader without its checksums.

    They pin the original archive's bytes, but the same pickles written from another copy of the images
    (a conversion, the tests' fakes) are as valid; presence and shapes are checked here instead. The label
    names are fixed facts, so `batches.meta` is not needed.
    """

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.classes = list(CIFAR10_CLASSES)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


class Stl10Binaries(STL10):
    """torchvision's STL-10 reader, without the check that md5-sums all five files, the 2.6 GB unlabeled
    one included, whatever the split read (the trap of the authors' code). Presence is checked here."""

    def _check_integrity(self) -> bool:
        return True


def read_cifar10(directory: Path, train: bool) -> CifarPickles:
    for name, _ in CifarPickles.train_list if train else CifarPickles.test_list:
        if not (directory / name).is_file():
            raise DatasetMissing(directory / name, "CIFAR-10 batch file not found")
    try:
        dataset = CifarPickles(str(directory.parent), train=train)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
        raise DatasetMissing(directory, f"CIFAR-10 pickles are malformed: {error!r}") from None
    if not set(dataset.targets) <= set(range(len(CIFAR10_CLASSES))):
        raise DatasetMissing(directory, "CIFAR-10 labels must be 0..9")
    return dataset


def read_stl10(directory: Path, split: str) -> ArrayImages:
    """STL-10's `split` ("train" 5,000 or "test" 8,000) with its own labels 0..9 (STL10_CLASSES' order)."""
    for name in (f"{split}_X.bin", f"{split}_y.bin"):
        if not (directory / name).is_file():
            raise DatasetMissing(directory / name, f"STL-10 {split} file not found")
    try:
        stl = Stl10Binaries(str(directory.parent), split=split)
    except ValueError as error:  # the image file's size is not a whole number of 3x96x96 images
        raise DatasetMissing(directory / f"{split}_X.bin", f"not an STL-10 image file: {error}") from None
    labels = stl.labels.astype(np.int64)
    if len(labels) != len(stl.data) or not np.all((labels >= 0) & (labels < len(STL10_CLASSES))):
        raise DatasetMissing(directory / f"{split}_y.bin", f"expected one label in 1..10 per image ({len(stl.data)} images)")
    return ArrayImages(stl.data.transpose(0, 2, 3, 1), labels)


def read_stl10_as_cifar(directory: Path) -> ArrayImages:
    """STL-10 test without its monkeys, labelled in CIFAR-10's order."""
    stl = read_stl10(directory, "test")
    keep = [index for index, label in enumerate(stl.targets) if STL10_TO_CIFAR10[label] is not None]
    return ArrayImages(stl.images[keep], [STL10_TO_CIFAR10[stl.targets[index]] for index in keep])


def write_stl10_fake(root: Path, split: str, images_per_class: int, rng: np.random.Generator) -> None:
    """STL-10 binaries of `split` (every class, monkeys included) in stl10_binary/."""
    stl = root / STL10_DIR
    stl.mkdir(parents=True, exist_ok=True)
    labels = [label for label in range(len(STL10_CLASSES)) for _ in range(images_per_class)]
    images = []
    for label in labels:
        image = random_pixels(rng, STL10_SIZE)
        # The top row carries the STL label (a test reads it back); the left column differs, so a reader that
        # transposed the images wrongly would read another value.
        image[:, 0, 0] = 255
        image[0, :, 0] = 20 * label + 10
        images.append(image.transpose(2, 1, 0))  # STL-10 stores each channel column-major
    (stl / f"{split}_X.bin").write_bytes(np.stack(images).tobytes())
    (stl / f"{split}_y.bin").write_bytes((np.asarray(labels, dtype=np.uint8) + 1).tobytes())  # labels 1..10
    (stl / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")


def read_cifar101(directory: Path, version: str) -> ArrayImages:
    data_file = directory / f"cifar10.1_{version}_data.npy"
    labels_file = directory / f"cifar10.1_{version}_labels.npy"
    for path in (data_file, labels_file):
        if not path.is_file():
            raise DatasetMissing(path, f"CIFAR-10.1 {version} file not found")
    try:
        images = np.load(data_file, allow_pickle=False)
        labels = np.load(labels_file, allow_pickle=False)
    except ValueError as error:
        raise DatasetMissing(directory, f"CIFAR-10.1 {version} files are not plain .npy arrays: {error}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DatasetMissing(data_file, f"expected N x 32 x 32 x 3 uint8 images, found {images.shape} {images.dtype}")
    if labels.shape != (len(images),) or not np.all((labels >= 0) & (labels < len(CIFAR10_CLASSES))):
        raise DatasetMissing(labels_file, f"expected {len(images)} labels in 0..9, found shape {labels.shape}")
    return ArrayImages(images, labels)


class Cifar10Shift(ImageShiftDataModule):
    """CIFAR-10 (ID) vs STL-10 and CIFAR-10.1 (OOD), 10 classes."""

    name = "cifar10"
    class_names = CIFAR10_CLASSES
    augment_by_default = False
    # datasets_cifar_stl.yaml L16-19 and L26-29 at 36fb2ef: std 0.228, not 0.229.
    paper_std = ((0.228, 0.224, 0.225),) * 2

    def __init__(self, cifar101_version: str = "v6", **kwargs):
        if cifar101_version not in CIFAR101_COUNTS:
            raise ValueError(f"cifar101_version must be one of {', '.join(CIFAR101_COUNTS)}, not {cifar101_version!r}")
        self.cifar101_version = cifar101_version
        super().__init__(**kwargs)

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        """The authors' datasets_cifar_stl.yaml: the whole image resized to the input size (bilinear), no crop;
        `augment=True` adds torchvision's random-resized-crop + flip, as the authors' augmented variants."""
        return ([random_resized_crop(size, "bilinear"), horizontal_flip()], [resize((size, size), "bilinear")])

    @property
    def sets(self) -> tuple[SetSpec, ...]:
        return (
            SetSpec("train", "train", CIFAR10_DIR, CIFAR10_SOURCE, 50_000),
            SetSpec(ID_TEST, "id", CIFAR10_DIR, CIFAR10_SOURCE, 10_000),
            SetSpec("stl10", "ood", STL10_DIR, STL10_SOURCE, 7_200),
            SetSpec("cifar10.1", "ood", CIFAR101_DIR, CIFAR101_SOURCE, CIFAR101_COUNTS[self.cifar101_version]),
        )

    def load(self, spec: SetSpec, path: Path):
        if spec.name == "stl10":
            return read_stl10_as_cifar(path)
        if spec.name == "cifar10.1":
            return read_cifar101(path, self.cifar101_version)
        return read_cifar10(path, train=spec.split == "train")

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """CIFAR-10 pickles, STL-10 test binaries (monkeys included) and CIFAR-10.1 v6 and v4 arrays."""
        cifar = root / CIFAR10_DIR
        cifar.mkdir(parents=True, exist_ok=True)
        labels = [label for label in range(len(CIFAR10_CLASSES)) for _ in range(images_per_class)]

        def batch(name: str) -> None:
            data = np.stack([random_pixels(rng).transpose(2, 0, 1).reshape(-1) for _ in labels])  # channel-major rows
            with open(cifar / name, "wb") as f:
                pickle.dump({"batch_label": name, "labels": labels, "data": data}, f)

        for i in range(1, 6):
            batch(f"data_batch_{i}")
        batch("test_batch")
        with open(cifar / "batches.meta", "wb") as f:
            pickle.dump({"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": len(labels), "num_vis": 3072}, f)

        write_stl10_fake(root, "test", images_per_class, rng)

        cifar101 = root / CIFAR101_DIR
        cifar101.mkdir(parents=True, exist_ok=True)
        for version, extra in (("v6", 0), ("v4", 1)):  # v4 is the larger release, as in the real data
            version_labels = np.asarray(labels + list(range(extra)), dtype=np.int64)
            np.save(cifar101 / f"cifar10.1_{version}_data.npy", np.stack([random_pixels(rng) for _ in version_labels]))
            np.save(cifar101 / f"cifar10.1_{version}_labels.npy", version_labels)
