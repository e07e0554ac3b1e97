"""Benchmarks read from image files on disk: where each set lies, how it is read, how it becomes tensors.

Every set of a benchmark is a `SetSpec`: its name, its role (train, ID or OOD evaluation), its path under
the data root, and the `DataSource` it comes from (layout and how to obtain it). The loader and the data
check (`check.py`) read the same specs, so what a run expects and what the check reports cannot drift.

Where the data lies: one data root (`data_root`, else `$LPFT_BENCH_DATA`), or per benchmark the option
`root=DIR`, else `$LPFT_BENCH_DATA_<NAME>` (e.g. `LPFT_BENCH_DATA_LIVING17`); the sub-paths below the root
are the same either way and are listed in each benchmark module's docstring.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .base import ID_VAL, CorruptImage, DatasetMissing, EvalSet, ShiftDataModule, ShiftSplits, stratified_sample
from .transformed import TransformedImages
from .walk import image_samples
from .transforms import Pipeline, center_crop, compose, horizontal_flip, op, random_resized_crop, resize

DATA_ROOT_VARIABLE = "LPFT_BENCH_DATA"


def data_root_variable(benchmark: str) -> str:
    """The environment variable that points one benchmark at its own data root."""
    return f"{DATA_ROOT_VARIABLE}_{re.sub(r'[^0-9A-Za-z]', '_', benchmark).upper()}"


@dataclass(frozen=True)
class DataSource:
    """A dataset as its users already have it: `layout` under the data root, and how to `obtain` it."""

    title: str
    layout: str
    obtain: str


@dataclass(frozen=True)
class SetSpec:
    """One set of a benchmark: `split` is "train", "id" or "ood"; `path` is relative to the data root.

    `expected` is the image count of the full dataset (None where the reference gives none);
    `class_subset` restricts the argmax to these logits (ImageNet-R/A).
    """

    name: str
    split: str
    path: str
    source: DataSource
    expected: int | None = None
    class_subset: tuple[int, ...] | None = None


def load_image(path: str | os.PathLike) -> Image.Image:
    """The image as RGB; a file PIL cannot decode raises CorruptImage naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    # PIL reports undecodable files as OSError (truncated, unidentified), SyntaxError (broken PNG chunks)
    # or ValueError; a vanished file is an OSError too.
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptImage(f"cannot read image {path}: {error}") from error


def class_folders(directory: Path) -> list[str]:
    """The class folders of an ImageFolder-layout directory, sorted; hidden folders are not classes."""
    if not directory.is_dir():
        raise DatasetMissing(directory, "directory not found")
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))


class ClassFolders(ImageFolder):
    """An ImageFolder whose labels come from a fixed folder-name -> label map, not from sorting the folders.

    With `require_all`, every folder of the map must be there and other folders are ignored (BREEDS reads
    its subclasses out of the full ImageNet tree); otherwise every folder present must be in the map (a
    folder the benchmark does not know is an error, never a silently shifted label).
    """

    def __init__(self, root: Path, labels: Mapping[str, int], require_all: bool, exclude: frozenset[str] = frozenset()):
        self._labels = dict(labels)
        self._require_all = require_all
        self._exclude = exclude
        try:
            super().__init__(str(root), loader=load_image)
        except FileNotFoundError as error:  # torchvision's report of a class folder without a single image
            raise DatasetMissing(root, str(error)) from None

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        root = Path(directory)
        present = class_folders(root)
        if self._require_all:
            absent = sorted(set(self._labels) - set(present))
            if absent:
                raise DatasetMissing(root / absent[0], f"{len(absent)} of {len(self._labels)} class folders are missing, "
                                                       f"this one among them")
            folders = sorted(self._labels)
        else:
            unknown = [name for name in present if name not in self._labels]
            if unknown:
                raise DatasetMissing(root / unknown[0], f"folder {unknown[0]!r} is not a class of this set "
                                                        f"({len(unknown)} unknown folders)")
            if not present:
                raise DatasetMissing(root, "no class folders")
            folders = present
        return folders, {name: self._labels[name] for name in folders}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        # torchvision's own walk follows every link, forever; this one refuses loops (see walk.py).
        return image_samples(directory, class_to_idx, extensions or IMG_EXTENSIONS, self._exclude)


