"""`lpft-bench data download` and `lpft-bench weights download`: their arguments and what they do."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from lpft_bench.datamodules.sources import BENCHMARK_SETS, DATASETS, MANUAL, WEIGHTS, describe, imagenet_steps
from lpft_bench.errors import UsageError

MIRROR_HELP = ("fetch every file as URL/<file name> instead of from its upstream address "
               "(an institutional mirror; default: $LPFT_BENCH_MIRROR)")


def resolve_sets(names: list[str]) -> tuple[list[str], bool]:
    """The sets these names stand for (a benchmark: every set it reads), in order, and whether any needs ImageNet."""
    known = sorted(set(DATASETS) | set(BENCHMARK_SETS) | MANUAL)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"unknown dataset {', '.join(unknown)}; known: {', '.join(known)}")
    sets: list[str] = []
    for name in names:
        for set_name in BENCHMARK_SETS.get(name, () if name in MANUAL else (name,)):
            if set_name not in sets:
                sets.append(set_name)
    return sets, any(name in MANUAL for name in names)


def data_download(args: argparse.Namespace) -> int:
    from lpft_bench.datamodules.download import install

    sets, manual = resolve_sets(args.benchmarks)
    data_root = args.data_root or os.environ.get("LPFT_BENCH_DATA")
    if data_root is None and not args.dry_run:
        raise UsageError("say where the data goes: --data-root DIR or $LPFT_BENCH_DATA")
    shown_root = data_root or "<data root>"
    for set_name in sets:
        for download in DATASETS[set_name]:
            if args.dry_run:
                print(f"{set_name:<15} {download.name} -> {shown_root}/{download.target}\n      {describe(download)}")
            else:
                print(f"{set_name}: {install(download, Path(data_root), args.mirror)}")
    if manual:
        print(imagenet_steps(shown_root))
    if not args.dry_run and sets:
        print(f"now: lpft-bench data check --data-root {data_root}")
    return 0


def weights_download(args: argparse.Namespace) -> int:
    from lpft_bench.weights_download import canonical_file, download_weights

    unknown = [name for name in args.names if name not in WEIGHTS]
    if unknown:
        raise UsageError(f"unknown backbone {', '.join(unknown)}; downloadable: {', '.join(WEIGHTS)}")
    for name in args.names:
        download = WEIGHTS[name].download
        if args.dry_run:
            print(f"{name:<17} {download.name} -> $LPFT_BENCH_CHECKPOINTS/{canonical_file(name)}"
                  f"\n      {describe(download)}")
        else:
            print(f"{name}: {download_weights(name, args.mirror)}")
    return 0


def add_data_download(data_commands) -> None:
    """`download` under `data`."""
    download = data_commands.add_parser("download", help="fetch, verify and unpack datasets into the canonical layout")
    download.add_argument("benchmarks", nargs="+", metavar="NAME",
                          help=f"a benchmark ({', '.join(sorted(BENCHMARK_SETS | dict.fromkeys(MANUAL)))}) "
                               f"or one set ({', '.join(DATASETS)})")
    download.add_argument("--data-root", help="root of the datasets (default: $LPFT_BENCH_DATA)")
    download.add_argument("--dry-run", action="store_true", help="print the addresses and checksums, fetch nothing")
    download.add_argument("--mirror", help=MIRROR_HELP)
    download.set_defaults(func=data_download)


def add_weights_commands(weights) -> None:
    """`download` under `weights`."""
    weights_commands = weights.add_subparsers(dest="weights_command", required=True)
    fetch = weights_commands.add_parser("download", help="into $LPFT_BENCH_CHECKPOINTS, under their canonical names")
    fetch.add_argument("names", nargs="+", metavar="NAME", help=", ".join(WEIGHTS))
    fetch.add_argument("--dry-run", action="store_true", help="print the addresses and checksums, fetch nothing")
    fetch.add_argument("--mirror", help=MIRROR_HELP)
    fetch.set_defaults(func=weights_download)
