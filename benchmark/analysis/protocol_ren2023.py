"""`lpft-bench protocol ren2023`: Ren et al.'s (ICLR 2023) protocol card. Every value is read off the ren2023
suite's plans and the phases its jobs build, so the card cannot drift from what runs; every item says where it
comes from: the paper ("paper (section)"), the author's development code ("development code
(file:line@commit)", Joshua-Ren/P2_better_v0, the paper's code never having been released), or "our choice,
unverifiable" with the reason; where text and code disagree, which one the suite follows and why."""
from __future__ import annotations

from lpft_bench.datamodules.domainnet200 import SELECTION
from lpft_bench.ren2023 import (DOMAINNET_HP_LR, DOMAINNET_TAU, HP_CONVERGED, LS_HP, LS_HP_OPPOSITE, PRETRAININGS,
                                REN2023, TABLE1_TASKS, TABLE3_VARIANTS, TAUS)
from lpft_bench.strategies import get_strategy

COMMIT = "895092c"
PAPER = "paper"
CODE = "development code"
OURS = "our choice, unverifiable"


def _code(where: str) -> str:
    return f"{CODE} ({where}@{COMMIT})"


def _phases(benchmark_label: str, strategy_label: str) -> list:
    job = REN2023.expand(benchmarks=[benchmark_label], strategies=[strategy_label], seeds=[0])[-1]
    return get_strategy(job.strategy).phases(job.hparams)


def _item(name: str, value, source: str, why: str = "", disagreement: str = "") -> dict:
    item = {"item": name, "value": value, "source": source}
    if why:
        item["why"] = why
    if disagreement:
        item["text vs code"] = disagreement
    return item