class LabeledFiles(Dataset):
    """Images named by path with their labels (list files, metadata tables); every file must exist."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int]):
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise DatasetMissing(missing[0], f"{len(missing)} of {len(paths)} listed images are missing, this one among them")
        self.paths = list(paths)
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return load_image(self.paths[index]), self.targets[index]


class ArrayImages(Dataset):
    """Images held in memory as an N x H x W x 3 uint8 array (STL-10, CIFAR-10.1)."""

    def __init__(self, images: np.ndarray, targets: Sequence[int]):
        self.images = np.ascontiguousarray(images)
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), self.targets[index]


class ImageShiftDataModule(ShiftDataModule):
    """A shift benchmark read from files: subclasses declare `sets` and `class_names`, and `load` one set.

    Options (benchmark options of a job):
    - `mode`: "paper" (the default but for `folder`) or "clean" (an `id_val` of `val_fraction` of the
      training images, drawn per class with the job's seed, is held out from training).
    - `augment`: the benchmark's training augmentation (`pipelines`); the default is the benchmark's own
      (`augment_by_default`); without it training reads the evaluation transform.
    - `ood_sets`: the OOD sets to evaluate, a name or a list (default: all), for users who have only some.
    - `root`: this benchmark's data root.
    - `cache_mb` (default 1024): keep each set's decoded images (training) or evaluation tensors in memory
      when the set's estimated size fits this budget, so files are read and decoded once per run; 0 disables.
    - `subset` (every benchmark): see ShiftDataModule.
    Transforms: each benchmark's `pipelines` (the authors' configs for the paper's benchmarks) at the backbone's
    input size, then the backbone's normalisation.
    """

    modes = ("paper", "clean")
    augment_by_default = True
    # Read from a fixed layout under the data root (so the data check lists it).
    canonical = True
    sets: tuple[SetSpec, ...]
    class_names: tuple[str, ...]
    # Paper mode: the (training, evaluation) std the authors' dataset configs write for an ImageNet-normalised
    # backbone, digit for digit (their 0.228 and FMoW's training 0.2289, not timm's 0.229); None: the backbone's.
    paper_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @classmethod
    def identity(cls, options: dict) -> dict:
        meaning = super().identity(options)
        if cls.paper_std is not None and (options.get("mode") or cls.modes[0]) == "paper":
            meaning["paper_std"] = [list(std) for std in cls.paper_std]
        return meaning

    def __init__(self, root: str | None = None, augment: bool | None = None, ood_sets: Sequence[str] | None = None,
                 val_fraction: float = 0.1, cache_mb: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.root = root
        self.cache_bytes = int(cache_mb) * 2**20
        if augment is not None and not isinstance(augment, bool):
            raise ValueError(f"augment must be true or false, not {augment!r}")
        self.augment = self.augment_by_default if augment is None else augment
        known = [spec.name for spec in self.sets if spec.split == "ood"]
        if isinstance(ood_sets, str):
            ood_sets = [ood_sets]
        self.ood_sets = tuple(known if ood_sets is None else ood_sets)
        unknown = sorted(set(self.ood_sets) - set(known))
        if unknown:
            raise ValueError(f"{self.name} has no OOD set {', '.join(map(repr, unknown))}; its OOD sets: {', '.join(known)}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie strictly between 0 and 1, not {val_fraction!r}")
        self.val_fraction = val_fraction

    def load(self, spec: SetSpec, path: Path) -> Dataset:
        """The set at `path` as (PIL image, label) pairs with a `targets` list; DatasetMissing if it is not right."""
        raise NotImplementedError

    def data_root_path(self) -> Path | None:
        for candidate in (self.root, os.environ.get(data_root_variable(self.name)), self.data_root,
                          os.environ.get(DATA_ROOT_VARIABLE)):
            if candidate:
                return Path(candidate).expanduser()
        return None

    def _missing(self, spec: SetSpec, error: DatasetMissing) -> DatasetMissing:
        return error.within(self.name, spec.name, spec.source.layout, spec.source.obtain)

    def locate(self, spec: SetSpec) -> Path:
        """Where the set must lie; DatasetMissing, in the benchmark's words, if nothing is there."""
        root = self.data_root_path()
        if root is None:
            raise self._missing(spec, DatasetMissing(
                Path("<data root>") / spec.path,
                f"no data root is set: pass data_root, set ${DATA_ROOT_VARIABLE}, or for this benchmark alone "
                f"${data_root_variable(self.name)} or the benchmark option root=DIR"))
        path = root / spec.path
        if not path.exists():
            raise self._missing(spec, DatasetMissing(path, f"{spec.source.title} not found"))
        return path

    def read(self, spec: SetSpec) -> Dataset:
        """The set's images as (PIL image, label) pairs; a miss names the benchmark, set, path and remedy."""
        path = self.locate(spec)
        try:
            return self.load(spec, path)
        except DatasetMissing as error:
            raise self._missing(spec, error) from None

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        """(augmented training, evaluation) operations before the tensor conversion. This default follows the
        backbone's timm data config (its interpolation and crop fraction); the paper's benchmarks override it
        with their authors' configs."""
        return ([random_resized_crop(size, interpolation), horizontal_flip()],
                [resize(math.floor(size / crop_pct), interpolation), center_crop(size)])

    def transform_pipelines(self) -> tuple[Pipeline, Pipeline]:
        """(training, evaluation) pipelines as operation lists: the benchmark's own steps at the backbone's
        input size, then the backbone's normalisation (CLIP's own mean and std for CLIP backbones, as the
        authors' CLIP wrapper normalised inside the model)."""
        config = resolve_data_config(args={"input_size": (3, 224, 224), **self.data_config})
        channels, height, width = config["input_size"]
        if height != width:
            raise ValueError(f"{self.name}: the transforms assume a square input, not {height}x{width}")
        augmented, evaluation = self.pipelines(height, config["interpolation"], config["crop_pct"])
        training = augmented if self.augment else evaluation
        head = [op("grayscale")] if channels == 1 else []  # single-channel backbones (the digits ResNet) read luminance
        train_std, eval_std = self.normalisation_std(tuple(config["mean"]), tuple(config["std"]))

        def tail(std):
            return [op("to_tensor"), op("normalize", mean=list(config["mean"]), std=list(std))]
        return head + training + tail(train_std), head + evaluation + tail(eval_std)

    def normalisation_std(self, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
        """(training, evaluation) std: in paper mode the authors' own constants where the backbone normalises as
        ImageNet (the case their configs were written for), else the backbone's."""
        imagenet = mean == tuple(IMAGENET_DEFAULT_MEAN) and std == tuple(IMAGENET_DEFAULT_STD)
        if self.mode == "paper" and self.paper_std is not None and imagenet:
            return self.paper_std
        return std, std

    def image_transforms(self) -> tuple[Callable, Callable]:
        """(training, evaluation) transforms; one object when training is not augmented."""
        training, evaluation = self.transform_pipelines()
        evaluation_transform = compose(evaluation)
        return (compose(training) if training != evaluation else evaluation_transform), evaluation_transform

    def build_splits(self) -> ShiftSplits:
        specs = [spec for spec in self.sets if spec.split != "ood" or spec.name in self.ood_sets]
        for spec in specs:  # every set is looked for before any is read: a missing OOD set fails in a second
            self.locate(spec)
        images = {spec.name: self.read(spec) for spec in specs}
        training, evaluation = self.image_transforms()
        train_images = images["train"]
        train = TransformedImages(train_images, training, deterministic=not self.augment, cache_bytes=self.cache_bytes)
        train_eval = TransformedImages(train_images, evaluation, cache_bytes=self.cache_bytes)
        eval_sets = [EvalSet(spec.name, TransformedImages(images[spec.name], evaluation, cache_bytes=self.cache_bytes),
                             spec.split, spec.class_subset)
                     for spec in specs if spec.split != "train"]
        if self.mode == "clean":
            labels = np.asarray(train_images.targets)
            held_out = stratified_sample(labels, max(1, round(len(labels) * self.val_fraction)), self.seed)
            kept = np.setdiff1d(np.arange(len(labels)), held_out)
            eval_sets.insert(0, EvalSet(ID_VAL, Subset(train_eval, held_out), "id"))
            train, train_eval = Subset(train, kept), Subset(train_eval, kept)
        return ShiftSplits(train=train, train_eval=train_eval, eval_sets=eval_sets,
                           num_classes=len(self.class_names), class_names=list(self.class_names))

