"""`lpft-bench protocol`: the exact protocol of each benchmark of the paper suite, read off the objects a run
builds (the suite's plan and jobs, the strategies' phases, the backbone, the datamodule's transforms and mode,
the probe's settings), so the card cannot drift from what runs."""
from __future__ import annotations

import argparse
import json

import torch

from lpft_bench.analysis.protocol_sources import protocol_sources
from lpft_bench.analysis.tables import INTERVAL_LABELS, PAPER_OOD_SET_NAMES
from lpft_bench.datamodules import ID_TEST, ID_VAL, build_datamodule
from lpft_bench.errors import UsageError
from lpft_bench.models import build_backbone, resolve_backbone
from lpft_bench.models.backbones import feature_dim
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.suites import get_suite
from lpft_bench.weights_download import checkpoint_provenance

SUITE = "paper"


def _phase_card(phase, swept_lrs: list[float]) -> dict:
    """What a phase trains and how; a learning rate the suite sweeps shows as its grid."""
    kind = phase_kind(phase.trains)
    if not kind.by_gradient:
        return {"phase": phase.name, "trains": phase.trains}
    card = {"phase": phase.name, "trains": phase.trains, "epochs": phase.epochs,
            "lr": swept_lrs if len(swept_lrs) > 1 else phase.lr, "optimizer": phase.optimizer,
            "momentum": phase.momentum, "weight_decay": phase.weight_decay, "schedule": phase.schedule,
            # A head-only phase keeps the frozen backbone in eval mode, whatever its BatchNorm setting says.
            "batchnorm": phase.batchnorm if kind.trains_backbone else "eval (backbone frozen)",
            "head_init": phase.head_init, "validate_every": phase.validate_every}
    if phase.seed is not None:
        card["seed"] = f"{phase.seed}, for every replication (the job of seed {phase.seed}'s phase)"
    return card


def benchmark_protocol(benchmark: str) -> dict:
    """One benchmark's protocol card as a JSON-ready dict."""
    suite = get_suite(SUITE)
    if benchmark not in suite.benchmarks:
        raise UsageError(f"the {SUITE} suite has no benchmark {benchmark!r}; it has {', '.join(suite.benchmarks)}")
    plan = suite.benchmarks[benchmark]
    jobs = suite.expand(benchmarks=[benchmark])
    with torch.device("meta"):  # the architecture and its data config, without computing any weights
        backbone, data_config = build_backbone(resolve_backbone(plan.backbone), pretrained=False)
    dm = build_datamodule(benchmark, data_config=data_config, **plan.options)
    train_transform, eval_transform = dm.transform_pipelines()
    strategies, lp = {}, {}
    for strategy in dict.fromkeys(job.strategy for job in jobs):
        runs = [job for job in jobs if job.strategy == strategy]
        hparams = get_strategy(strategy).hparams(runs[0].hparams)
        phases_per_run = [get_strategy(strategy).phases(job.hparams) for job in runs]
        phases = phases_per_run[0]
        # Per phase, the learning rates the suite's grid gives it (FT's lr, an SGD probe's hp_lr).
        swept = [sorted({run_phases[i].lr for run_phases in phases_per_run}) for i in range(len(phases))]
        strategies[strategy] = {"batch_size": hparams["batch_size"],
                                "phases": [_phase_card(p, lrs) for p, lrs in zip(phases, swept)]}
        probe = next((p for p in phases if p.probe_Cs), None)  # probe_Cs: the logistic probe's own field
        if probe is not None and not lp:
            lp = {"kind": "L2 logistic regression", **phase_kind(probe.trains).settings(probe, dm.mode)["probe"],
                  "C_grid": str(probe.probe_Cs)}
        elif strategy == "lp" and phase_kind(phases[0].trains).by_gradient:
            lp = {"kind": "head-only SGD probe", **_phase_card(phases[0], swept[0])}
    selection_set = ID_TEST if dm.mode == "paper" else ID_VAL
    lp["selection"] = selection_set
    finetuning = [s for s in strategies.values() if s["phases"][-1]["trains"] == "all"]
    last = finetuning[0]["phases"][-1] if finetuning else {}
    return {
        "benchmark": benchmark,
        "mode": dm.mode,
        "backbone": plan.backbone,
        "feature_dim": feature_dim(backbone),
        "train_transform": train_transform,
        "eval_transform": eval_transform,
        "lp": lp,
        "optimizer": {k: last[k] for k in ("optimizer", "momentum", "weight_decay")} if last else None,
        "schedule": last.get("schedule"),
        "epochs": {name: s["phases"][-1].get("epochs") for name, s in strategies.items()},
        "batch_size": {name: s["batch_size"] for name, s in strategies.items()},
        "lr_grids": {name: s["phases"][-1].get("lr") for name, s in strategies.items()},
        "batchnorm": {name: {p["phase"]: p.get("batchnorm", "-") for p in s["phases"]} for name, s in strategies.items()},
        "selection": {"set": selection_set, "epoch": f"best accuracy on {selection_set}",
                      "hyperparameters": f"best mean accuracy on {selection_set} over seeds"},
        "seeds": list(suite.seeds),
        "interval": INTERVAL_LABELS["normal"],
        "strategies": strategies,
        "eval_sets": _eval_sets(dm),
        "checkpoint": checkpoint_provenance(plan.backbone),
        "sources": protocol_sources(benchmark),
    }


