"""The `lpft-bench` command line: what run, status, prune, collect, list, data check/fake and theory do (the parser,
and which function runs each command, are in `cli_parser`)."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from lpft_bench.cli_parser import build_parser, handler


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
                       benchmark_options=options, unpretrained_ok=args.dry_run)
    return suite, jobs


def _fake_data_root(out: Path, benchmarks: set[str]) -> Path:
    """Tiny fakes of every benchmark's canonical layout, written once into the store."""
    from lpft_bench.datamodules import write_fake
    from lpft_bench.engine.store import Store

    root = Store(out).fake_data_dir
    from lpft_bench.datamodules import benchmark_class

    for benchmark in sorted(b for b in benchmarks if not benchmark_class(b).ships_data):
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


def _id_or_waiting(job) -> str | None:
    """The job's id, or None where its backbone is one `lpft-bench pretrain` has not made on this machine yet."""
    from lpft_bench.errors import NotPretrainedYet

    try:
        return job.id
    except NotPretrainedYet:
        return None


def _dry_run(args: argparse.Namespace, suite, jobs: list) -> int:
    """The jobs, the disk plan, and last the count (per paper and table under --all)."""
    from lpft_bench.preflight import plan_lines

    ids = {id(job): _id_or_waiting(job) for job in jobs}
    for job in jobs:
        print(f"{ids[id(job)] or '(not pretrained)':<16}  {job.label('benchmark'):<10} {job.label('backbone'):<18} "
              f"{job.label('strategy'):<9} seed={job.seed} {job.hparams}")
    ready = [job for job in jobs if ids[id(job)] is not None]
    print("\n".join(plan_lines(ready, Path(args.out or Path("results") / suite.name), args.keep_weights)))
    waiting = sorted({job.backbone for job in jobs if ids[id(job)] is None})
    if waiting:
        print(f"{len(jobs) - len(ready)} jobs start from a backbone not pretrained on this machine yet "
              f"({', '.join(waiting)}): their ids include its weights' digest; make it first with `lpft-bench "
              "pretrain cifar10 --arch ...` (see `lpft-bench pretrain --help`); the disk plan above leaves them out")
    if args.all:
        _print_paper_counts(jobs)
    print(f"{len(jobs)} jobs in suite {suite.name}")
    return 0


def _print_paper_counts(jobs: list) -> None:
    """--all --dry-run: how many jobs each paper and each of its tables takes (a job may feed several tables)."""
    from collections import Counter

    from lpft_bench.suites import paper_tables_of

    papers, tables = Counter(), Counter()
    for job in jobs:
        paper, feeds = paper_tables_of(job.label("benchmark"), job.label("strategy"), job.hparams)
        papers[paper] += 1
        tables.update((paper, table) for table in feeds)
    for paper, count in papers.items():
        print(f"{paper}: {count} jobs; " + "; ".join(f"{table}: {n}" for (p, table), n in sorted(tables.items())
                                                      if p == paper))
    print("(a job may feed several tables: Ren et al.'s τ sweep is Table 1's HP0, HP200 and HP* and Figures 3-4)")


