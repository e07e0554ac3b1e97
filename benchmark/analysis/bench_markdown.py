"""`lpft-bench bench --markdown`: the README's performance table, exactly as this run measured it, headed by
the machine it ran on; rows that need a GPU are listed as not measured until a run on one fills them."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

import pandas as pd
import torch

# Rows this CPU run cannot measure: (id, measurement). Never estimated: "not measured" until measured.
GPU_ROWS = (
    ("G1", "FT step throughput, ResNet-50 at 224 px, one GPU"),
    ("G2", "FT step throughput, ViT-B/16 at 224 px, one GPU"),
    ("G3", "DDP scaling of an FT job over 1, 2, 4, 8 devices"),
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}, "
            f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")


def _number(value: float) -> str:
    if value == "" or value != value:  # no reference (NaN, or empty once read back from CSV)
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _ratio(value: float) -> str:
    return "" if value == "" or value != value else f"{value:.3g}"


def format_markdown(frame: pd.DataFrame) -> str:
    """The table, the machine and time, each row's unit; the GPU rows as not measured."""
    frame = frame.fillna("")
    lines = [f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `lpft-bench bench --markdown` on: "
             f"{machine_line()}; load average {os.getloadavg()[0]:.1f} at the end (a shared machine: timings move "
             "with its load; each row's notes in `bench.csv` say how it was measured).", "",
             "| # | measurement | ours | reference | unit | ratio | target | |",
             "|---|---|---|---|---|---|---|---|"]
    for row in frame.itertuples():
        target = str(row.target).replace("|", "\\|")  # a pipe inside a cell would end it
        lines.append(f"| {row.id} | {row.measurement} | {_number(row.ours)} | {_number(row.reference)} | {row.unit} | "
                     f"{_ratio(row.ratio)} | {target} | {row.met} |")
    for row_id, measurement in GPU_ROWS:
        if row_id in set(frame["id"]):
            continue
        lines.append(f"| {row_id} | {measurement} | not measured | | | | | needs a GPU: `lpft-bench bench --gpu --markdown` |")
    return "\n".join(lines)
