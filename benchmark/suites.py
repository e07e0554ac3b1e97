"""Suites as data: which benchmarks, backbone, strategies (with hyperparameter grids) and seeds to run."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from lpft_bench.jobs import Job
from lpft_bench.strategies import get_strategy


@dataclass(frozen=True)
class Suite:
    """A matrix of jobs. `strategies` maps a strategy to its grid: {hparam: [values]} (single values allowed)."""

    name: str
    description: str
    benchmarks: dict[str, dict]
    backbone: str
    strategies: dict[str, dict]
    seeds: tuple[int, ...] = (0, 1, 2)
    common: dict = field(default_factory=dict)

    def expand(self, benchmarks=None, strategies=None, seeds=None, overrides: dict | None = None) -> list[Job]:
        """All jobs of the matrix, optionally filtered; each strategy's grid is its Cartesian product.

        `overrides` (e.g. {"epochs": 1} for smoke runs) replace a hyperparameter wherever a strategy has it."""
        for label, chosen, known in (("benchmark", benchmarks, self.benchmarks), ("strategy", strategies, self.strategies)):
            unknown = set(chosen or ()) - set(known)
            if unknown:
                raise KeyError(f"suite {self.name!r} has no {label} {sorted(unknown)}; it has {sorted(known)}")
        jobs = []
        for benchmark, options in self.benchmarks.items():
            if benchmarks and benchmark not in benchmarks:
                continue
            for strategy, grid in self.strategies.items():
                if strategies and strategy not in strategies:
                    continue
                defaults = get_strategy(strategy).defaults
                common = {k: v for k, v in self.common.items() if k in defaults}
                forced = {k: v for k, v in (overrides or {}).items() if k in defaults}
                axes = {k: v if isinstance(v, (list, tuple)) else [v] for k, v in grid.items()}
                for values in itertools.product(*axes.values()):
                    hparams = {**common, **dict(zip(axes, values)), **forced}
                    for seed in seeds if seeds is not None else self.seeds:
                        jobs.append(Job(benchmark, strategy, seed, backbone=self.backbone, hparams=hparams,
                                        benchmark_options=dict(options)))
        return jobs


SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        Suite(
            "quickstart",
            "LP vs FT vs LP-FT (and scratch) on the offline digits benchmark, 3 seeds: minutes on a CPU",
            benchmarks={"digits": {}},
            backbone="digits-resnet",
            strategies={
                "scratch": {"lr": [3e-2]},
                "lp": {},
                "ft": {"lr": [3e-3, 1e-2]},
                "lp-ft": {"lr": [3e-4, 1e-3]},
            },
            common={"epochs": 10, "batch_size": 64},
        ),
    ]
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]
