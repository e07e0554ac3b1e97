"""DomainNet, SENTRY's 40-class subset: sketch (ID) vs real, painting and clipart (OOD).

Layout under the data root:
    domainnet/<domain>/<class>/<file>.jpg               the DomainNet images (domains clipart, painting, real, sketch)
    domainnet/<domain>_{train,test}_mini.txt            SENTRY's lists, lines `<domain>/<class>/<file> <label>`

Training: `sketch_train_mini.txt` (5,537); ID evaluation: `sketch_test_mini.txt` (2,399); OOD: the `test` lists
of real (6,943), painting (2,909) and clipart (1,616). Labels are the lists' own (not alphabetical); each line's
class folder must be the class its label names in the SENTRY-40 table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .base import ID_TEST, DatasetMissing
from .class_tables import DOMAINNET40
from .fakes import write_images
from .imagedata import DataSource, ImageShiftDataModule, LabeledFiles, SetSpec
from .transforms import Pipeline, horizontal_flip, random_crop, resize, scaled

DOMAINNET = DataSource(
    "DomainNet (SENTRY 40-class lists)",
    "<root>/domainnet/<domain>/<class>/<file>.jpg + <root>/domainnet/<domain>_{train,test}_mini.txt",
    "images: the clipart, painting, real and sketch zips of https://ai.bu.edu/M3SDA/ unpacked into domainnet/; "
    "lists: data/DomainNet/txt/*_mini.txt of github.com/virajprabhu/SENTRY copied into domainnet/",
)


def sentry_list_path(domain: str, split: str) -> str:
    return f"domainnet/{domain}_{split}_mini.txt"


def list_entries(list_file: Path, classes: Sequence[str], table: str) -> Iterator[tuple[str, int]]:
    """(path relative to the list's folder, label) per line of a DomainNet list (SENTRY's or the official ones),
    each label checked against the class folder its path names in `classes` (called `table` in errors)."""
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            relative, label_text = line.rsplit(maxsplit=1)
            label = int(label_text)
        except ValueError:
            raise DatasetMissing(list_file, f"line {number} is not '<domain>/<class>/<file> <label>': {line!r}") from None
        folder = Path(relative).parent.name
        if not 0 <= label < len(classes) or classes[label] != folder:
            raise DatasetMissing(list_file, f"line {number}: label {label} is not {table} class of folder {folder!r}")
        yield relative, label


def read_sentry_list(list_file: Path) -> LabeledFiles:
    """The images a SENTRY list names (paths relative to the list's folder) with the list's labels."""
    paths, labels = [], []
    for relative, label in list_entries(list_file, DOMAINNET40, "the SENTRY-40"):
        paths.append(list_file.parent / relative)
        labels.append(label)
    return LabeledFiles(paths, labels)


class DomainNetShift(ImageShiftDataModule):
    """DomainNet sketch (ID) vs real, painting, clipart (OOD), 40 classes."""

    name = "domainnet"
    class_names = DOMAINNET40
    sets = (
        SetSpec("train", "train", sentry_list_path("sketch", "train"), DOMAINNET, 5_537),
        SetSpec(ID_TEST, "id", sentry_list_path("sketch", "test"), DOMAINNET, 2_399),
        SetSpec("real", "ood", sentry_list_path("real", "test"), DOMAINNET, 6_943),
        SetSpec("painting", "ood", sentry_list_path("painting", "test"), DOMAINNET, 2_909),
        SetSpec("clipart", "ood", sentry_list_path("clipart", "test"), DOMAINNET, 1_616),
    )

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        """The authors' datasets_domainnet.yaml: training resized to 256x256 (bicubic), a random 224 crop and a
        flip; evaluation resized to 224x224 (bicubic)."""
        return ([resize((scaled(size, 256),) * 2, "bicubic"), random_crop(size), horizontal_flip()],
                [resize((size, size), "bicubic")])

    def load(self, spec: SetSpec, path: Path) -> LabeledFiles:
        return read_sentry_list(path)

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """All 40 classes in the four domains, with SENTRY-style lists (CRLF line ends, as the originals)."""
        for domain in ("sketch", "real", "painting", "clipart"):
            for split in ("train", "test"):
                lines = []
                for label, name in enumerate(DOMAINNET40):
                    for path in write_images(root / "domainnet" / domain / name, images_per_class, rng, ".jpg",
                                             prefix=f"{domain}_{split}_"):
                        lines.append(f"{domain}/{name}/{path.name} {label}\r\n")
                (root / "domainnet" / f"{domain}_{split}_mini.txt").write_text("".join(lines), newline="")
