"""The `lpft-bench` command line: run, status, collect, report, list, data, theory, bench."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path


def _data_root(args: argparse.Namespace) -> str | None:
    return args.data_root or os.environ.get("LPFT_BENCH_DATA")


def _check_matrix_arguments(args: argparse.Namespace) -> None:
    """Before anything is expanded or trained: numbers that would only fail (or run forever) later."""
    from lpft_bench.errors import UsageError

    for name in ("epochs", "subset"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be at least 1, got {value}")
    bad_seeds = [seed for seed in args.seeds or () if not 0 <= seed < 2**32]
    if bad_seeds:
        raise UsageError(f"--seeds must be between 0 and 2**32 - 1, got {bad_seeds[0]}")


def _check_out(out: Path) -> None:
    """The store must be (or become) a directory this user can write."""
    from lpft_bench.paths import display_path
    from lpft_bench.errors import UsageError

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {display_path(out)} is a file, not a directory")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {display_path(out)}: {display_path(existing)} is not a directory this user can write")


def _suite_jobs(args: argparse.Namespace):
    _check_matrix_arguments(args)
    from lpft_bench.matrix import choose_suite, matrix_jobs, parse_assignments

    suite = choose_suite(args.suite, args.all, args.config, args.benchmarks)
    sets = parse_assignments(args.set, "--set")
    if args.epochs is not None:
        sets["epochs"] = args.epochs
    options = parse_assignments(args.benchmark_option, "--benchmark-option")
    options.update({k: v for k, v in (("subset", args.subset), ("mode", args.mode)) if v is not None})
    jobs = matrix_jobs(suite, benchmarks=args.benchmarks, strategies=args.strategies, seeds=args.seeds, sets=sets,
                       backbone=args.backbone, checkpoint=args.checkpoint,
                       backbone_options=parse_assignments(args.backbone_option, "--backbone-option"),
                       benchmark_options=options)
    return suite, jobs


def _fake_data_root(out: Path, benchmarks: set[str]) -> Path:
    """Tiny fakes of every benchmark's canonical layout, written once into the store."""
    from lpft_bench.datamodules import write_fake

    root = out / "fake-data"
    for benchmark in sorted(benchmarks - {"digits"}):
        marker = root / f".{benchmark}.written"
        if not marker.exists():
            write_fake(benchmark, root)
            marker.touch()
    return root


def _missing_data(data_root: str | None, benchmarks: set[str]) -> str | None:
    """Before anything trains: the check's report of every set these benchmarks need that is not on disk."""
    from lpft_bench.datamodules import check_benchmarks, format_check

    rows = [row for row in check_benchmarks(data_root) if row.benchmark in benchmarks]
    if all(row.found for row in rows):
        return None
    return "lpft-bench: data missing, nothing was run.\n" + format_check(rows)


def _run(args: argparse.Namespace) -> int:
    from lpft_bench.datamodules.walk import one_listing_per_folder

    with one_listing_per_folder():  # each folder listed once: for the jobs' ids, the preflight and inline jobs
        return _run_matrix(args)


