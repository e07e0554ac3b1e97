"""The `lpft-bench` parser: every command, its arguments and the function that runs it, named "module:function"
and imported only when that command runs. Light to import (`lpft-bench --help` loads neither torch nor
Lightning): the choices of --launcher and --logger come from their registries, which are light too. A command
whose arguments live beside its code (report, protocol, theory, pretrain, bench, data download, weights) gets
them only when it is the command being parsed."""
from __future__ import annotations

import argparse
from importlib import import_module
from typing import Callable

from lpft_bench.loggers import LOGGERS
from lpft_bench.launchers import LAUNCHERS

DESCRIPTION = ("Adapting a pretrained model under distribution shift: LP, FT, LP-FT, head probing and the methods "
               "after them, on the papers' shift benchmarks or your own data.")


def handler(func: str | Callable) -> Callable:
    """The function a command runs: given, or named "module:function" and imported now."""
    if callable(func):
        return func
    module, name = func.split(":")
    return getattr(import_module(module), name)


def _minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not minutes >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, e.g. 30 (0: every epoch), not {text!r}")
    return minutes


def _arguments_beside_the_code(parser: argparse.ArgumentParser, adder: str, parsed: bool) -> None:
    if parsed:
        handler(adder)(parser)


def _add_matrix_arguments(parser: argparse.ArgumentParser, default_suite: str | None) -> None:
    parser.add_argument("--suite", default=default_suite)
    parser.add_argument("--all", action="store_true", help="every paper's suite: kumar2022 (= paper) and ren2023, in one store (results/papers)")
    parser.add_argument("--out", help="results store (default: results/<suite>)")
    parser.add_argument("--benchmarks", nargs="+")
    parser.add_argument("--strategies", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--epochs", type=int, help="override every gradient phase's epochs (smoke runs)")
    parser.add_argument("--subset", type=int, help="a deterministic, class-stratified subset of at most N images per split")
    parser.add_argument("--mode", choices=["paper", "clean"],
                        help="paper: select and report ID on the paper's ID set; clean: ID validation carved from train")
    parser.add_argument("--config", help="an experiment file (YAML or TOML): its own benchmarks, backbones, grids, seeds")
    parser.add_argument("--set", action="append", metavar="HPARAM=VALUE",
                        help="a hyperparameter for every strategy that takes it (a list sweeps); repeatable")
    parser.add_argument("--backbone", help="every benchmark's backbone: a registered name or timm:<model>")
    parser.add_argument("--checkpoint", help="the backbone's weights file (.safetensors or a torch state dict)")
    parser.add_argument("--backbone-option", action="append", metavar="KEY=VALUE",
                        help="pretrained=true (timm's hub weights), random=true, data_config={input_size: [3, 96, 96]}")
    parser.add_argument("--benchmark-option", action="append", metavar="KEY=VALUE",
                        help="a benchmark option for every benchmark, e.g. subset=200 or cache_mb=0")



# engine.retention.POLICIES and DEFAULT_POLICY, spelled here so that parsing imports no engine (a test pins them).
KEEP_WEIGHTS = ("all", "selected", "none")
# A resume checkpoint (model and optimizer state) every epoch writes many times the store for short epochs; every
# ten minutes bounds what a kill or preemption loses and keeps a quickstart's writes near its store's size.
CHECKPOINT_EVERY_MINUTES = 10.0
KEEP_WEIGHTS_HELP = ("which phase weights the store keeps (records always; and whatever a pending job still "
                     "reads): all; selected (each job's selected weights and every result a later phase reads); "
                     "none (default: only the head-probing jobs' final weights, which the report reads)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; `command`: the one being parsed, the only one whose arguments beside its code load."""
    parser = argparse.ArgumentParser(prog="lpft-bench", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="run a suite's matrix into a results store, then write its tables")
    _add_matrix_arguments(run, None)
    run.add_argument("--data-root", help="root of the datasets (default: $LPFT_BENCH_DATA)")
    run.add_argument("--accelerator", default="auto")
    run.add_argument("--devices", type=int, default=1, help="devices per job (>1: Lightning DDP inside the job)")
    run.add_argument("--precision", help="Lightning precision, e.g. bf16-mixed on GPUs")
    run.add_argument("--num-workers", type=int, default=0)
    run.add_argument("--launcher", default="inline", choices=LAUNCHERS.names(),
                     help="; ".join(f"{launcher.name}: {launcher.description}" for launcher in LAUNCHERS.values()))
    run.add_argument("--slots", type=int, default=1, help="pool: jobs at once (each gets --devices GPUs)")
    run.add_argument("--slurm-partition")
    run.add_argument("--slurm-cluster", help="submitit cluster (default: auto; 'local' runs without SLURM)")
    run.add_argument("--slurm-option", action="append", metavar="KEY=VALUE",
                     help="a submitit/SLURM parameter, repeatable: time=MIN, cpus=N, mem=GB, account=A, qos=Q, "
                          "constraint=C, array_parallelism=N, or any submitit name (slurm_exclude=...)")
    run.add_argument("--wait", action="store_true", help="slurm: block until every job has ended, then write the tables")
    run.add_argument("--nodes", type=int, default=1, help="slurm: nodes per job (multi-node DDP)")
    run.add_argument("--logger", default="csv", choices=LOGGERS.names(),
                     help="besides the CSV log in the store, Lightning's logger of that name (runs named by job id "
                          "and phase, tagged with the job's meaning)")
    run.add_argument("--compile", action="store_true", help="torch.compile the model in every gradient phase")
    run.add_argument("--eval-every-epoch", action="store_true",
                     help="record every evaluation set's accuracy after every epoch (per-epoch curves), not only the "
                          "selection set's; the results are the same")
    run.add_argument("--checkpoint-every-minutes", type=_minutes, metavar="N", default=CHECKPOINT_EVERY_MINUTES,
                     help="write a gradient phase's resume checkpoint at the first epoch end N minutes after the last "
                          f"(default {CHECKPOINT_EVERY_MINUTES:g}; 0: every epoch); a kill or preemption loses at most "
                          "the epochs since")
    run.add_argument("--dry-run", action="store_true", help="print the expanded jobs and their count")
    run.add_argument("--no-preflight", action="store_true",
                     help="skip decoding every image of the folder benchmarks before the first job")
    run.add_argument("--force", action="store_true", help="run even when the store's free space looks too small")
    run.add_argument("--keep-weights", choices=KEEP_WEIGHTS, default="none", help=KEEP_WEIGHTS_HELP)
    run.set_defaults(func="lpft_bench.cli:_run")

    status = commands.add_parser("status", help="done/running/failed/pending jobs of a store, running nothing")
    _add_matrix_arguments(status, None)
    status.set_defaults(func="lpft_bench.cli:_status")

    prune = commands.add_parser("prune", help="remove the job records outside a matrix (default: the store's last) "
                                              "and the phase weights --keep-weights does not keep")
    _add_matrix_arguments(prune, None)
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed")
    prune.add_argument("--keep-weights", choices=KEEP_WEIGHTS, default="none", help=KEEP_WEIGHTS_HELP)
    prune.set_defaults(func="lpft_bench.cli:_prune")

    collect = commands.add_parser("collect", help="(re)write the tables of a results store")
    collect.add_argument("--out", help="results store (default: results/<config name>, else results/quickstart)")
    collect.add_argument("--config", help="the experiment file whose store to collect")
    collect.add_argument("--tables-out", help="write the tables here instead of into the store (a read-only store: "
                         "without it they are only printed)")
    collect.add_argument("--format", choices=["csv", "md", "latex"], default="csv",
                         help="also write id/ood tables as Markdown (id.md, ood.md) or LaTeX (id.tex, ood.tex)")
    collect.add_argument("--interval", choices=["normal", "student-t"], default="normal",
                         help="the tables' 90%% interval: 1.645 s/sqrt(n) as the authors' summary (default), or "
                              "Student-t's t(0.95, n-1) s/sqrt(n), 1.8x wider at n = 3")
    collect.set_defaults(func="lpft_bench.cli:_collect")

    report = commands.add_parser("report", help="tables beside the paper's, and figures, from a results store")
    _arguments_beside_the_code(report, "lpft_bench.analysis.report:add_report_arguments", command == "report")
    report.set_defaults(func="lpft_bench.analysis.report:main_report")

    listing = commands.add_parser("list", help="benchmarks, backbones, strategies and suites")
    listing.set_defaults(func="lpft_bench.cli:_list")

    data = commands.add_parser("data", help="check the datasets on disk, download them, or write tiny fakes")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser("check", help="found/missing and image counts of every set of every benchmark")
    check.add_argument("--data-root", help="root of the datasets (default: $LPFT_BENCH_DATA)")
    check.add_argument("--config", help="an experiment file: open and decode every image of its folder benchmarks")
    check.add_argument("--benchmarks", nargs="+", help="only these benchmarks (labels of the experiment file)")
    check.set_defaults(func="lpft_bench.cli:_data_check")
    fake = data_commands.add_parser("fake", help="write a tiny dataset in a benchmark's canonical layout")
    fake.add_argument("benchmark")
    fake.add_argument("directory")
    fake.add_argument("--images-per-class", type=int, default=2)
    fake.set_defaults(func="lpft_bench.cli:_data_fake")
    _arguments_beside_the_code(data_commands, "lpft_bench.download_cli:add_data_download", command == "data")

    weights = commands.add_parser("weights", help="fetch the paper's backbone checkpoints")
    _arguments_beside_the_code(weights, "lpft_bench.download_cli:add_weights_commands", command == "weights")

    for name, text, module, func in (
            ("protocol", "the paper suite's exact protocol per benchmark, as a run builds it", "analysis.protocol",
             "lpft_bench.analysis.protocol:main_protocol"),
            ("theory", "Kumar et al.'s two-layer linear network: LP vs FT OOD error as ε → 0", "analysis.theory",
             "lpft_bench.cli:_theory"),
            ("pretrain", "rerun the shipped digits backbones' recipe (digests compared), or make Sup-C10", "pretrain",
             "lpft_bench.pretrain:main_pretrain"),
            ("bench", "throughput and reuse measured against a plain loop and the paper's LP", "analysis.bench",
             "lpft_bench.analysis.bench:main_bench"),
            ("swap", "a head-probing sweep's backbones and heads exchanged and evaluated (Ren et al.'s Figure 3)",
             "analysis.swap", "lpft_bench.analysis.swap:main_swap")):
        sub = commands.add_parser(name, help=text)
        _arguments_beside_the_code(sub, f"lpft_bench.{module}:add_{name}_arguments", command == name)
        sub.set_defaults(func=func)
    return parser
