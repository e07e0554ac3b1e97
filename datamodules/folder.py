"""Your own data as a shift benchmark: image folders for training, ID evaluation and any number of OOD sets.

Benchmark options: `train=DIR`, `id_eval=DIR`, `ood={"<name>": DIR, ...}`, each directory laid out as
`<class>/<image>` (torchvision's ImageFolder). The classes are the training folders, sorted; an evaluation
folder may hold only some of them, and a folder that is not a training class is an error. Relative
directories are taken from the option `root` if given, else from the working directory. The default mode is
"clean" (model selection on an ID validation split held out from training), since your ID evaluation set is
then a true test set.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .base import ID_TEST, ID_VAL, DataError, DatasetMissing
from .fakes import write_images
from .imagecheck import FolderVerdict, check_folder
from .walk import listing_fingerprint, walk_folder
from .imagedata import ClassFolders, DataSource, ImageShiftDataModule, SetSpec, class_folders

FOLDER = DataSource(
    "image folder",
    "<dir>/<class>/<image> (ImageFolder layout; the classes are the training folder names)",
    "your own data, passed as benchmark options train=DIR, id_eval=DIR, ood={NAME: DIR, ...}",
)


def folder_fingerprint(directory: Path) -> str:
    """The content of an image folder (`walk.listing_fingerprint`), listed by the walk that cannot loop."""
    return listing_fingerprint(walk_folder(directory))


def training_classes(directory: Path) -> tuple[str, ...]:
    """The class folders of the training directory; fewer than two is no classification task (a usage error)."""
    names = tuple(class_folders(directory))
    if len(names) < 2:
        raise DataError(f"folder benchmark: {directory} holds {len(names)} class folder(s) {list(names)}; "
                        "a classifier needs at least two (<train>/<class>/<image>)")
    return names


class FolderShift(ImageShiftDataModule):
    """Image folders: `train` (ID training), `id_eval` (ID evaluation), `ood` (named OOD evaluations)."""

    name = "folder"
    modes = ("clean", "paper")
    canonical = False
    path_options = ("root", "train", "id_eval", "ood")

    @classmethod
    def set_folders(cls, options: dict) -> dict[str, Path]:
        """Each folder option as the directory it names: train, id_eval, `ood <name>`."""
        base = Path(options.get("root") or ".").expanduser()
        folders = {key: base / options[key] for key in ("train", "id_eval") if options.get(key) is not None}
        if isinstance(options.get("ood"), dict):
            folders.update({f"ood {name}": base / directory for name, directory in options["ood"].items()})
        return folders

    @classmethod
    def identity(cls, options: dict) -> dict:
        """Each folder by its content, never by its path; checked here, before any job is named, let alone
        trained: at least two training classes, and no evaluation folder holding a class training lacks.
        `skip_unreadable` counts only when true: which images a job reads then depends on what decodes."""
        meaning = super().identity(options)
        if not isinstance(meaning.get("skip_unreadable", False), bool):
            raise DataError(f"folder benchmark: skip_unreadable must be true or false, not {meaning['skip_unreadable']!r}")
        if not meaning.get("skip_unreadable"):
            meaning.pop("skip_unreadable", None)
        folders = cls.set_folders(options)
        fingerprints = {key: folder_fingerprint(directory) for key, directory in folders.items()}
        if "train" in folders:
            classes = set(training_classes(folders["train"]))
            for key, directory in folders.items():
                unknown = sorted(set(class_folders(directory)) - classes)
                if unknown:
                    raise DataError(f"folder benchmark: {key} folder {directory} holds classes training lacks: "
                                    f"{unknown[:5]}; an evaluation folder may hold only training's classes")
        for key in ("train", "id_eval"):
            if key in meaning:
                meaning[key] = fingerprints[key]
        if isinstance(meaning.get("ood"), dict):
            meaning["ood"] = {name: fingerprints[f"ood {name}"] for name in sorted(meaning["ood"])}
        return meaning

    @classmethod
    def check_images(cls, options: dict, progress: bool = True) -> dict[str, FolderVerdict]:
        """Every image of every folder decoded (or its verdict reused): what cannot be read, by set."""
        return {key: check_folder(directory, progress) for key, directory in cls.set_folders(options).items()}

    def __init__(self, train: str, id_eval: str, ood: dict[str, str] | None = None, skip_unreadable: bool = False,
                 **kwargs):
        ood = dict(ood or {})
        if not isinstance(skip_unreadable, bool):
            raise ValueError(f"skip_unreadable must be true or false, not {skip_unreadable!r}")
        self.skip_unreadable = skip_unreadable
        self.skipped_files: dict[str, list[str]] = {}
        reserved = sorted(set(ood) & {"train", ID_VAL, ID_TEST})
        if reserved:
            raise ValueError(f"OOD set names {', '.join(reserved)} are reserved; name your OOD folders otherwise")
        self.sets = (
            SetSpec("train", "train", str(train), FOLDER),
            SetSpec(ID_TEST, "id", str(id_eval), FOLDER),
            *(SetSpec(name, "ood", str(directory), FOLDER) for name, directory in ood.items()),
        )
        super().__init__(**kwargs)

    def data_root_path(self) -> Path:
        # Only the benchmark's own `root`: a data root set for the canonical benchmarks says nothing of these folders.
        return Path(self.root or ".").expanduser()

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        train = self.sets[0]
        path = self.locate(train)
        if not path.is_dir():
            raise self._missing(train, DatasetMissing(path, "the training directory is not a directory"))
        return training_classes(path)

    def load(self, spec: SetSpec, path: Path) -> ClassFolders:
        labels = {name: index for index, name in enumerate(self.class_names)}
        exclude: frozenset[str] = frozenset()
        if self.skip_unreadable:
            verdict = check_folder(path, progress=False)
            exclude = frozenset(verdict.bad)
            if exclude:
                self.skipped_files[spec.name] = [f"{relative}: {verdict.bad[relative]}" for relative in sorted(exclude)]
        return ClassFolders(path, labels, require_all=spec.split == "train", exclude=exclude)

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """train/ and id_eval/ with three classes, an OOD folder shifted/ with two of them: pass them as the
        benchmark's options."""
        for directory, classes in (("train", ("cat", "dog", "fox")), ("id_eval", ("cat", "dog", "fox")),
                                   ("shifted", ("cat", "fox"))):
            for name in classes:
                write_images(root / directory / name, images_per_class, rng, ".png")
