"""Shift benchmarks as LightningDataModules, registered by name."""
from __future__ import annotations

from .base import ID_TEST, ID_VAL, EvalSet, ShiftDataModule, ShiftSplits
from .digits import DigitsShift

BENCHMARKS: dict[str, type[ShiftDataModule]] = {
    "digits": DigitsShift,
}


def build_datamodule(name: str, **kwargs) -> ShiftDataModule:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name](**kwargs)


__all__ = ["BENCHMARKS", "EvalSet", "ID_TEST", "ID_VAL", "ShiftDataModule", "ShiftSplits", "build_datamodule"]
