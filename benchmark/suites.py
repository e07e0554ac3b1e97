"""Suites as data: which benchmarks (each with its backbone and protocol), strategies (grids) and seeds to run."""
from __future__ import annotations

from lpft_bench.datamodules import BENCHMARKS
from lpft_bench.registry import Registry
from lpft_bench.ren2023 import REN2023, tables_of
from lpft_bench.strategies import FT_LR_GRID, LPFT_LR_GRID, STRATEGIES
from lpft_bench.suite_model import Plan, Suite, axis, combine, strategy_of


_PAPER_STRATEGIES = {"lp": {}, "ft": {"lr": list(FT_LR_GRID)}, "lp-ft": {"lr": list(LPFT_LR_GRID)}}
# ImageNet, as the authors' run_adaptation_experiments.py at 36fb2ef: LP is a 5-epoch head-only SGD probe (cosine)
# sweeping lr 0.01, 0.03, 0.1 (L968-969); FT sweeps three lrs (L948-952); every LP-FT replication starts from the
# best-val epoch of the one seed-0, lr-0.1 probe (its hard-coded phase-2 checkpoint_path, L1022-1028).
_IMAGENET_SGD_PROBE = {"probe": "sgd", "hp_epochs": 5, "hp_lr": 0.1}
_IMAGENET_GRIDS = {"lp": {**_IMAGENET_SGD_PROBE, "hp_lr": [0.01, 0.03, 0.1]}, "ft": {"lr": [1e-4, 3e-4, 1e-3]},
                   "lp-ft": {"lr": [1e-5, 3e-5, 1e-4], **_IMAGENET_SGD_PROBE, "probe_seed": 0}}


# The smoke suite runs digits (on the backbone pretrained for it) and every canonical benchmark on its fake.
_SMOKE_BENCHMARKS = ("digits", *(name for name, benchmark in BENCHMARKS.items()
                                 if benchmark.canonical and benchmark.write_fake is not None))


# ... and every strategy on every paper architecture, untrained (no checkpoint to fetch) at 64 px, on the fake of
# the benchmark the paper ran it on: timm's layer groups, CLIP's attention pool and projection and a ViT's tokens
# meet every phase kind. Per architecture: its last block (reinit-ft), and for the ViT a block surgical FT trains.
_SMOKE_ARCHITECTURES = {
    "living17-resnet50": {"benchmark": "living17", "backbone": "moco-v2-resnet50",
                          "grids": {"reinit-ft": {"reinit_blocks": ("layer4.2",)}}},
    "domainnet-clip-rn50": {"benchmark": "domainnet", "backbone": "clip-resnet50",
                            "grids": {"reinit-ft": {"reinit_blocks": ("stages.3.2",)}}},
    "imagenet-clip-vit-b16": {"benchmark": "imagenet", "backbone": "clip-vit-b16", "timm_kwargs": {"img_size": 64},
                              "grids": {"reinit-ft": {"reinit_blocks": ("blocks.11",)},
                                        "surgical-ft": {"block": "blocks.0"}}},
    # Ren et al.'s Sup-C10 ResNet-18 (a CIFAR stem); their other backbones are the ResNet-50 above.
    "cifar10-sup-c10-resnet18": {"benchmark": "cifar10", "backbone": "sup-c10-resnet18",
                                 "grids": {"reinit-ft": {"reinit_blocks": ("layer4.1",)}}},
}


