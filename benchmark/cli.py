"""The `lpft-bench` command line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from lpft_bench.jobs import RunContext
    from lpft_bench.runner import run_matrix
    from lpft_bench.suites import get_suite
    from lpft_bench.tables import collect

    suite = get_suite(args.suite)
    overrides = {"epochs": args.epochs} if args.epochs is not None else None
    jobs = suite.expand(benchmarks=args.benchmarks, strategies=args.strategies, seeds=args.seeds, overrides=overrides)
    if args.dry_run:
        for job in jobs:
            print(f"{job.id}  {job.benchmark:<10} {job.strategy:<8} seed={job.seed} {job.hparams}")
        print(f"{len(jobs)} jobs")
        return 0
    out = Path(args.out or Path("results") / suite.name)
    ctx = RunContext(out=out, data_root=args.data_root or os.environ.get("LPFT_BENCH_DATA"),
                     accelerator=args.accelerator, devices=args.devices, num_workers=args.num_workers,
                     tensorboard=args.tensorboard)
    print(f"suite {suite.name}: {len(jobs)} jobs -> {out}", file=sys.stderr)
    result = run_matrix(jobs, ctx, launcher=args.launcher)
    print(collect(out))
    print(f"\n{result.done} run, {result.skipped} already done, {result.failed} failed, {result.busy} held by another runner; "
          f"tables in {out}/runs.csv, id.csv, ood.csv")
    return 1 if result.failed else 0


def _collect(args: argparse.Namespace) -> int:
    from lpft_bench.tables import collect

    print(collect(Path(args.out)))
    return 0


def _list(args: argparse.Namespace) -> int:
    from lpft_bench.backbones import BACKBONES
    from lpft_bench.datamodules import BENCHMARKS
    from lpft_bench.strategies import STRATEGIES
    from lpft_bench.suites import SUITES

    print("benchmarks:", ", ".join(BENCHMARKS))
    print("backbones:", ", ".join(BACKBONES), "(or timm:<model> --checkpoint FILE)")
    print("strategies:")
    for strategy in STRATEGIES.values():
        phases = " -> ".join(f"{p.name}[{p.trains}]" for p in strategy.phases())
        grid = ", ".join(f"{k}={list(v)}" for k, v in strategy.grid.items()) or "-"
        print(f"  {strategy.name:<8} {phases:<40} grid: {grid}\n           {strategy.description}")
    print("suites:")
    for suite in SUITES.values():
        print(f"  {suite.name:<10} {len(suite.expand())} jobs: {suite.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpft-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="run a suite's matrix into a results store, then write its tables")
    run.add_argument("--suite", default="quickstart")
    run.add_argument("--out", help="results store (default: results/<suite>)")
    run.add_argument("--benchmarks", nargs="+")
    run.add_argument("--strategies", nargs="+")
    run.add_argument("--seeds", nargs="+", type=int)
    run.add_argument("--epochs", type=int, help="override every gradient phase's epochs (smoke runs)")
    run.add_argument("--data-root", help="root of the datasets (default: $LPFT_BENCH_DATA)")
    run.add_argument("--accelerator", default="auto")
    run.add_argument("--devices", type=int, default=1, help="devices per job (>1: Lightning DDP inside the job)")
    run.add_argument("--num-workers", type=int, default=0)
    run.add_argument("--launcher", default="inline", choices=["inline", "local"],
                     help="inline: jobs in this process (no per-job import cost); local: one subprocess per job")
    run.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs per phase")
    run.add_argument("--dry-run", action="store_true", help="print the expanded jobs and their count")
    run.set_defaults(func=_run)

    collect = commands.add_parser("collect", help="(re)write the tables of a results store")
    collect.add_argument("--out", default="results/quickstart")
    collect.set_defaults(func=_collect)

    listing = commands.add_parser("list", help="benchmarks, backbones, strategies and suites")
    listing.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["run", *(argv or [])])
    try:
        return args.func(args)
    except KeyError as error:
        print(f"lpft-bench: {error.args[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
