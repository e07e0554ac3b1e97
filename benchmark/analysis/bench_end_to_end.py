"""`lpft-bench bench --end-to-end`: the quickstart suite into a fresh temporary store vs the plain script that
computes the same table cells (`plain_quickstart.py`), each in its own process with OMP_NUM_THREADS=1, timed by
the CPU seconds (user + system) that process used, and whether their cells agree. The two alternate, a few times:
on a shared machine one process's CPU seconds moved by a fifth between two runs minutes apart."""
from __future__ import annotations

import json
import math
import statistics
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from lpft_bench.analysis.bench_instruments import conditions
from lpft_bench.analysis.bench_setup import Row, judged
from lpft_bench.analysis.tables import CI

TARGET = 1.1  # the suite's CPU time at most this many times the plain script's


def _timed(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `command` run to completion with one thread; its output is dropped
    unless it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def store_cells(store: Path) -> dict[str, tuple[float, float, int]]:
    """"strategy|column" -> (mean, 90% half-width, seeds) as the store's id.csv and ood.csv hold them."""
    cells = {}
    for table in ("id.csv", "ood.csv"):
        frame = pd.read_csv(store / table, index_col=0)
        names = [c for c in frame.columns if not c.endswith((CI, "seeds")) and c != "average"]
        for strategy, row in frame.iterrows():
            for name in names:
                if not pd.isna(row[name]):
                    cells[f"{strategy}|{name}"] = (float(row[name]), float(row[f"{name} {CI}"]), int(row[f"{name} seeds"]))
    return cells


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def differing_cells(suite: dict, plain: dict) -> list[str]:
    """Cells that one side lacks or whose mean, half-width or seed count differ."""
    differing = []
    for key in sorted(set(suite) | set(plain)):
        if key not in suite or key not in plain:
            differing.append(f"{key}: only in {'suite' if key in suite else 'plain'}")
        elif not all(_same(float(a), float(b)) for a, b in zip(suite[key], plain[key])):
            differing.append(f"{key}: suite {suite[key][0]} ± {suite[key][1]}, plain {plain[key][0]} ± {plain[key][1]}")
    return differing


def end_to_end_commands(store: Path, cells_json: Path, epochs: int | None, seeds: list[int] | None) -> tuple[list, list]:
    suite = [sys.executable, "-m", "lpft_bench.cli", "run", "--suite", "quickstart", "--out", str(store)]
    plain = [sys.executable, "-m", "lpft_bench.analysis.plain_quickstart", "--json", str(cells_json)]
    for command in (suite, plain):
        command += ["--epochs", str(epochs)] if epochs else []
        command += ["--seeds", *map(str, seeds)] if seeds else []
    return suite, plain


def compare_end_to_end(epochs: int | None = None, seeds: list[int] | None = None, repeats: int = 1) -> dict:
    """Both sides run `repeats` times, alternating (epochs, seeds: a smaller matrix than the quickstart's): the
    median CPU and wall seconds of each, the per-repeat ratios, how many cells the plain script computed and which
    differ from the suite's tables (in any repeat)."""
    runs, differing, cells = [], set(), 0
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="lpft-bench-e2e-") as workdir:
            store, cells_json = Path(workdir) / "store", Path(workdir) / "plain.json"
            suite_command, plain_command = end_to_end_commands(store, cells_json, epochs, seeds)
            suite_cpu, suite_wall = _timed(suite_command)
            plain_cpu, plain_wall = _timed(plain_command)
            plain = {key: tuple(value) for key, value in json.loads(cells_json.read_text())["cells"].items()}
            cells = len(plain)
            differing.update(differing_cells(store_cells(store), plain))
            runs.append({"suite_cpu": suite_cpu, "plain_cpu": plain_cpu, "suite_wall": suite_wall,
                         "plain_wall": plain_wall})
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    ratios = [run["suite_cpu"] / run["plain_cpu"] for run in runs]
    return {**result, "ratios": ratios, "paired_ratio": statistics.median(ratios), "cells": cells,
            "differing": sorted(differing)}


def measure_end_to_end(epochs: int | None = None, seeds: list[int] | None = None, repeats: int = 1) -> Row:
    """Row 6: the quickstart's CPU seconds, suite vs plain script (medians of `repeats` alternating runs)."""
    result = compare_end_to_end(epochs, seeds, repeats)
    matrix = "the full quickstart" if epochs is None and seeds is None else f"quickstart, epochs={epochs}, seeds={seeds}"
    differing = result["differing"]
    agreement = (f"all {result['cells']} cells agree (mean, 90% interval, seeds)" if not differing
                 else f"{len(differing)} of {result['cells']} cells differ: " + "; ".join(differing))
    # Judged on the runs' own pairs (each suite run against the plain run right after it): the machine's speed
    # drifts between runs minutes apart, and a ratio of the two medians would pair runs from different minutes.
    ratio = 1 / result["paired_ratio"]
    return Row("6", "end to end: quickstart table cells, suite vs plain script", result["suite_cpu"],
               result["plain_cpu"], "CPU s", ratio, f"suite <= {TARGET}x plain", judged(ratio >= 1 / TARGET),
               f"{matrix}: `lpft-bench run` into a fresh temporary store vs `python -m "
               f"lpft_bench.analysis.plain_quickstart`, each its own process, OMP_NUM_THREADS=1, alternating, median "
               f"of {repeats} runs each; ratio: plain/suite, from the median of the per-run suite/plain ratios "
               f"({', '.join(f'{ratio:.3f}x' for ratio in result['ratios'])}: median {result['paired_ratio']:.3f}x; "
               f"the ratio of the two medians is {result['suite_cpu'] / result['plain_cpu']:.3f}x); median wall "
               f"{result['suite_wall']:.0f} s and {result['plain_wall']:.0f} s; {agreement}; {conditions()}")