def _eval_sets(dm) -> dict:
    """Each evaluation set's split, which version of a versioned set, and the set the paper's one figure for a
    benchmark with several OOD sets is compared with (vs_paper)."""
    sets = {spec.name: spec.split for spec in dm.sets if spec.split != "train"}
    if "cifar10.1" in sets:
        sets["cifar10.1"] = f"ood, version {dm.cifar101_version}"
    paper_figure = {f"paper's {paper}": ours for paper, ours in PAPER_OOD_SET_NAMES.items()
                    if paper.startswith(dm.name)}
    return {**sets, **paper_figure}


def _steps(pipeline: list[dict]) -> str:
    def step(op: dict) -> str:
        arguments = ", ".join(f"{k}={v}" for k, v in op.items() if k != "op")
        return f"{op['op']}({arguments})" if arguments else op["op"]
    return " -> ".join(step(op) for op in pipeline)


def format_protocol(card: dict) -> str:
    lp = ", ".join(f"{k} {v}" for k, v in card["lp"].items() if k != "kind")
    lines = [f"{card['benchmark']} (mode {card['mode']}): {card['backbone']}, {card['feature_dim']}-d features",
             f"  train transform: {_steps(card['train_transform'])}",
             f"  eval transform:  {_steps(card['eval_transform'])}",
             f"  LP: {card['lp']['kind']}: {lp}"]
    for name, strategy in card["strategies"].items():
        phases = "; ".join(", ".join(f"{k} {v}" for k, v in phase.items()) for phase in strategy["phases"])
        lines.append(f"  {name} (batch {strategy['batch_size']}): {phases}")
    lines.append(f"  selection: epoch = {card['selection']['epoch']}; hyperparameters = "
                 f"{card['selection']['hyperparameters']}; seeds {card['seeds']}; interval {card['interval']}")
    lines.append(f"  eval sets: {', '.join(f'{k} ({v})' for k, v in card['eval_sets'].items())}")
    lines.append(f"  checkpoint: {', '.join(f'{k} {v}' for k, v in card['checkpoint'].items())}")
    sources = dict(card["sources"])
    lines.append(f"  sources, checked against {sources.pop('checked_against')}:")
    for item, cited in sources.items():
        if isinstance(cited, dict):
            cited = [f"{k}: {v}" for k, v in cited.items()]
        lines.append(f"    {item}: {'; '.join(cited) if isinstance(cited, list) else cited}")
    return "\n".join(lines)


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", nargs="?", help=f"one benchmark of the {SUITE} suite (default: all), or ren2023: Ren et al.'s card")
    parser.add_argument("--json", action="store_true", help="one JSON object per benchmark, one per line")


def main_protocol(args: argparse.Namespace) -> int:
    if args.benchmark == "ren2023":
        from lpft_bench.analysis.protocol_ren2023 import format_ren2023_card, ren2023_card

        card = ren2023_card()
        print(json.dumps(card, sort_keys=True) if args.json else format_ren2023_card(card))
        return 0
    benchmarks = [args.benchmark] if args.benchmark else list(get_suite(SUITE).benchmarks)
    cards = [benchmark_protocol(name) for name in benchmarks]
    if args.json:
        print("\n".join(json.dumps(card, sort_keys=True) for card in cards))
    else:
        print("\n\n".join(format_protocol(card) for card in cards))
    return 0