def ren2023_card() -> dict:
    hp, ft = _phases("stl10-sup-in", "hp-ft")
    plans = REN2023.benchmarks
    items = [
        _item("code", "Joshua-Ren/P2_better_v0 (May-July 2022)", OURS,
              "the paper's code link (Joshua-Ren/how_to_prepare_taskhead) holds only a README saying it was never "
              "released; the author's development repository fills what the text leaves open"),
        _item("backbones", {name: PRETRAININGS[name] for name in PRETRAININGS}, OURS,
              "the scripts load local files they never name the source of (bashes/*.sh --alice_name); see the "
              "README's table of Ren et al.'s backbones for each release chosen"),
        _item("batch size", plans["stl10-sup-in"].common["batch_size"], PAPER + " (App. B)"),
        _item("HP: head-only, backbone frozen in eval mode, optimiser",
              f"{hp.optimizer}, momentum {hp.momentum}, schedule {hp.schedule}", PAPER + " (App. B)",
              "HP at a constant LR; main_LPFT_tab1.py:187 sets min_lr = lr, so the code agrees"),
        _item("FT: optimiser and schedule", f"{ft.optimizer}, momentum {ft.momentum}, {ft.schedule} per epoch",
              PAPER + " (App. B)", disagreement="the code adds Nesterov and weight decay 0.05 (util/general.py:148, "
              "main_LPFT_tab1.py:61) that the text does not mention: the suite follows the text (no weight decay, "
              "plain momentum), the strategies' shared SGD"),
        _item("HP lr / FT lr (Table 1)", f"{hp.lr} / {ft.lr}", _code("main_LPFT_tab1.py:210; bashes/Fig0_LPFT_IN1K50_STL.sh:29"),
              "the text gives no learning rates; FT runs at 0.01 x the HP lr of `--lr 0.01`"),
        _item("FT epochs", dict(TABLE1_TASKS), PAPER + " (App. B) for CIFAR-100 and Flowers-102; "
              + _code("bashes/Fig0_LPFT_IN1K50_STL.sh:29") + " for STL-10"),
        _item("τ sweep (HP epochs; HP* and Figures 3-4)", list(TAUS), _code("main_LPFT_sweep.py:26"),
              disagreement=f"the code's last τ is 199; the suite runs {HP_CONVERGED}, the paper's HP200"),
        _item("HP200 / HP0", f"τ = {HP_CONVERGED} / τ = 0 (FT from a random head)", PAPER + " (Table 1)"),
        _item("τ*", "the τ with the best mean FT selection-set accuracy over seeds, chosen at collect time",
              PAPER + " (Sec. 4, Table 1: 'earlier-stopped HP')"),
        _item("reported figure", "ID test accuracy at the FT epoch with the best selection-set accuracy",
              PAPER + " (App. B: early-stopped FT)", "main_LPFT_tab1.py:220-225 keeps best_vacc the same way"),
        _item("lsHP (Table 1; Table 2's 'more energy')", dict(LS_HP), _code("bashes/Fig0_LPFT_sim50_STL.sh:28"),
              "the text names no η; the script's --smoothing 0.1 --FT_smoothing 0"),
        _item("Table 2 'opposite energy'", dict(LS_HP_OPPOSITE), _code("bashes/Fig0_LPFT_IN1K50_STL.sh:28"),
              disagreement="with FT_smoothing > 0 the code smooths FT with the HP's η (main_LPFT_tab1.py:200-201, "
              "here 0: plain HP-FT); the suite follows the text and smooths FT with η_FT = 0.1"),
        _item("Table 2 'small energy'", f"hp-ft τ = {HP_CONVERGED}, no smoothing (Table 1's HP200 jobs)", OURS,
              "the converged, unsmoothed head: the least energy among the three"),
        _item("MLP head", "2 layers, hidden 256", PAPER + " (App. B)",
              "main_LPFT_tab1.py:49-50: `--Bob_depth` 2 is a 2-layer MLP"),
        _item("Table 3 variants", {k: list(v) if v else "none" for k, v in TABLE3_VARIANTS.items()},
              _code("main_LPFT_tab1.py:47-48 (Bob_layer 1.3: layer4 C; 1.6: CB; 2: all of layer4)"),
              "the paper counts blocks from 1 (L4.3 = timm's layer4.2)"),
        _item("DomainNet HP / FT", f"τ = {DOMAINNET_TAU}, HP lr {DOMAINNET_HP_LR}, FT lr "
              f"{plans['domainnet-real-200-sup-in'].common['lr']}, {plans['domainnet-real-200-sup-in'].common['epochs']} epochs",
              _code("bashes/Fig8_FT_IN1Kres50_domreal_lastbob.sh:28-31 (Bob_ep_0099), Fig8_LP_IN1Kres50_domreal.sh:28, "
                    "Fig0_LP_simclr50_domreal.sh:28")),
        _item("DomainNet-200 classes and images", SELECTION, OURS,
              "the code reads LMDBs built elsewhere (util/datasets.py, util/data_loader_lmdb.py): the paper gives only "
              "200 classes, < 20,000 train and < 4,000 test images"),
        _item("transforms", "resize, random crop padded by size/8, flip; evaluation: resize",
              _code("util/datasets.py:83-99"),
              disagreement="the code normalises with CIFAR-10's mean and std whatever the backbone; the suite "
              "normalises as each backbone expects"),
        _item("input size", "224 px for every ResNet-50, Sup-C10's included", _code("bashes/PT_C10_Res50.sh:28, "
              "FT_C10res50_STL10.sh:27 (--figsize 224)"),
              disagreement="'32 px for CIFAR-pretrained backbones' holds for the CIFAR-stem ResNet-18; the paper's "
              "Sup-C10 ResNet-50 was pretrained and fine-tuned at 224 px by these scripts, which the suite follows"),
        _item("seeds", list(REN2023.seeds), OURS, "the code draws no fixed seed per table; three as Kumar et al."),
        _item("out of scope", "Tox21 (Table 1's GCN on molecules), PASCAL VOC segmentation", OURS,
              "image classification with ResNet-50 is what this suite runs; see the README"),
    ]
    return {"suite": REN2023.name, "jobs": len(REN2023.expand()), "commit": COMMIT, "items": items}


def format_ren2023_card(card: dict) -> str:
    lines = [f"ren2023 ({card['jobs']} jobs): Ren et al. ICLR 2023, development code read at {card['commit']}"]
    for item in card["items"]:
        lines.append(f"  {item['item']}: {item['value']}")
        lines.append(f"    source: {item['source']}" + (f"; why: {item['why']}" if "why" in item else ""))
        if "text vs code" in item:
            lines.append(f"    text vs code: {item['text vs code']}")
    return "\n".join(lines)