def _smoke_plan(benchmark: str, backbone: str | None = None, timm_kwargs: dict | None = None,
                grids: dict | None = None) -> Plan:
    """One epoch on `benchmark`'s fake: on the shipped digits backbone, or on `backbone` untrained at 64 px."""
    options = {} if BENCHMARKS[benchmark].ships_data else {"subset": 40}
    common = {"epochs": 1, "hp_epochs": 1}
    if backbone is None:
        # The digits ResNet has one block per stage: its re-initialisable last block is layer4.0.
        return Plan(benchmark=benchmark, options=options, common=common,
                    grids={"reinit-ft": {"reinit_blocks": ("layer4.0",)}})
    untrained = {"random": True, "data_config": {"input_size": (3, 64, 64)}, "timm_kwargs": timm_kwargs or {}}
    return Plan(benchmark=benchmark, backbone=backbone, options=options, common=common, grids=grids or {},
                backbone_options=untrained, backbone_label=f"{backbone} (untrained)")


def _paper_plan(backbone: str, epochs: int, batch_size: int = 64, **grids) -> Plan:
    return Plan(backbone=backbone, common={"epochs": epochs, "batch_size": batch_size}, grids=grids)


SUITES: Registry[Suite] = Registry("suite", [
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
                # domainnet.yaml inherits batch_size 64 from resnet50_transfer.yaml (L5 at 36fb2ef); the 32 of
                # the authors' later configs (batch_splits 2) was follow-up work, not the paper.
                "domainnet": _paper_plan("clip-resnet50", 50),
                "fmow": _paper_plan("moco-tp-resnet50", 50),
                "imagenet": _paper_plan("clip-vit-b16", 10, batch_size=128, **_IMAGENET_GRIDS),
            },
            strategies=_PAPER_STRATEGIES,
        ),
        REN2023,
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
            "every benchmark x every strategy for 1 epoch on tiny fakes of the canonical layouts, and every "
            "strategy on every paper architecture (untrained, 64 px) (CI)",
            benchmarks={**{name: _smoke_plan(name) for name in _SMOKE_BENCHMARKS},
                        **{label: _smoke_plan(**plan) for label, plan in _SMOKE_ARCHITECTURES.items()}},
            strategies={name: {} for name in STRATEGIES},
            seeds=(0,),
            fake_data=True,
        ),
        Suite(
            "beyond",
            "the robust fine-tuning methods after the papers beside FT and LP-FT on digits, 3 seeds, 5 epochs: "
            "WiSE-FT, L2-SP, layer-wise and discriminative LRs, surgical FT, freeze-embed, gradual unfreezing, "
            "BitFit, uniform and greedy soups of the FT sweep; every job records temperature scaling (calibration.csv)",
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
                "bitfit": {"lr": [1e-2, 3e-2, 1e-1]},
                "uniform-soup": {"lrs": (3e-3, 1e-2, 2e-2)},
                "greedy-soup": {"lrs": (3e-3, 1e-2, 2e-2)},
            },
        ),
])


# Another name for a suite: `kumar2022` is the `paper` suite, whose name stays what its stores and golden ids say.
SUITE_ALIASES = {"kumar2022": "paper"}
# The papers `lpft-bench run --all` reproduces: the paper's name, its suite, and the tables each job feeds.
PAPERS = {"kumar2022": "paper", "ren2023": "ren2023"}


def get_suite(name: str) -> Suite:
    return SUITES.get(SUITE_ALIASES.get(name, name))


def all_papers_suite() -> Suite:
    """`--all`: every paper's suite in one matrix (each plan keeps its own suite's strategies)."""
    return combine("papers", "every paper's suite: " + ", ".join(PAPERS), [get_suite(s) for s in PAPERS.values()])


def paper_tables_of(job_benchmark_label: str, strategy_label: str, hparams: dict) -> tuple[str, tuple[str, ...]]:
    """(paper, the tables and figures of it) a job of `all_papers_suite` feeds."""
    if job_benchmark_label in REN2023.benchmarks:
        return "ren2023", tables_of(job_benchmark_label, strategy_label, hparams)
    return "kumar2022", ("Tables 1-2 (ID, OOD)",)


__all__ = ["PAPERS", "Plan", "SUITES", "SUITE_ALIASES", "Suite", "all_papers_suite", "axis", "get_suite",
           "paper_tables_of", "strategy_of"]
