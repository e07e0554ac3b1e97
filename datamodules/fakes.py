"""Tiny fake datasets in each benchmark's canonical layout, with the real file formats.

They exercise the loaders' semantics (and let a user try a pipeline) without the real data: random pixels,
a few images per class, and where a benchmark has 1000 or 62 classes, only a few of them. Every fake keeps the
traps of the real thing: STL-10's monkeys, ImageNet-V2's integer folders, DomainNet's non-alphabetical labels
and CRLF lists, FMoW's images from after 2013, unmapped countries and regions other than the three read.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .breeds import BreedsShift, Entity30, Living17
from .cifar import CIFAR101_DIR, CIFAR10_DIR, STL10_DIR
from .class_tables import CIFAR10_CLASSES, DOMAINNET40, FMOW_CATEGORIES, IMAGENET_A_WNIDS, IMAGENET_R_WNIDS
from .fmow import FMOW_DIR
from .imagenet import IMAGENET_TRAIN_DIR, IMAGENET_V2_DIR, IMAGENET_VAL_DIR, IMAGENET_WNIDS

FAKE_SIZE = 32
STL10_SIZE = 96
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
# ImageNet-V2 folders whose sorted order differs from their numeric order.
FAKE_V2_FOLDERS = ("0", "2", "10", "100", "999")
# FMoW: (country code, region); the last code is missing from the mapping, so WILDS calls its region "Other".
FAKE_FMOW_COUNTRIES = (("USA", "Americas"), ("BRA", "Americas"), ("NGA", "Africa"), ("FRA", "Europe"),
                       ("CHN", "Asia"), ("ZZZ", None))
# Category 61 is absent from the Americas but not from Africa and Europe (the model still has 62 outputs).
FAKE_FMOW_CATEGORIES = {"Americas": (0, 5), "Africa": (0, 5, 61), "Europe": (5, 61), "Asia": (0,), "Other": (0,)}


def random_pixels(rng: np.random.Generator, size: int = FAKE_SIZE) -> np.ndarray:
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def write_images(folder: Path, count: int, rng: np.random.Generator, suffix: str, prefix: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{i:06d}{suffix}" for i in range(count)]
    for path in paths:
        Image.fromarray(random_pixels(rng)).save(path)
    return paths


def fake_breeds(task: type[BreedsShift], root: Path, count: int, rng: np.random.Generator) -> None:
    """Every wnid of the task, in ImageNet's train and val folders."""
    for breeds_class in task.classes:
        for wnid in breeds_class.source + breeds_class.target:
            for folder in (IMAGENET_TRAIN_DIR, IMAGENET_VAL_DIR):
                write_images(root / folder / wnid, count, rng, ".JPEG")


def fake_imagenet(root: Path, count: int, rng: np.random.Generator) -> None:
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
            write_images(root / directory / name, count, rng, suffix)


def fake_domainnet(root: Path, count: int, rng: np.random.Generator) -> None:
    """All 40 classes in the four domains, with SENTRY-style lists (CRLF line ends, as the originals)."""
    for domain in ("sketch", "real", "painting", "clipart"):
        for split in ("train", "test"):
            lines = []
            for label, name in enumerate(DOMAINNET40):
                for path in write_images(root / "domainnet" / domain / name, count, rng, ".jpg", prefix=f"{domain}_{split}_"):
                    lines.append(f"{domain}/{name}/{path.name} {label}\r\n")
            (root / "domainnet" / f"{domain}_{split}_mini.txt").write_text("".join(lines), newline="")


