"""Shift benchmarks as LightningDataModules, registered by name."""
from __future__ import annotations

from .base import ID_TEST, ID_VAL, CorruptImage, DataError, DatasetMissing, EvalSet, ShiftDataModule, ShiftSplits
from .breeds import Entity30, Living17
from .check import CheckRow, check_benchmarks, format_check
from .cifar import Cifar10Shift
from .digits import DigitsShift, DigitsToy
from .domainnet import DomainNetShift
from .fakes import write_fake
from .fmow import FmowShift
from .folder import FolderShift
from .imagenet import ImageNetShift

BENCHMARKS: dict[str, type[ShiftDataModule]] = {
    "digits": DigitsShift,
    "digits-toy": DigitsToy,
    "living17": Living17,
    "entity30": Entity30,
    "domainnet": DomainNetShift,
    "cifar10": Cifar10Shift,
    "fmow": FmowShift,
    "imagenet": ImageNetShift,
    "folder": FolderShift,
}


# Options that say where data lives on this machine: they never change what a job means.
MACHINE_PATH_OPTIONS = ("root", "train", "id_eval")


def benchmark_meaning(name: str, options: dict) -> dict:
    """A benchmark's options without machine paths (`folder`'s OOD sets count by their names)."""
    meaning = {k: v for k, v in options.items() if k not in MACHINE_PATH_OPTIONS}
    if isinstance(meaning.get("ood"), dict):
        meaning["ood"] = sorted(meaning["ood"])
    version = BENCHMARKS[name].data_version if name in BENCHMARKS else 0
    if version:  # only when raised: every other benchmark keeps its identity
        meaning["data_version"] = version
    return meaning


def build_datamodule(name: str, **kwargs) -> ShiftDataModule:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name](**kwargs)


__all__ = ["BENCHMARKS", "benchmark_meaning", "CheckRow", "CorruptImage", "DataError", "DatasetMissing", "EvalSet", "ID_TEST", "ID_VAL",
           "ShiftDataModule", "ShiftSplits", "build_datamodule", "check_benchmarks", "format_check", "write_fake"]
