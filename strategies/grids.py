"""Grids as their specification: what a phase holds, describes and hashes is `logspace(-7, 2, 50)`, never the
50 floats numpy computes from it (their last bits depend on the CPU). The values are computed where used."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogSpace(Sequence):
    """`num` values from 10**start to 10**stop, evenly spaced in log10, as `numpy.logspace(start, stop, num)`."""

    start: float
    stop: float
    num: int

    def __post_init__(self):
        if self.num < 1:
            raise ValueError(f"logspace({self.start}, {self.stop}, {self.num}): num must be at least 1")

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.logspace(self.start, self.stop, self.num))

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index):
        return self.values[index]

    def describe(self) -> dict:
        return {"logspace": [self.start, self.stop, self.num]}

    def __str__(self) -> str:
        return f"logspace({self.start:g}, {self.stop:g}, {self.num})"
