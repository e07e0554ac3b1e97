"""Ren et al. (ICLR 2023), "How to prepare your task head for finetuning": the `ren2023` suite, as data.

Which job feeds which of the paper's tables is `tables_of`; how a table's cell is chosen among those jobs (HP0,
HP200, τ* by FT validation accuracy, lsHP, the re-initialised blocks) is an analysis-time rule
(analysis/vs_ren2023.py), as learning-rate selection is. The protocol card (analysis/protocol_ren2023.py) says
where every setting below comes from: the paper's text, the author's development code, or our choice.
"""
from __future__ import annotations

from lpft_bench.strategies import REINIT_CONFIGS
from lpft_bench.suite_model import Plan, Suite

# The pretrainings of Tables 1-3 by the paper's names, and the registered backbone each is.
PRETRAININGS = {"moco-in": "moco-v2-resnet50", "sup-in": "sup-in-resnet50", "sup-c10": "sup-c10-resnet50",
                "simclr": "simclr-resnet50"}
# Table 1's tasks with their FT epochs: CIFAR-100 100 and Flowers-102 1000 (the paper's App. B), STL-10 200
# (the development code's Fig0_LPFT_IN1K50_STL.sh:29, `--epochs 200`, which main_LPFT_tab1.py uses for HP and FT).
TABLE1_TASKS = {"flowers102": 1000, "stl10": 200, "cifar100": 100}
TABLE1_PRETRAININGS = ("moco-in", "sup-in", "sup-c10")
# τ for Figures 3-4 and HP*: the development code's LP_EPOCHS (main_LPFT_sweep.py:26) with its last point, 199,
# as the paper's HP200. τ = 0 is HP0-FT (FT from a random head); τ = 200 is HP200-FT.
TAUS = (0, 1, 2, 4, 8, 16, 32, 50, 100, 200)
HP_CONVERGED = 200
# HP at lr 0.01 held constant (main_LPFT_tab1.py:187 sets min_lr = lr; Fig0_LPFT_*.sh `--lr 0.01`); FT at
# 0.01 x that lr (main_LPFT_tab1.py:210), cosine to 1e-6.
TABLE1_COMMON = {"batch_size": 128, "hp_lr": 1e-2, "lr": 1e-4}
# lsHP: η_HP = 0.1, η_FT = 0 (Fig0_LPFT_sim50_STL.sh:28 `--smoothing 0.1 --FT_smoothing 0`); Table 2's
# "opposite energy" smooths FT instead, η_HP = 0, η_FT = 0.1 (Fig0_LPFT_IN1K50_STL.sh:28).
LS_HP = {"hp_epochs": HP_CONVERGED, "hp_smoothing": 0.1, "ft_smoothing": 0.0}
LS_HP_OPPOSITE = {"hp_epochs": HP_CONVERGED, "hp_smoothing": 0.0, "ft_smoothing": 0.1, "opposite_energy": True}
# DomainNet (Tables 2-3): HP 100 epochs (the FT scripts start from Bob_ep_0099.pth, Fig8_FT_*_lastbob.sh:31) at
# lr 0.002 for Sup-IN (Fig8_LP_IN1Kres50_dom*.sh:28) and 0.01 for SimCLR (Fig0_LP_simclr50_dom*.sh:28); FT 200
# epochs at 1e-4 (Fig8_FT_*.sh:28, Fig0_FT_simclr50_dom*.sh:28).
DOMAINNET_TAU = 100
DOMAINNET_HP_LR = {"sup-in": 2e-3, "simclr": 1e-2}
DOMAINNET_COMMON = {"batch_size": 128, "epochs": 200, "lr": 1e-4, "hp_epochs": DOMAINNET_TAU}
DOMAINNET_TASKS = {"real": ("sup-in", "simclr"), "sketch": ("sup-in", "simclr"), "quickdraw": ("sup-in",)}

