"""Suites as data: which benchmarks (each with its backbone and protocol), strategies (grids) and seeds to run."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from lpft_bench.engine import Job
from lpft_bench.strategies import FT_LR_GRID, LPFT_LR_GRID, STRATEGIES, get_strategy


@dataclass(frozen=True)
class Plan:
    """How one benchmark is run in a suite: its options, backbone and shared hyperparameters (epochs, batch size)."""

    backbone: str = "digits-resnet"
    options: dict = field(default_factory=dict)
    common: dict = field(default_factory=dict)
    grids: dict = field(default_factory=dict)  # per-strategy grid overrides for this benchmark


@dataclass(frozen=True)
class Suite:
    """A matrix of jobs. `strategies` maps a strategy to its grid: {hparam: [values]}; a list is an axis,
    anything else (a tuple of block names, say) a single value.

    `fake_data`: the suite runs on tiny fakes of the benchmarks' canonical layouts, written by the runner."""

    name: str
    description: str
    benchmarks: dict[str, Plan]
    strategies: dict[str, dict]
    seeds: tuple[int, ...] = (0, 1, 2)
    fake_data: bool = False

    def expand(self, benchmarks=None, strategies=None, seeds=None, overrides: dict | None = None) -> list[Job]:
        """All jobs of the matrix, optionally filtered; each strategy's grid is its Cartesian product.

        `overrides` (e.g. {"epochs": 1} for smoke runs) replace a hyperparameter wherever a strategy has it."""
        for label, chosen, known in (("benchmark", benchmarks, self.benchmarks), ("strategy", strategies, self.strategies)):
            unknown = set(chosen or ()) - set(known)
            if unknown:
                raise KeyError(f"suite {self.name!r} has no {label} {sorted(unknown)}; it has {sorted(known)}")
        jobs = []
        for benchmark, plan in self.benchmarks.items():
            if benchmarks and benchmark not in benchmarks:
                continue
            for strategy, grid in self.strategies.items():
                if strategies and strategy not in strategies:
                    continue
                defaults = get_strategy(strategy).defaults
                axes = {k: v if isinstance(v, list) else [v] for k, v in {**grid, **plan.grids.get(strategy, {})}.items()}
                forced = {k: v for k, v in (overrides or {}).items() if k in defaults}
                for name in forced:
                    axes.pop(name, None)
                shared = {k: v for k, v in plan.common.items() if k in defaults and k not in axes}
                for values in itertools.product(*axes.values()):
                    hparams = {**shared, **dict(zip(axes, values)), **forced}
                    for seed in seeds if seeds is not None else self.seeds:
                        jobs.append(Job(benchmark, strategy, seed, backbone=plan.backbone, hparams=hparams,
                                        benchmark_options=dict(plan.options)))
        return jobs


_PAPER_STRATEGIES = {"lp": {}, "ft": {"lr": list(FT_LR_GRID)}, "lp-ft": {"lr": list(LPFT_LR_GRID)}}
# ImageNet: the paper's LP is a 5-epoch head-only SGD probe at lr 0.1, and FT sweeps three learning rates.
_IMAGENET_SGD_PROBE = {"probe": "sgd", "hp_epochs": 5, "hp_lr": 0.1}
_IMAGENET_GRIDS = {"lp": _IMAGENET_SGD_PROBE, "ft": {"lr": [1e-4, 3e-4, 1e-3]},
                   "lp-ft": {"lr": [1e-5, 3e-5, 1e-4], **_IMAGENET_SGD_PROBE}}


