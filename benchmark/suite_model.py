"""What a suite is: plans (a benchmark with its backbone and protocol) x labelled strategy grids x seeds, and how
it expands into jobs. The suites themselves are data (suites.py, ren2023.py)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from lpft_bench.engine import Job
from lpft_bench.errors import UsageError
from lpft_bench.strategies import get_strategy


@dataclass(frozen=True)
class Plan:
    """How one benchmark is run in a suite: which benchmark (default: the plan's label), its options, backbone,
    shared hyperparameters (epochs, batch size) and per-strategy grid overrides."""

    backbone: str = "digits-resnet"
    options: dict = field(default_factory=dict)
    common: dict = field(default_factory=dict)
    grids: dict = field(default_factory=dict)
    benchmark: str | None = None
    checkpoint: str | None = None
    backbone_options: dict = field(default_factory=dict)
    backbone_label: str | None = None
    # The strategy labels this plan runs (None: every strategy of the suite): a paper runs some methods on some
    # tasks only (Ren et al.'s re-initialised blocks on DomainNet alone).
    strategies: tuple[str, ...] | None = None


def axis(name: str, value, defaults: dict) -> list:
    """The values a grid entry sweeps. A list is an axis, anything else one value; for a hyperparameter whose
    value is itself a sequence (reinit_blocks, a soup's lrs), a list of lists is an axis and a flat list one value."""
    sequence_valued = isinstance(defaults.get(name), (tuple, list))
    if isinstance(value, list) and (not sequence_valued or all(isinstance(v, (list, tuple)) for v in value)):
        return [tuple(v) if sequence_valued else v for v in value]
    return [tuple(value) if sequence_valued and isinstance(value, list) else value]


def strategy_of(label: str, grid: dict) -> tuple[str, dict]:
    """A suite's strategy entry: `label` names a registered strategy, or a labelled variant of the one its
    grid's `strategy` key names (e.g. lp-ft-bn-train: {strategy: lp-ft, batchnorm: train})."""
    grid = dict(grid)
    return grid.pop("strategy", label), grid


@dataclass(frozen=True)
class Suite:
    """A matrix of jobs: benchmarks (labelled plans) x strategies (labelled grids, see `axis`) x seeds.

    `fake_data`: the suite runs on tiny fakes of the benchmarks' canonical layouts, written by the runner."""

    name: str
    description: str
    benchmarks: dict[str, Plan]
    strategies: dict[str, dict]
    seeds: tuple[int, ...] = (0, 1, 2)
    fake_data: bool = False

    def expand(self, benchmarks=None, strategies=None, seeds=None, overrides: dict | None = None) -> list[Job]:
        """All jobs of the matrix, optionally filtered by label; each strategy's grid is its Cartesian product.

        `overrides` (e.g. {"epochs": 1} for smoke runs; a list sweeps) replace a hyperparameter wherever a
        strategy takes it."""
        for label, chosen, known in (("benchmark", benchmarks, self.benchmarks), ("strategy", strategies, self.strategies)):
            unknown = set(chosen or ()) - set(known)
            if unknown:
                raise UsageError(f"suite {self.name!r} has no {label} {sorted(unknown)}; it has {sorted(known)}")
        jobs = []
        for benchmark_label, plan in self.benchmarks.items():
            if benchmarks and benchmark_label not in benchmarks:
                continue
            for strategy_label, entry in self.strategies.items():
                if strategies and strategy_label not in strategies:
                    continue
                if plan.strategies is not None and strategy_label not in plan.strategies:
                    continue
                strategy, grid = strategy_of(strategy_label, entry)
                defaults = get_strategy(strategy).takes
                grid = {**grid, **plan.grids.get(strategy_label, {})}
                unknown = sorted(set(grid) - set(defaults))
                if unknown:
                    raise UsageError(f"suite {self.name!r}, strategy {strategy_label!r}: {strategy} has no hyperparameters "
                                     f"{unknown}; it takes {sorted(defaults)}")
                axes = {k: axis(k, v, defaults) for k, v in grid.items()}
                axes.update({k: axis(k, v, defaults) for k, v in (overrides or {}).items() if k in defaults})
                shared = {k: v for k, v in plan.common.items() if k in defaults and k not in axes}
                names = {"benchmark": plan.benchmark or benchmark_label, "strategy": strategy, "backbone": plan.backbone}
                shown = {"benchmark": benchmark_label, "strategy": strategy_label,
                         "backbone": plan.backbone_label or plan.backbone}
                labels = {k: v for k, v in shown.items() if v != names[k]}
                for values in itertools.product(*axes.values()):
                    hparams = {**shared, **dict(zip(axes, values))}
                    for seed in seeds if seeds is not None else self.seeds:
                        jobs.append(Job(names["benchmark"], strategy, seed, backbone=plan.backbone, hparams=hparams,
                                        benchmark_options=dict(plan.options), checkpoint=plan.checkpoint,
                                        backbone_options=dict(plan.backbone_options), labels=labels))
        return jobs


def combine(name: str, description: str, suites: list[Suite]) -> Suite:
    """Several suites as one matrix: their plans (labels must differ), each running only its own suite's
    strategies, over their common seeds. Job ids are those of the suites alone: a plan's meaning is unchanged."""
    plans, strategies = {}, {}
    for suite in suites:
        if suite.seeds != suites[0].seeds:
            raise ValueError(f"suites {suites[0].name} and {suite.name} have different seeds")
        for label, plan in suite.benchmarks.items():
            if label in plans:
                raise ValueError(f"benchmark label {label!r} is in two of the combined suites")
            plans[label] = replace(plan, strategies=plan.strategies or tuple(suite.strategies))
        for label, grid in suite.strategies.items():
            if strategies.setdefault(label, grid) != grid:
                raise ValueError(f"strategy label {label!r} has two grids in the combined suites")
    return Suite(name, description, plans, strategies, seeds=suites[0].seeds)