def fake_cifar10(root: Path, count: int, rng: np.random.Generator) -> None:
    """CIFAR-10 pickles, STL-10 test binaries (monkeys included) and CIFAR-10.1 v6 and v4 arrays."""
    cifar = root / CIFAR10_DIR
    cifar.mkdir(parents=True, exist_ok=True)
    labels = [label for label in range(len(CIFAR10_CLASSES)) for _ in range(count)]

    def batch(name: str) -> None:
        data = np.stack([random_pixels(rng).transpose(2, 0, 1).reshape(-1) for _ in labels])  # channel-major rows
        with open(cifar / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data}, f)

    for i in range(1, 6):
        batch(f"data_batch_{i}")
    batch("test_batch")
    with open(cifar / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": len(labels), "num_vis": 3072}, f)

    stl = root / STL10_DIR
    stl.mkdir(parents=True, exist_ok=True)
    stl_labels = [label for label in range(len(STL10_CLASSES)) for _ in range(count)]
    images = []
    for label in stl_labels:
        image = random_pixels(rng, STL10_SIZE)
        # The top row carries the STL label (a test reads it back); the left column differs, so a reader that
        # transposed the images wrongly would read another value.
        image[:, 0, 0] = 255
        image[0, :, 0] = 20 * label + 10
        images.append(image.transpose(2, 1, 0))  # STL-10 stores each channel column-major
    (stl / "test_X.bin").write_bytes(np.stack(images).tobytes())
    (stl / "test_y.bin").write_bytes((np.asarray(stl_labels, dtype=np.uint8) + 1).tobytes())  # labels 1..10
    (stl / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")

    cifar101 = root / CIFAR101_DIR
    cifar101.mkdir(parents=True, exist_ok=True)
    for version, extra in (("v6", 0), ("v4", 1)):  # v4 is the larger release, as in the real data
        version_labels = np.asarray(labels + list(range(extra)), dtype=np.int64)
        np.save(cifar101 / f"cifar10.1_{version}_data.npy", np.stack([random_pixels(rng) for _ in version_labels]))
        np.save(cifar101 / f"cifar10.1_{version}_labels.npy", version_labels)


def fake_fmow(root: Path, count: int, rng: np.random.Generator) -> None:
    """WILDS-style FMoW metadata over five regions and four splits, half the images from after 2012."""
    directory = root / FMOW_DIR
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for code, region in FAKE_FMOW_COUNTRIES:
        for split in ("train", "val", "test", "seq"):
            for category in FAKE_FMOW_CATEGORIES[region or "Other"]:
                for i in range(count):
                    for timestamp in ("2010-06-15T10:16:40Z", "2014-03-02T08:01:12.345Z"):
                        rows.append({"split": split, "category": FMOW_CATEGORIES[category], "country_code": code,
                                     "timestamp": timestamp, "img_filename": f"{code}_{category}_{i}.jpg"})
    metadata = pd.DataFrame(rows)
    metadata["img_path"] = "images/" + metadata["img_filename"]
    metadata.to_csv(directory / "rgb_metadata.csv", index=False)
    mapping = [{"name": code, "alpha-3": code, "region": region} for code, region in FAKE_FMOW_COUNTRIES if region]
    pd.DataFrame(mapping).to_csv(directory / "country_code_mapping.csv", index=False)
    for row in range(len(metadata)):
        Image.fromarray(random_pixels(rng)).save(directory / "images" / f"rgb_img_{row}.png")


def fake_folder(root: Path, count: int, rng: np.random.Generator) -> None:
    """train/ and id_eval/ with three classes, an OOD folder shifted/ with two of them."""
    for directory, classes in (("train", ("cat", "dog", "fox")), ("id_eval", ("cat", "dog", "fox")),
                               ("shifted", ("cat", "fox"))):
        for name in classes:
            write_images(root / directory / name, count, rng, ".png")


FAKES = {
    "living17": lambda root, count, rng: fake_breeds(Living17, root, count, rng),
    "entity30": lambda root, count, rng: fake_breeds(Entity30, root, count, rng),
    "domainnet": fake_domainnet,
    "cifar10": fake_cifar10,
    "fmow": fake_fmow,
    "imagenet": fake_imagenet,
    "folder": fake_folder,
}


def write_fake(benchmark: str, directory: str | Path, images_per_class: int = 2, seed: int = 0) -> Path:
    """Write a tiny `benchmark` dataset in its canonical layout under `directory` (a data root); return it.

    For "folder", the fake is `train/`, `id_eval/` and `shifted/`: pass them as the benchmark's options.
    """
    if benchmark not in FAKES:
        raise KeyError(f"no fake for {benchmark!r}; fakes exist for {', '.join(FAKES)}")
    if images_per_class < 1:
        raise ValueError("images_per_class must be at least 1")
    root = Path(directory)
    FAKES[benchmark](root, images_per_class, np.random.default_rng(seed))
    return root