def _paper_plan(backbone: str, epochs: int, batch_size: int = 64, **grids) -> Plan:
    return Plan(backbone=backbone, common={"epochs": epochs, "batch_size": batch_size}, grids=grids)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        Suite(
            "quickstart",
            "LP vs FT vs LP-FT (and scratch) on the offline digits benchmark, 3 seeds: minutes on a CPU",
            benchmarks={"digits": Plan(common={"epochs": 10, "batch_size": 64})},
            # Learning rates around where FT and LP-FT peak on ID validation with the shipped backbone, so the
            # selected one can sit inside its grid (the printout says when it does not).
            strategies={"scratch": {"lr": [3e-2]}, "lp": {}, "ft": {"lr": [1e-2, 3e-2, 1e-1, 3e-1]},
                        "lp-ft": {"lr": [1e-4, 3e-4, 1e-3]}},
        ),
        Suite(
            "paper",
            "Kumar et al.'s protocol: the paper's backbones, epochs, batch sizes and LR grids on the ten shift pairs",
            benchmarks={
                "living17": _paper_plan("moco-v2-resnet50", 20),
                "entity30": _paper_plan("moco-v2-resnet50", 20),
                "cifar10": _paper_plan("moco-v2-resnet50", 20),
                "domainnet": _paper_plan("clip-resnet50", 50, batch_size=32),  # the authors' domainnet.yaml
                "fmow": _paper_plan("moco-tp-resnet50", 50),
                "imagenet": _paper_plan("clip-vit-b16", 10, batch_size=128, **_IMAGENET_GRIDS),
            },
            strategies=_PAPER_STRATEGIES,
        ),
        Suite(
            "hpft",
            "Ren et al.'s head-probing sweep on digits: τ ∈ {0,1,2,5,10,20,50,100,200} HP epochs, "
            "label-smoothed HP η ∈ {0.1,0.3,0.5} (τ = 50), FT 10 epochs at lr 3e-3",
            benchmarks={"digits": Plan(common={"epochs": 10, "batch_size": 64, "lr": 3e-3, "hp_lr": 1e-2})},
            strategies={
                "hp-ft": {"hp_epochs": [0, 1, 2, 5, 10, 20, 50, 100, 200]},
                "lshp-ft": {"hp_epochs": [50], "hp_smoothing": [0.1, 0.3, 0.5]},
            },
        ),
        Suite(
            "hpft-toy",
            "Ren et al.'s toy: a 4+1-layer MLP pretrained on upright digits, 3 rotated+cropped classes downstream, "
            "HP for τ ∈ {0,1,3,10,30,100,300} epochs (to convergence), then FT 50 epochs",
            benchmarks={"digits-toy": Plan(backbone="digits-mlp",
                                           common={"epochs": 50, "batch_size": 64, "lr": 1e-2, "hp_lr": 1e-2})},
            strategies={"hp-ft": {"hp_epochs": [0, 1, 3, 10, 30, 100, 300]}},
        ),
        Suite(
            "smoke",
            "every benchmark x every strategy for 1 epoch on tiny fakes of the canonical layouts (CI)",
            # The digits ResNet has one block per stage: its re-initialisable last block is layer4.0.
            benchmarks={name: Plan(options={"subset": 40} if name != "digits" else {}, common={"epochs": 1, "hp_epochs": 1},
                                   grids={"reinit-ft": {"reinit_blocks": ("layer4.0",)}})
                        for name in ("digits", "living17", "entity30", "domainnet", "cifar10", "fmow", "imagenet")},
            strategies={name: {} for name in STRATEGIES},
            seeds=(0,),
            fake_data=True,
        ),
        Suite(
            "beyond",
            "the robust fine-tuning methods after the papers beside FT and LP-FT on digits, 3 seeds, 5 epochs: "
            "WiSE-FT, L2-SP, layer-wise and discriminative LRs, surgical FT, freeze-embed, gradual unfreezing, "
            "uniform and greedy soups of the FT sweep; every job records temperature scaling (calibration.csv)",
            benchmarks={"digits": Plan(common={"epochs": 5, "batch_size": 64})},
            # Listed in running order: wise-ft reuses the lp-ft jobs' phases, the soups the ft sweep's models.
            # Every FT variant sweeps FT's learning rates.
            strategies={
                "ft": {"lr": [3e-3, 1e-2, 2e-2]},
                "lp-ft": {"lr": [3e-4, 1e-3]},
                "wise-ft": {"lr": [3e-4, 1e-3], "reestimate_bn": [True, False]},
                "l2-sp": {"lr": [3e-3, 1e-2, 2e-2]},
                "llrd": {"lr": [3e-3, 1e-2, 2e-2]},
                "discriminative-lr": {"lr": [3e-3, 1e-2, 2e-2]},
                "surgical-ft": {"lr": [1e-3], "block": ["layer1", "layer4"]},
                "freeze-embed": {"lr": [3e-3, 1e-2, 2e-2]},
                "gradual-unfreeze": {"lr": [3e-3, 1e-2, 2e-2]},
                "uniform-soup": {"lrs": (3e-3, 1e-2, 2e-2)},
                "greedy-soup": {"lrs": (3e-3, 1e-2, 2e-2)},
            },
        ),
    ]
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]