def _run_matrix(args: argparse.Namespace) -> int:
    from lpft_bench.loggers import check_logger
    from lpft_bench.engine import RunContext
    from lpft_bench.engine.retention import weights_written
    from lpft_bench.errors import UsageError
    from lpft_bench.interrupts import Interrupted, stop_on_signals
    from lpft_bench.paths import display_path
    from lpft_bench.preflight import check_free_space, job_plans, unreadable_images
    from lpft_bench.runner import run_matrix
    from lpft_bench.slurm import parse_options
    from lpft_bench.analysis.tables import collect, written_tables

    for name in ("devices", "nodes", "slots"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1, got {getattr(args, name)}")
    _check_launcher_flags(args)

    suite, jobs = _suite_jobs(args)
    if args.dry_run:
        return _dry_run(args, suite, jobs)
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
        check_free_space(jobs, out, args.keep_weights)
    data_root = _data_root(args)
    if suite.fake_data and data_root is None:
        data_root = str(_fake_data_root(out, {job.benchmark for job in jobs}))
    missing = _missing_data(data_root, {job.benchmark for job in jobs})
    if missing:
        print(missing, file=sys.stderr)
        return 2
    ctx = RunContext(out=out, data_root=data_root, accelerator=args.accelerator, devices=args.devices, nodes=args.nodes,
                     num_workers=args.num_workers, precision=args.precision, logger=args.logger,
                     compile=args.compile, eval_every_epoch=args.eval_every_epoch,
                     checkpoint_every_minutes=args.checkpoint_every_minutes,
                     weights_written=weights_written(jobs, args.keep_weights))
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
    _keep_weights(jobs, ctx, args.keep_weights)
    print(collect(out, matrix=[job.id for job in jobs]))
    print(f"\n{result.done} run, {result.skipped} already done, {result.failed} failed, {result.busy} held by another "
          f"runner; tables in {display_path(out)}/: {', '.join(written_tables(out))}")
    if result.failed:
        _print_failures(jobs, ctx, result.failed)
    return 1 if result.failed else 0


def _keep_weights(jobs, ctx, policy: str) -> None:
    """Drop the phase weights the policy does not keep, now that the matrix has run (one line when it did)."""
    from lpft_bench.engine.retention import apply_policy
    from lpft_bench.paths import display_path

    outcome = apply_policy(ctx.store, jobs, policy)
    if outcome is None:
        print(f"lpft-bench: another runner holds a job of {display_path(ctx.out)}: no weights removed "
              f"(`lpft-bench prune --keep-weights {policy}` later)", file=sys.stderr)
    elif outcome[0]:
        print(f"--keep-weights {policy}: removed {len(outcome[0])} phase weights file(s), {outcome[1] / 1e6:.1f} MB "
              "(records kept)", file=sys.stderr)


def _print_failures(jobs, ctx, failed: int) -> None:
    """Each distinct cause once, with the number of jobs it hit: a shared mistake reads as one line."""
    from lpft_bench.runner import failure_causes

    from lpft_bench.paths import display_path

    print(f"{failed} job(s) failed; each keeps its error and traceback in {display_path(ctx.store.record_path('<id>'))}, "
          "rerun to retry them. Causes:", file=sys.stderr)
    for cause, count in failure_causes(jobs, ctx):
        print(f"  {count} job(s): {cause}", file=sys.stderr)


def _check_launcher_flags(args: argparse.Namespace) -> None:
    """A flag of one launcher given with another would be ignored without a word: refused instead."""
    from lpft_bench.errors import UsageError

    slurm_only = [flag for flag, given in (("--wait", args.wait), ("--slurm-option", args.slurm_option),
                                            ("--slurm-partition", args.slurm_partition),
                                            ("--slurm-cluster", args.slurm_cluster)) if given]
    if slurm_only and args.launcher != "slurm":
        raise UsageError(f"{slurm_only[0]} applies to --launcher slurm only, not --launcher {args.launcher}")
    if args.slots != 1 and args.launcher != "pool":
        raise UsageError(f"--slots applies to --launcher pool only, not --launcher {args.launcher}")


def _status(args: argparse.Namespace) -> int:
    from lpft_bench.engine.store import Store
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
    for problem in Store(out).unreadable_phase_files():
        print(f"  unreadable phase weights: {display_path(problem)} (`lpft-bench run` moves it aside and "
              "recomputes the phase)")
    if counts["outside"]:
        print(f"  {outside_line(counts['outside'])}")
    sizes = Store(out).sizes()
    print("  size: " + ", ".join(f"{kind} {_size(size)}" for kind, size in sizes.items())
          + f" ({_size(sum(sizes.values()))} in all)")
    return 0


def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def _collect(args: argparse.Namespace) -> int:
    from lpft_bench.analysis.tables import collect, export_tables
    from lpft_bench.errors import UsageError
    from lpft_bench.experiments import load_experiment
    from lpft_bench.paths import display_path

    out = Path(args.out or Path("results") / (load_experiment(args.config).name if args.config else "quickstart"))
    tables = Path(args.tables_out) if args.tables_out else out
    writable = _writable(tables)
    if args.tables_out and not writable:
        raise UsageError(f"--tables-out {display_path(tables)}: not a directory this user can write")
    print(collect(out, args.interval, tables_out=tables, write=writable))
    if not writable:
        print(f"lpft-bench: {display_path(out)} is read-only: tables printed, not written; give --tables-out DIR to "
              "write them there", file=sys.stderr)
    elif args.format != "csv":
        print(f"wrote {', '.join(display_path(p) for p in export_tables(tables, args.format))}")
    return 0


def _writable(directory: Path) -> bool:
    """Whether this user can create files in `directory` (or in the nearest folder above it that exists)."""
    existing = next(p for p in (directory, *directory.absolute().parents) if p.exists())
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def _list(args: argparse.Namespace) -> int:
    from lpft_bench.models import BACKBONES
    from lpft_bench.datamodules import BENCHMARKS
    from lpft_bench.strategies import STRATEGIES
    from lpft_bench.suites import SUITE_ALIASES, SUITES

    print("benchmarks:", ", ".join(BENCHMARKS))
    print("backbones:", ", ".join(BACKBONES), "(or timm:<model> with a checkpoint)")
    print("strategies:")
    for strategy in STRATEGIES.values():
        phases = " -> ".join(f"{p.name}[{p.trains}]" for p in strategy.phases())
        print(f"  {strategy.name:<10} {phases}\n             {strategy.description}")
    print("suites (every grid lives in a suite):")
    for suite in SUITES.values():
        aliases = [alias for alias, name in SUITE_ALIASES.items() if name == suite.name]
        shown = suite.name + "".join(f" (= {alias})" for alias in aliases)
        print(f"  {shown:<10} {len(suite.expand()):>5} jobs: {suite.description}")
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


def _prune(args: argparse.Namespace) -> int:
    from lpft_bench.prune import main_prune

    return main_prune(args, _suite_jobs)


def main(argv: list[str] | None = None) -> int:
    from lpft_bench.errors import UsageError  # DataError (absent or unreadable data) is one too

    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid UTF-8 (legal on Linux) never ends a run in UnicodeEncodeError; the paths
        # this CLI prints go through paths.display_path, which writes such bytes as \xNN.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else "run")
    try:
        args = parser.parse_args(argv or ["run"])
        if args.command is None:
            args = parser.parse_args(["run", *argv])
    except SystemExit as done:  # --help (0) or argparse's one-line usage error (2): a status, as every other
        return done.code
    args.argv = argv
    try:
        return handler(args.func)(args)
    except UsageError as error:  # what the user got wrong: one line, no traceback; bugs keep theirs
        from lpft_bench.paths import printable

        print(f"lpft-bench: {printable(str(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
