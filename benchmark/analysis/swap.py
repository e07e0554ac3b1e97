"""Ren et al.'s Figure 3: the backbones and heads of a head-probing sweep's fine-tuned models, exchanged.

For each τ sweep (benchmark, backbone, series, seed; the jobs `head_probing_jobs` keeps), every job's fine-tuned
weights at its selected epoch are loaded from the store; the backbone of job i and the head of job j make model
(i, j), evaluated without any training on the training set (its evaluation view) and the selection set. The
diagonal is each job's own model, so its validation accuracy must equal the one its record holds: that is checked
and reported. Each backbone's features are computed once; a model (i, j) is head j on backbone i's features."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpft_bench.analysis.report import SWAP_CSV, SWAP_SWEEP, _save_figure, head_probing_jobs, plt, swap_png
from lpft_bench.analysis.tables import load_records
from lpft_bench.engine.execution import device_of, prepare_job
from lpft_bench.engine.identity import Job, RunContext, phase_key
from lpft_bench.engine.store import Store
from lpft_bench.errors import UsageError
from lpft_bench.storage import atomic_write
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.linear_probe import extract_features
from lpft_bench.strategies.posthoc import accuracy

# Accuracies are fractions of at most a few hundred thousand images: equal counts agree far closer than this.
DIAGONAL_TOLERANCE = 1e-6


def fine_tuned_weights(store: Path, record: dict) -> dict[str, torch.Tensor]:
    """The job's model at its selected epoch, from the store's result of its last (fine-tuning) phase."""
    job = Job.from_dict(record["job"])
    phases = get_strategy(job.strategy).phases(job.hparams)
    stored = Store(store).load_phase(phase_key(job, phases, len(phases) - 1))
    weights = None if stored is None else stored.selected if stored.selected is not None else stored.weights
    if weights is None:
        raise UsageError(f"job {job.id} ({job.strategy} {job.hparams}) has no stored fine-tuned weights in {store}: "
                         f"rerun `lpft-bench run` on this store to recompute them, then `lpft-bench swap` again")
    return weights


def _swap_one_sweep(store: Path, sweep: pd.DataFrame, by_id: dict, data_root: str | None) -> list[dict]:
    sweep = sweep.sort_values("tau")
    first = Job.from_dict(by_id[sweep["job_id"].iloc[0]]["job"])
    ctx = RunContext(out=store, data_root=data_root)
    prepared = prepare_job(first, ctx)  # every job of one sweep shares its data, seed and architecture
    model, dm, device = prepared.model.to(device_of(ctx)), prepared.datamodule, device_of(ctx)
    selection = next(s for s in dm.eval_sets if s.name == dm.selection_set)
    sets = {"train": (dm.splits.train_eval, None), "val": (selection.dataset, selection.class_subset)}
    features, heads = [], []
    for job_id in sweep["job_id"]:
        model.load_state_dict(fine_tuned_weights(store, by_id[job_id]))
        features.append({name: extract_features(model.backbone, dm.eval_loader(data), device)
                         for name, (data, _) in sets.items()})
        heads.append(copy.deepcopy(model.head).eval())
    rows = []
    point = sweep.iloc[0]
    recorded = dict(zip(sweep["tau"], sweep["ft_val_acc"]))
    for i, backbone_tau in enumerate(sweep["tau"]):
        for j, head_tau in enumerate(sweep["tau"]):
            row = {**{key: point[key] for key in SWAP_SWEEP}, "backbone_tau": backbone_tau, "head_tau": head_tau}
            with torch.no_grad():
                for name, (_, class_subset) in sets.items():
                    values, labels = features[i][name]
                    logits = heads[j](torch.from_numpy(values).to(device)).float().cpu()
                    row[f"{name}_acc"] = 100.0 * accuracy(logits, torch.from_numpy(labels), class_subset)
            row["recorded_val_acc"] = recorded[backbone_tau] if i == j else np.nan
            rows.append(row)
    return rows


def swap_matrix(store: Path, data_root: str | None = None) -> pd.DataFrame:
    """One row per (sweep, backbone τ, head τ): train and validation accuracy (%) of the exchanged model."""
    records = load_records(store)
    jobs = head_probing_jobs(records)
    if jobs.empty:
        raise UsageError(f"{store} holds no finished head-probing sweep (hp-ft, lshp-ft or mlp-head jobs): "
                         "run one first, e.g. `lpft-bench run --suite hpft`")
    by_id = {record["job_id"]: record for record in records}
    rows = []
    for _, sweep in jobs.groupby(SWAP_SWEEP, sort=True):
        rows += _swap_one_sweep(store, sweep, by_id, data_root)
    return pd.DataFrame(rows)


def diagonal_mismatches(swaps: pd.DataFrame) -> pd.DataFrame:
    """Diagonal models whose validation accuracy is not the one their job recorded."""
    diagonal = swaps.dropna(subset=["recorded_val_acc"])
    return diagonal[(diagonal["val_acc"] - diagonal["recorded_val_acc"]).abs() > DIAGONAL_TOLERANCE]


def plot_swap(sweep: pd.DataFrame, title: str, png: Path) -> list[str]:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, name in zip(axes, ("train", "val")):
        grid = sweep.pivot(index="backbone_tau", columns="head_tau", values=f"{name}_acc")
        image = ax.imshow(grid.to_numpy(), cmap="viridis", vmin=0, vmax=100)
        ax.set_xticks(range(len(grid.columns)), labels=grid.columns)
        ax.set_yticks(range(len(grid.index)), labels=grid.index)
        for (r, c), value in np.ndenumerate(grid.to_numpy()):
            ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize="x-small",
                    color="white" if value < 60 else "black")
        ax.set_xlabel("head from the job with τ =")
        ax.set_ylabel("backbone from the job with τ =")
        ax.set_title(f"{name} accuracy (%)")
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return _save_figure(fig, sweep, png)


def write_swaps(store: Path, out: Path, data_root: str | None = None) -> tuple[Path, pd.DataFrame]:
    """swap.csv and one heatmap (with its numbers) per sweep into `out`; returns swap.csv's path and the
    diagonal mismatches."""
    swaps = swap_matrix(store, data_root)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / SWAP_CSV, lambda tmp: swaps.to_csv(tmp, index=False))
    for key, sweep in swaps.groupby(SWAP_SWEEP, sort=True):
        benchmark, backbone, series, seed = key
        plot_swap(sweep, f"{benchmark}, {backbone}, {series}, seed {seed}: backbone i + head j, no training",
                  out / swap_png(key))
    return out / SWAP_CSV, diagonal_mismatches(swaps)


def add_swap_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `lpft-bench swap`."""
    parser.add_argument("--store", required=True, help="results store holding a finished head-probing sweep")
    parser.add_argument("--out", help="directory for swap.csv and the heatmaps (default: STORE/report, "
                                      "where `lpft-bench report` shows them)")
    parser.add_argument("--data-root", help="root of the datasets (default: $LPFT_BENCH_DATA)")


def main_swap(args: argparse.Namespace) -> int:
    """Entry point of `lpft-bench swap`."""
    store = Path(args.store)
    csv, mismatches = write_swaps(store, Path(args.out) if args.out else store / "report", args.data_root)
    print(f"wrote {csv}")
    if not mismatches.empty:
        print(f"lpft-bench swap: {len(mismatches)} diagonal model(s) differ from their recorded validation accuracy:\n"
              + mismatches.to_string(index=False))
        return 1
    print("diagonal: every job's own model reproduces its recorded validation accuracy")
    return 0