def _run_matrix(args: argparse.Namespace) -> int:
    from lpft_bench.engine.loggers import check_logger
    from lpft_bench.engine import RunContext
    from lpft_bench.errors import UsageError
    from lpft_bench.interrupts import Interrupted, stop_on_signals
    from lpft_bench.paths import display_path
    from lpft_bench.preflight import check_free_space, job_plans, unreadable_images
    from lpft_bench.runner import run_matrix
    from lpft_bench.slurm import parse_options
    from lpft_bench.analysis.tables import collect

    for name in ("devices", "nodes", "slots"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1, got {getattr(args, name)}")

    suite, jobs = _suite_jobs(args)
    if args.dry_run:
        for job in jobs:
            print(f"{job.id}  {job.label('benchmark'):<10} {job.label('backbone'):<18} {job.label('strategy'):<9} "
                  f"seed={job.seed} {job.hparams}")
        print(f"{len(jobs)} jobs in suite {suite.name}")
        return 0
    out = Path(args.out or Path("results") / suite.name)
    _check_out(out)
    check_logger(args.logger)
    if not args.no_preflight:
        report, blocking = unreadable_images(job_plans(jobs))
        if report:
            print(("lpft-bench: unreadable images, nothing was run.\n" if blocking else "") + report, file=sys.stderr)
        if blocking:
            return 2
    if not args.force:
        check_free_space(jobs, out)
    data_root = _data_root(args)
    if suite.fake_data and data_root is None:
        data_root = str(_fake_data_root(out, {job.benchmark for job in jobs}))
    missing = _missing_data(data_root, {job.benchmark for job in jobs})
    if missing:
        print(missing, file=sys.stderr)
        return 2
    ctx = RunContext(out=out, data_root=data_root, accelerator=args.accelerator, devices=args.devices, nodes=args.nodes,
                     num_workers=args.num_workers, precision=args.precision, logger=args.logger,
                     compile=args.compile)
    slurm = {"cluster": args.slurm_cluster, **parse_options(args.slurm_option or [])}
    if args.slurm_partition:
        slurm["slurm_partition"] = args.slurm_partition
    print(f"suite {suite.name}: {len(jobs)} jobs -> {display_path(out)}", file=sys.stderr)
    try:
        with stop_on_signals():
            result = run_matrix(jobs, ctx, launcher=args.launcher, slots=args.slots, slurm=slurm, wait=args.wait)
    except Interrupted as stop:
        print(f"lpft-bench: stopped by {stop}; finished jobs and the running phase's last epoch checkpoint are kept. "
              f"Resume with: lpft-bench {shlex.join(args.argv)}", file=sys.stderr)
        return stop.exit_code
    if args.launcher == "slurm" and not args.wait:
        print(f"submitted {len(result.submitted)} jobs ({result.skipped} already done, {result.busy} queued or running); "
              f"follow with `lpft-bench status --out {display_path(out)}`, then `lpft-bench collect --out {display_path(out)}`")
        return 0
    print(collect(out, matrix=[job.id for job in jobs]))
    print(f"\n{result.done} run, {result.skipped} already done, {result.failed} failed, {result.busy} held by another "
          f"runner; tables in {display_path(out)}/: runs.csv, id.csv, ood.csv, vs_paper.csv, summary.md")
    if result.failed:
        print(f"failed jobs keep their error in {display_path(out)}/jobs/<id>/record.json; rerun to retry them", file=sys.stderr)
    return 1 if result.failed else 0


def _status(args: argparse.Namespace) -> int:
    from lpft_bench.paths import display_path
    from lpft_bench.prune import outside_line
    from lpft_bench.runner import STATES, store_status

    suite, jobs = _suite_jobs(args) if args.suite or args.all or args.config else (None, None)
    out = Path(args.out or Path("results") / (suite.name if suite else "quickstart"))
    counts = store_status(out, jobs)
    shown = [k for k in STATES if counts[k] or k in ("done", "running", "failed", "pending")]
    print(f"{display_path(out)}: " + ", ".join(f"{counts[k]} {k}" for k in shown) + f" of {counts['total']}")
    for problem in counts["problems"]:
        print(f"  corrupt: {display_path(problem)} (`lpft-bench run` moves it aside and reruns the job)")
    if counts["outside"]:
        print(f"  {outside_line(counts['outside'])}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from lpft_bench.analysis.tables import collect, export_tables
    from lpft_bench.paths import display_path
    from lpft_bench.experiments import load_experiment

    out = Path(args.out or Path("results") / (load_experiment(args.config).name if args.config else "quickstart"))
    print(collect(out, args.interval))
    if args.format != "csv":
        print(f"wrote {', '.join(display_path(p) for p in export_tables(out, args.format))}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from lpft_bench.models import BACKBONES
    from lpft_bench.datamodules import BENCHMARKS
    from lpft_bench.strategies import STRATEGIES
    from lpft_bench.suites import SUITES

    print("benchmarks:", ", ".join(BENCHMARKS))
    print("backbones:", ", ".join(BACKBONES), "(or timm:<model> with a checkpoint)")
    print("strategies:")
    for strategy in STRATEGIES.values():
        phases = " -> ".join(f"{p.name}[{p.trains}]" for p in strategy.phases())
        print(f"  {strategy.name:<10} {phases}\n             {strategy.description}")
    print("suites (every grid lives in a suite):")
    for suite in SUITES.values():
        print(f"  {suite.name:<10} {len(suite.expand()):>5} jobs: {suite.description}")
        for label, grid in suite.strategies.items():
            swept = {k: v for k, v in grid.items() if isinstance(v, list)}
            if swept:
                print(f"             {label}: " + ", ".join(f"{k}={v}" for k, v in swept.items()))
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from lpft_bench.datamodules import check_benchmarks, format_check
    from lpft_bench.paths import printable
    from lpft_bench.preflight import check_experiment_images

    if args.config:
        return check_experiment_images(args.config, args.benchmarks)
    rows = [row for row in check_benchmarks(_data_root(args)) if not args.benchmarks or row.benchmark in args.benchmarks]
    print(printable(format_check(rows)))
    return 0


def _data_fake(args: argparse.Namespace) -> int:
    from lpft_bench.datamodules import write_fake

    root = write_fake(args.benchmark, args.directory, images_per_class=args.images_per_class)
    print(f"wrote a fake {args.benchmark} into {root}; run with --data-root {root}")
    return 0


def _theory(args: argparse.Namespace) -> int:
    from lpft_bench.analysis.theory import main_theory

    main_theory(args)  # prints its summary and writes theory.csv / theory.png
    return 0


def _add_matrix_arguments(parser: argparse.ArgumentParser, default_suite: str | None) -> None:
    parser.add_argument("--suite", default=default_suite)
    parser.add_argument("--all", action="store_true", help="the paper suite: Kumar et al.'s full protocol")
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


def build_parser() -> argparse.ArgumentParser:
    from lpft_bench.analysis.bench import add_bench_arguments, main_bench
    from lpft_bench.analysis.protocol import add_protocol_arguments, main_protocol
    from lpft_bench.analysis.report import add_report_arguments, main_report
    from lpft_bench.analysis.theory import add_theory_arguments
    from lpft_bench.pretrain import add_pretrain_arguments, main_pretrain
    from lpft_bench.download_cli import add_download_commands
    from lpft_bench.prune import main_prune

    parser = argparse.ArgumentParser(prog="lpft-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="run a suite's matrix into a results store, then write its tables")
    _add_matrix_arguments(run, None)
    run.add_argument("--data-root", help="root of the datasets (default: $LPFT_BENCH_DATA)")
    run.add_argument("--accelerator", default="auto")
    run.add_argument("--devices", type=int, default=1, help="devices per job (>1: Lightning DDP inside the job)")
    run.add_argument("--precision", help="Lightning precision, e.g. bf16-mixed on GPUs")
    run.add_argument("--num-workers", type=int, default=0)
    run.add_argument("--launcher", default="inline", choices=["inline", "local", "pool", "slurm"],
                     help="inline: jobs in this process; local: a subprocess per job; pool: --slots at once; "
                          "slurm: submitit")
    run.add_argument("--slots", type=int, default=1, help="pool: jobs at once (each gets --devices GPUs)")
    run.add_argument("--slurm-partition")
    run.add_argument("--slurm-cluster", help="submitit cluster (default: auto; 'local' runs without SLURM)")
    run.add_argument("--slurm-option", action="append", metavar="KEY=VALUE",
                     help="a submitit/SLURM parameter, repeatable: time=MIN, cpus=N, mem=GB, account=A, qos=Q, "
                          "constraint=C, array_parallelism=N, or any submitit name (slurm_exclude=...)")
    run.add_argument("--wait", action="store_true", help="slurm: block until every job has ended, then write the tables")
    run.add_argument("--nodes", type=int, default=1, help="slurm: nodes per job (multi-node DDP)")
    run.add_argument("--logger", default="csv", help="besides the CSV log in the store: tensorboard, wandb or mlflow "
                     "(Lightning's loggers; runs named by job id and phase, tagged with the job's meaning)")
    run.add_argument("--compile", action="store_true", help="torch.compile the model in every gradient phase")
    run.add_argument("--dry-run", action="store_true", help="print the expanded jobs and their count")
    run.add_argument("--no-preflight", action="store_true",
                     help="skip decoding every image of the folder benchmarks before the first job")
    run.add_argument("--force", action="store_true", help="run even when the store's free space looks too small")
    run.set_defaults(func=_run)

    status = commands.add_parser("status", help="done/running/failed/pending jobs of a store, running nothing")
    _add_matrix_arguments(status, None)
    status.set_defaults(func=_status)

    prune = commands.add_parser("prune", help="remove the job records outside a matrix (default: the store's last)")
    _add_matrix_arguments(prune, None)
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed")
    prune.set_defaults(func=lambda args: main_prune(args, _suite_jobs))

    collect = commands.add_parser("collect", help="(re)write the tables of a results store")
    collect.add_argument("--out", help="results store (default: results/<config name>, else results/quickstart)")
    collect.add_argument("--config", help="the experiment file whose store to collect")
    collect.add_argument("--format", choices=["csv", "md", "latex"], default="csv",
                         help="also write id/ood tables as Markdown (id.md, ood.md) or LaTeX (id.tex, ood.tex)")
    collect.add_argument("--interval", choices=["normal", "student-t"], default="normal",
                         help="the tables' 90%% interval: 1.645 s/sqrt(n) as the authors' summary (default), or "
                              "Student-t's t(0.95, n-1) s/sqrt(n), 1.8x wider at n = 3")
    collect.set_defaults(func=_collect)

    report = commands.add_parser("report", help="tables beside the paper's, and figures, from a results store")
    add_report_arguments(report)
    report.set_defaults(func=main_report)

    listing = commands.add_parser("list", help="benchmarks, backbones, strategies and suites")
    listing.set_defaults(func=_list)

    data = commands.add_parser("data", help="check the datasets on disk, or write tiny fakes of their layouts")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser("check", help="found/missing and image counts of every set of every benchmark")
    check.add_argument("--data-root", help="root of the datasets (default: $LPFT_BENCH_DATA)")
    check.add_argument("--config", help="an experiment file: open and decode every image of its folder benchmarks")
    check.add_argument("--benchmarks", nargs="+", help="only these benchmarks (labels of the experiment file)")
    check.set_defaults(func=_data_check)
    fake = data_commands.add_parser("fake", help="write a tiny dataset in a benchmark's canonical layout")
    fake.add_argument("benchmark")
    fake.add_argument("directory")
    fake.add_argument("--images-per-class", type=int, default=2)
    fake.set_defaults(func=_data_fake)
    add_download_commands(data_commands, commands)

    protocol = commands.add_parser("protocol", help="the paper suite's exact protocol per benchmark, as a run builds it")
    add_protocol_arguments(protocol)
    protocol.set_defaults(func=main_protocol)

    theory = commands.add_parser("theory", help="Kumar et al.'s two-layer linear network: LP vs FT OOD error as ε → 0")
    add_theory_arguments(theory)
    theory.set_defaults(func=_theory)

    pretrain = commands.add_parser("pretrain", help="rerun the shipped digits backbones' recipe, compare digests")
    add_pretrain_arguments(pretrain)
    pretrain.set_defaults(func=main_pretrain)

    bench = commands.add_parser("bench", help="throughput and reuse measured against a plain loop and the paper's LP")
    add_bench_arguments(bench)
    bench.set_defaults(func=main_bench)

    return parser


def main(argv: list[str] | None = None) -> int:
    from lpft_bench.errors import UsageError  # DataError (absent or unreadable data) is one too

    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid UTF-8 (legal on Linux) never ends a run in UnicodeEncodeError; the paths
        # this CLI prints go through paths.display_path, which writes such bytes as \xNN.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv or ["run"])
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    args.argv = argv
    try:
        return args.func(args)
    except UsageError as error:  # what the user got wrong: one line, no traceback; bugs keep theirs
        from lpft_bench.paths import printable

        print(f"lpft-bench: {printable(str(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
