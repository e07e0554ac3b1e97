"""DomainNet real, sketch and quickdraw as Ren et al.'s (ICLR 2023) 200-class tasks: ID evaluation, no OOD set.

Layout under the data root (the `domainnet` benchmark's folder; quickdraw beside its domains):
    domainnet/<domain>/<class>/<file>.(jpg|png)         the DomainNet images of real, sketch, quickdraw
    domainnet/<domain>_{train,test}.txt                 DomainNet's official split lists, lines
                                                        `<domain>/<class>/<file> <label>` (labels 0..344)

The paper gives only the sizes (200 classes, under 20,000 training and 4,000 test images per task); the
author's development code (Joshua-Ren/P2_better_v0 util/datasets.py at 895092c) reads LMDBs built elsewhere,
so which classes and images were used is unknown. Our selection, a specification that is part of every job's
identity (`SELECTION`):
- classes: labels 0..199 of the official lists (the first 200 of DomainNet's class order, `DOMAINNET345`);
- images: per class and split, the files of the official list ranked by sha256("<seed>:<list path>") and
  the first `train_per_class` (99) or `test_per_class` (19) kept: 200 x 99 = 19,800 < 20,000 training and
  200 x 19 = 3,800 < 4,000 test images at most (fewer where a class has fewer). The rank depends on the
  file's name alone, never on the machine, the list's line order or a random generator's version.
Transforms: the development code's get_std_transform (util/datasets.py L83-99 at 895092c), as CIFAR-100's.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .base import ID_TEST, DatasetMissing
from .class_tables import DOMAINNET345
from .domainnet import list_entries
from .fakes import write_images
from .imagedata import DataSource, ImageShiftDataModule, LabeledFiles, SetSpec
from .transforms import Pipeline, padded_crop_pipelines

CLASSES = 200
SELECTION = {"classes": "labels 0-199 of DomainNet's official lists", "rank": "sha256 of '<seed>:<list path>'",
             "seed": 0, "train_per_class": 99, "test_per_class": 19}
DOMAINNET_OFFICIAL = DataSource(
    "DomainNet (official train/test lists)",
    "<root>/domainnet/<domain>/<class>/<file> + <root>/domainnet/<domain>_{train,test}.txt",
    "images: the <domain>.zip of https://ai.bu.edu/M3SDA/ unpacked into domainnet/ (real and sketch as "
    "`lpft-bench data download domainnet` unpacks them; quickdraw.zip the same way); lists: the page's "
    "<domain>_train.txt and <domain>_test.txt copied into domainnet/",
)


def official_list_path(domain: str, split: str) -> str:
    return f"domainnet/{domain}_{split}.txt"


def rank(relative: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{relative}".encode()).hexdigest()


def read_official_list(list_file: Path, per_class: int, seed: int) -> LabeledFiles:
    """The selected images of an official list: classes 0..199, per class the `per_class` first by rank."""
    by_class: dict[int, list[str]] = {}
    for relative, label in list_entries(list_file, DOMAINNET345, "DomainNet's"):
        if label < CLASSES:
            by_class.setdefault(label, []).append(relative)
    absent = sorted(set(range(CLASSES)) - set(by_class))
    if absent:
        raise DatasetMissing(list_file, f"{len(absent)} of the first {CLASSES} classes have no image, "
                                        f"{DOMAINNET345[absent[0]]!r} among them")
    paths, labels = [], []
    for label in sorted(by_class):
        for relative in sorted(by_class[label], key=lambda r: rank(r, seed))[:per_class]:
            paths.append(list_file.parent / relative)
            labels.append(label)
    return LabeledFiles(paths, labels)


class DomainNet200(ImageShiftDataModule):
    """One DomainNet domain as a 200-class task (Ren et al.): `domain` names it; registered once per domain."""

    domain = ""
    class_names = DOMAINNET345[:CLASSES]

    @classmethod
    def identity(cls, options: dict) -> dict:
        # The selection is a specification: changing a cap or the seed changes every job's id.
        return {**super().identity(options), "selection": SELECTION}

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        return padded_crop_pipelines(size)

    def load(self, spec: SetSpec, path: Path) -> LabeledFiles:
        per_class = SELECTION["train_per_class" if spec.split == "train" else "test_per_class"]
        return read_official_list(path, per_class, SELECTION["seed"])

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """The 200 classes and two classes beyond them (which the selection must leave out), official-style
        lists with CRLF line ends and a class order that is not the file order."""
        for split in ("train", "test"):
            lines = []
            for label in (*range(CLASSES + 2),)[::-1]:
                name = DOMAINNET345[label]
                for path in write_images(root / "domainnet" / cls.domain / name, images_per_class, rng, ".jpg",
                                         prefix=f"official_{split}_"):
                    lines.append(f"{cls.domain}/{name}/{path.name} {label}\r\n")
            (root / official_list_path(cls.domain, split)).write_text("".join(lines), newline="")


def _task(domain: str) -> type[DomainNet200]:
    sets = (SetSpec("train", "train", official_list_path(domain, "train"), DOMAINNET_OFFICIAL),
            SetSpec(ID_TEST, "id", official_list_path(domain, "test"), DOMAINNET_OFFICIAL))
    return type(f"DomainNet200{domain.title()}", (DomainNet200,), {
        "name": f"domainnet-{domain}-200", "domain": domain, "sets": sets,
        "__doc__": f"DomainNet {domain}, Ren et al.'s 200-class task: train <20,000, ID test <4,000, no OOD set."})


# Module attributes under their own names, so each class pickles (process launchers, DDP workers).
DomainNet200Real, DomainNet200Sketch, DomainNet200Quickdraw = DOMAINNET200_TASKS = tuple(
    _task(domain) for domain in ("real", "sketch", "quickdraw"))