STRATEGIES = {
    "hp-ft": {"hp_epochs": list(TAUS)},
    "lshp-ft": dict(LS_HP),
    "lshp-ft-opposite": {"strategy": "lshp-ft", **LS_HP_OPPOSITE},
    "mlp-head": {},
    # Table 3's cumulative configurations from the top: the paper's -L4.3, -L4.2, -L4.1.
    "reinit-ft": {"reinit_blocks": [list(blocks) for blocks in REINIT_CONFIGS]},
}
# Table 3's variants by the paper's names, and the blocks each re-initialises (None: the baseline, no block).
TABLE3_VARIANTS = {"baseline": None, "-L4.3": REINIT_CONFIGS[0], "-L4.2": REINIT_CONFIGS[1],
                   "-L4.1": REINIT_CONFIGS[2]}


def table1_label(task: str, pretraining: str) -> str:
    return f"{task}-{pretraining}"


def domainnet_label(domain: str, pretraining: str) -> str:
    return f"domainnet-{domain}-200-{pretraining}"


def _table1_plan(task: str, pretraining: str) -> Plan:
    # Table 2's label-smoothing rows are on STL-10 from Sup-IN: the Table 1 plan with the opposite-energy run.
    extra = ("lshp-ft-opposite",) if (task, pretraining) == ("stl10", "sup-in") else ()
    return Plan(benchmark=task, backbone=PRETRAININGS[pretraining], backbone_label=pretraining,
                common={**TABLE1_COMMON, "epochs": TABLE1_TASKS[task]}, strategies=("hp-ft", "lshp-ft", *extra))


def _domainnet_plan(domain: str, pretraining: str) -> Plan:
    # Table 2 compares heads on real and sketch; Table 3 re-initialises blocks of Sup-IN on all three.
    strategies = ("hp-ft",) + (("mlp-head",) if domain != "quickdraw" else ()) + (
        ("reinit-ft",) if pretraining == "sup-in" else ())
    return Plan(benchmark=f"domainnet-{domain}-200", backbone=PRETRAININGS[pretraining], backbone_label=pretraining,
                common={**DOMAINNET_COMMON, "hp_lr": DOMAINNET_HP_LR[pretraining]},
                grids={"hp-ft": {"hp_epochs": DOMAINNET_TAU}}, strategies=strategies)


REN2023 = Suite(
    "ren2023",
    "Ren et al.'s Tables 1-3 and the τ sweeps of Figures 3-4: HPτ-FT, lsHP, MLP heads and re-initialised layer4 "
    "blocks of ResNet-50 (MoCo-IN, Sup-IN, Sup-C10, SimCLR) on Flowers-102, STL-10, CIFAR-100 and DomainNet-200",
    benchmarks={
        **{table1_label(task, p): _table1_plan(task, p) for task in TABLE1_TASKS for p in TABLE1_PRETRAININGS},
        **{domainnet_label(domain, p): _domainnet_plan(domain, p)
           for domain, pretrainings in DOMAINNET_TASKS.items() for p in pretrainings},
    },
    strategies=STRATEGIES,
)


def tables_of(benchmark_label: str, strategy_label: str, hparams: dict) -> tuple[str, ...]:
    """The paper's tables and figures a job of the ren2023 suite feeds (several for one job: Table 1's HP200 on
    STL-10 from Sup-IN is also Table 2's small-energy row)."""
    if benchmark_label.startswith("domainnet-"):
        sup_in = benchmark_label.endswith("-sup-in")
        two = ("Table 2",) if "-quickdraw-" not in benchmark_label and strategy_label in ("hp-ft", "mlp-head") else ()
        three = ("Table 3",) if sup_in and strategy_label in ("hp-ft", "reinit-ft") else ()
        return two + three
    stl_sup_in = benchmark_label == table1_label("stl10", "sup-in")
    if strategy_label == "lshp-ft-opposite":
        return ("Table 2",)
    if strategy_label == "lshp-ft":
        return ("Table 1",) + (("Table 2",) if stl_sup_in else ())
    small_energy = stl_sup_in and hparams.get("hp_epochs") == HP_CONVERGED
    return ("Table 1", "Figures 3-4") + (("Table 2",) if small_energy else ())
