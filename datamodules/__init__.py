"""Shift benchmarks as LightningDataModules, registered by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lpft_bench.errors import UsageError
from lpft_bench.registry import Registry

from .base import ID_TEST, ID_VAL, CorruptImage, DataError, DatasetMissing, EvalSet, ShiftDataModule, ShiftSplits
from .breeds import Entity30, Living17
from .check import CheckRow, check_benchmarks, format_check
from .cifar import Cifar10Shift
from .cifar100 import Cifar100
from .digits import DigitsShift, DigitsToy
from .domainnet import DomainNetShift
from .domainnet200 import DOMAINNET200_TASKS
from .flowers102 import Flowers102Task
from .fmow import FmowShift
from .folder import FolderShift
from .imagenet import ImageNetShift
from .stl10 import Stl10Task

BENCHMARKS: Registry[type[ShiftDataModule]] = Registry("benchmark", [
    DigitsShift, DigitsToy, Living17, Entity30, DomainNetShift, Cifar10Shift, FmowShift, ImageNetShift, FolderShift,
    # Ren et al.'s downstream tasks: an ID evaluation set and no OOD set.
    Cifar100, Stl10Task, Flowers102Task, *DOMAINNET200_TASKS,
])


def benchmark_meaning(name: str, options: dict) -> dict:
    """What of a benchmark's options its results depend on (machine paths and speed knobs never count)."""
    return benchmark_class(name).identity(options)


def benchmark_class(name: str) -> type[ShiftDataModule]:
    return BENCHMARKS.get(name)


def build_datamodule(name: str, **kwargs) -> ShiftDataModule:
    return benchmark_class(name)(**kwargs)


def write_fake(benchmark: str, directory: str | Path, images_per_class: int = 2, seed: int = 0) -> Path:
    """Write a tiny `benchmark` dataset in its canonical layout under `directory` (a data root); return it."""
    writer = benchmark_class(benchmark).write_fake
    if writer is None:
        faked = [name for name, cls in BENCHMARKS.items() if cls.write_fake is not None]
        raise UsageError(f"no fake for {benchmark!r}; fakes exist for {', '.join(faked)}")
    if images_per_class < 1:
        raise UsageError("images_per_class must be at least 1")
    root = Path(directory)
    writer(root, images_per_class, np.random.default_rng(seed))
    return root


__all__ = ["BENCHMARKS", "benchmark_class", "benchmark_meaning", "CheckRow", "CorruptImage", "DataError", "DatasetMissing", "EvalSet", "ID_TEST", "ID_VAL",
           "ShiftDataModule", "ShiftSplits", "build_datamodule", "check_benchmarks", "format_check", "write_fake"]
