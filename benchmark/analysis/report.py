"""A results store as a report: the ID and OOD tables beside the paper's numbers, and figures (each with its numbers
as CSV) of ID vs OOD accuracy, feature change, and head-probing sweeps against τ."""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import matplotlib
import pandas as pd

from lpft_bench.storage import atomic_write
from lpft_bench.strategies import STRATEGIES, get_strategy
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.analysis.claims import record_setting
from lpft_bench.analysis.tables import (
    INTERVAL_LABELS,
    NO_OOD,
    PAPER_TABLES,
    format_table,
    load_records,
    paper_comparison,
    read_paper_tables,
    runs_frame,
    select_hparams,
    summary_table,
    table_cells,
)

matplotlib.use("Agg")  # figures are only written to files: no display needed
import matplotlib.pyplot as plt  # noqa: E402



def _head_probes_then_finetunes(phases) -> bool:
    """A gradient phase with the backbone frozen followed by one training it: what a τ sweep varies."""
    kinds = [phase_kind(p.trains) for p in phases]
    return any(a.by_gradient and not a.trains_backbone and b.trains_backbone for a, b in zip(kinds, kinds[1:]))


HEAD_PROBING_STRATEGIES = tuple(name for name, strategy in STRATEGIES.items()
                                if "hp_epochs" in strategy.defaults and _head_probes_then_finetunes(strategy.phases()))
FEATURE_METRICS = ("distance", "cosine", "dot", "norm")
SWEEP_METRICS = ("ft_val_acc", "hp_train_acc", "average_initial_energy", *FEATURE_METRICS)
# Ren et al.'s Figure 4 plots the sweep against HP-train-acc too: every metric but that x-axis itself.
AGAINST_HP_ACC = tuple(metric for metric in SWEEP_METRICS if metric != "hp_train_acc")
SWEEP_POINT = ["benchmark", "backbone", "series", "tau"]
METRIC_LABELS = {
    "ft_val_acc": "FT validation accuracy (%)",
    "hp_train_acc": "HP-train-acc (%) at FT start",
    "average_initial_energy": "AIE at FT start",
    "distance": "‖z_T − z_0‖",
    "dot": "⟨z_T, z_0⟩",
    "cosine": "cos(z_T, z_0)",
    "norm": "‖z_T‖",
}
MARKERS = "osD^vPX*<>ph"
SWAP_CSV = "swap.csv"  # written by `lpft-bench swap` (analysis/swap.py) into the report directory
SWAP_SWEEP = ["benchmark", "backbone", "series", "seed"]  # one swap matrix per τ sweep of one seed


def swap_png(sweep_key: tuple) -> str:
    """The heatmap of one sweep's swap matrix."""
    return "swap_" + "-".join(str(part).replace(" ", "").replace("=", "") for part in sweep_key) + ".png"


def id_vs_ood_points(id_cells: pd.DataFrame, ood_cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (benchmark, strategy, OOD set): ID test and OOD accuracy with their 90% intervals."""
    def prefixed(cells: pd.DataFrame, prefix: str) -> pd.DataFrame:
        return cells.rename(columns={name: f"{prefix}_{name}" for name in ("mean", "ci90", "seeds")})

    benchmark_and_set = ood_cells["column"].str.split(":", n=1)
    ood = prefixed(ood_cells, "ood").assign(benchmark=benchmark_and_set.str[0], ood_set=benchmark_and_set.str[1])
    points = prefixed(id_cells, "id").rename(columns={"column": "benchmark"}).merge(ood, on=["benchmark", "strategy"])
    return points[["benchmark", "strategy", "ood_set", "id_mean", "id_ci90", "id_seeds",
                   "ood_mean", "ood_ci90", "ood_seeds"]].sort_values(["benchmark", "strategy", "ood_set"])


def finetune_phase(record: dict) -> dict | None:
    """The full fine-tuning phase (the one with feature diagnostics), if the strategy has one."""
    return next((phase for phase in reversed(record["phases"]) if "feature_change" in phase), None)


def _seed_statistics(per_job: pd.DataFrame, keys: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    long = per_job.melt(id_vars=keys, value_vars=list(metrics), var_name="metric")
    return long.groupby([*keys, "metric"], as_index=False, sort=True)["value"].agg(
        mean="mean", std="std", seeds="count")


def feature_change_summary(records: list[dict], selected: pd.DataFrame) -> pd.DataFrame:
    """Mean feature distance and cosine on ID and OOD sets, per strategy at its selected hyperparameters:
    averaged over the sets of a split within a job, then mean ± std over seeds."""
    by_id = {record["job_id"]: record for record in records}
    rows = []
    for job_id in selected["job_id"].unique():
        record = by_id[job_id]
        finetune = finetune_phase(record)
        if finetune is None:
            continue
        for eval_set, change in finetune["feature_change"].items():
            rows.append({"benchmark": record["job"]["benchmark"], "strategy": record["job"]["strategy"],
                         "job_id": job_id, "split": record["eval_sets"][eval_set]["split"],
                         "distance": change["distance"], "cosine": change["cosine"]})
    if not rows:
        return pd.DataFrame()
    per_job = pd.DataFrame(rows).groupby(["benchmark", "strategy", "job_id", "split"], as_index=False).mean()
    return _seed_statistics(per_job.drop(columns="job_id"), ["benchmark", "strategy", "split"], ("distance", "cosine"))


def sweep_series(strategy: str, hparams: dict) -> str:
    """Label-smoothed head probing is a different curve for every smoothing η."""
    return f"{strategy} η={hparams['hp_smoothing']}" if "hp_smoothing" in hparams else strategy


def head_probing_jobs(records: list[dict]) -> pd.DataFrame:
    """One row per head-probing job kept for the sweep: its backbone, series, τ, seed, FT validation accuracy,
    HP-train-acc (the probed head's accuracy on the training probe set as FT starts), AIE and feature change on
    its selection set. Within a (backbone, series, τ) point, other swept hyperparameters (e.g. lr) are chosen
    as everywhere else: best mean selection-set accuracy over seeds."""
    sweep = [r for r in records if r.get("status") == "done" and r["job"]["strategy"] in HEAD_PROBING_STRATEGIES]
    if not sweep:
        return pd.DataFrame()
    points = {}
    for record in sweep:
        hparams = get_strategy(record["job"]["strategy"]).hparams(record["job"]["hparams"])
        points[record["job_id"]] = (sweep_series(record["job"]["strategy"], hparams), hparams["hp_epochs"])
    runs = runs_frame(sweep)
    # select_hparams picks per strategy; keyed by sweep point it picks per (series, τ) instead.
    chosen = set(select_hparams(runs.assign(strategy=runs["job_id"].map(lambda job_id: str(points[job_id]))))["job_id"])
    rows = []
    for record in sweep:
        if record["job_id"] not in chosen:
            continue
        selection_set = record["selection"]["set"]
        finetune = finetune_phase(record)
        series, tau = points[record["job_id"]]
        change = finetune["feature_change"][selection_set]
        setting = record_setting(record)
        rows.append({"benchmark": setting["benchmark"], "backbone": setting["backbone"], "series": series,
                     "tau": tau, "seed": record["job"]["seed"], "job_id": record["job_id"],
                     "ft_val_acc": 100.0 * record["final"][selection_set],
                     "hp_train_acc": 100.0 * finetune["start"]["train_acc"],
                     "average_initial_energy": finetune["start"]["average_initial_energy"],
                     **{metric: change[metric] for metric in FEATURE_METRICS}})
    return pd.DataFrame(rows)


def head_probing_summary(jobs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of every sweep metric, per (benchmark, backbone, series, τ)."""
    return _seed_statistics(jobs.drop(columns="job_id"), SWEEP_POINT, SWEEP_METRICS)


def against_hp_accuracy(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep point: its mean HP-train-acc beside every other metric's mean and std."""
    wide = summary.pivot_table(index=SWEEP_POINT, columns="metric", values=["mean", "std"], dropna=False)
    wide.columns = [f"{metric}_{statistic}" for statistic, metric in wide.columns]
    columns = ["hp_train_acc_mean", *(f"{m}_{s}" for m in AGAINST_HP_ACC for s in ("mean", "std"))]
    return wide[columns].reset_index()


def _save_figure(fig: plt.Figure, numbers: pd.DataFrame, png: Path) -> list[str]:
    """Write the PNG and its numbers beside it; return the report lines that show both."""
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    csv = png.with_suffix(".csv")
    atomic_write(csv, lambda tmp: numbers.to_csv(tmp, index=False))
    return [f"![{png.stem}]({png.name})", "", f"Numbers: [{csv.name}]({csv.name})", ""]


def plot_id_vs_ood(points: pd.DataFrame, benchmark: str, markers: dict[str, str], png: Path) -> list[str]:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = dict(zip(sorted(points["ood_set"].unique()), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for (strategy, ood_set), point in points.groupby(["strategy", "ood_set"]):
        ax.errorbar(point["id_mean"], point["ood_mean"], xerr=point["id_ci90"], yerr=point["ood_ci90"],
                    marker=markers[strategy], color=colors[ood_set], linestyle="none", capsize=3,
                    label=f"{strategy}, {ood_set}")
    ax.set_xlabel("ID test accuracy (%)")
    ax.set_ylabel("OOD accuracy (%)")
    ax.set_title(f"{benchmark}: ID vs OOD ({INTERVAL_LABELS['normal']} over seeds)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return _save_figure(fig, points, png)


def plot_feature_change(summary: pd.DataFrame, benchmark: str, png: Path) -> list[str]:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, metric in zip(axes, ("distance", "cosine")):
        part = summary[summary["metric"] == metric]
        means = part.pivot(index="strategy", columns="split", values="mean")
        stds = part.pivot(index="strategy", columns="split", values="std")
        means.plot.bar(ax=ax, yerr=stds, capsize=3, rot=0)
        ax.set_title(f"{METRIC_LABELS[metric]}, mean over samples")
        ax.set_xlabel("")
    fig.suptitle(f"{benchmark}: feature change during FT (mean ± std over seeds)")
    fig.tight_layout()
    return _save_figure(fig, summary, png)


def _metric_grid(backbones: list[str], metrics: tuple[str, ...]) -> tuple[plt.Figure, dict]:
    """Ren et al.'s Figure 4 layout: one column per pretraining backbone, one row per metric."""
    fig, axes = plt.subplots(len(metrics), len(backbones), figsize=(max(7.0, 4.2 * len(backbones)), 2.3 * len(metrics)),
                             squeeze=False, sharex="col")
    for column, backbone in enumerate(backbones):
        axes[0, column].set_title(backbone)
        for row, metric in enumerate(metrics):
            axes[row, 0].set_ylabel(METRIC_LABELS[metric], fontsize="small")
    return fig, {(backbone, metric): axes[row, column] for column, backbone in enumerate(backbones)
                 for row, metric in enumerate(metrics)}


def plot_head_probing(summary: pd.DataFrame, benchmark: str, png: Path) -> list[str]:
    backbones = sorted(summary["backbone"].unique())
    fig, axes = _metric_grid(backbones, SWEEP_METRICS)
    for (backbone, metric, series), curve in summary.groupby(["backbone", "metric", "series"]):
        ax = axes[backbone, metric]
        ax.errorbar(curve["tau"], curve["mean"], yerr=curve["std"], marker="o", capsize=3, label=series)
        ax.set_xscale("symlog", linthresh=1)  # τ = 0 (plain FT) belongs on the axis beside τ in the hundreds
    for backbone in backbones:
        axes[backbone, SWEEP_METRICS[-1]].set_xlabel("τ (head-probing epochs)")
        axes[backbone, SWEEP_METRICS[0]].legend(fontsize="x-small")
    fig.suptitle(f"{benchmark}: head probing for τ epochs, then FT\n(mean ± std over seeds)")
    fig.tight_layout()
    return _save_figure(fig, summary, png)


def plot_against_hp_accuracy(points: pd.DataFrame, benchmark: str, png: Path) -> list[str]:
    backbones = sorted(points["backbone"].unique())
    fig, axes = _metric_grid(backbones, AGAINST_HP_ACC)
    for (backbone, series), curve in points.groupby(["backbone", "series"]):
        curve = curve.sort_values("tau")
        for metric in AGAINST_HP_ACC:
            axes[backbone, metric].errorbar(curve["hp_train_acc_mean"], curve[f"{metric}_mean"],
                                            yerr=curve[f"{metric}_std"], marker="o", capsize=3, label=series)
    for backbone in backbones:
        axes[backbone, AGAINST_HP_ACC[-1]].set_xlabel("HP-train-acc (%)")
        axes[backbone, AGAINST_HP_ACC[0]].legend(fontsize="x-small")
    fig.suptitle(f"{benchmark}: the same sweep against the probed head's\ntraining accuracy (mean ± std over seeds)")
    fig.tight_layout()
    return _save_figure(fig, points, png)


def _table_section(split: str, title: str, table: pd.DataFrame, benchmarks: list[str], out: Path) -> list[str]:
    csv = f"{split}.csv"
    atomic_write(out / csv, lambda tmp: table.to_csv(tmp))
    lines = [f"## {title}", "", "```text", format_table(table, f"{title}, mean ± {INTERVAL_LABELS['normal']} over seeds"), "```", "",
             f"Numbers: [{csv}]({csv})", ""]
    if not PAPER_TABLES.exists():
        return lines + [f"The paper's tables are not at {PAPER_TABLES}: no comparison.", ""]
    comparison = paper_comparison(table_cells(table), read_paper_tables(), split)
    compared = set(comparison["column"].str.split(":").str[0])
    if not comparison.empty:
        comparison_csv = f"{split}_vs_paper.csv"
        atomic_write(out / comparison_csv, lambda tmp: comparison.to_csv(tmp, index=False))
        lines += [f"Beside Kumar et al. 2022 (paper: mean and {INTERVAL_LABELS['normal']} over seeds as published):", "", "```text",
                  comparison.to_string(index=False, float_format="{:.1f}".format), "```", "",
                  f"Numbers: [{comparison_csv}]({comparison_csv})", ""]
    unmatched = [b for b in benchmarks if b not in compared]
    if unmatched:
        lines += [f"Kumar et al. 2022 report no {split.upper()} numbers for {', '.join(unmatched)}: no paper comparison.", ""]
    return lines


def _id_vs_ood_section(id_table: pd.DataFrame, ood_table: pd.DataFrame, out: Path) -> list[str]:
    lines = ["## ID vs OOD accuracy", "",
             "One marker per strategy at its selected hyperparameters, one point per OOD set; "
             f"error bars: {INTERVAL_LABELS['normal']} over seeds.", ""]
    points = id_vs_ood_points(table_cells(id_table), table_cells(ood_table))
    if points.empty:
        return lines + ["No benchmark in this store has both ID test and OOD accuracy: no scatter.", ""]
    markers = dict(zip(sorted(points["strategy"].unique()), itertools.cycle(MARKERS)))
    for benchmark, part in points.groupby("benchmark"):
        lines += [f"### {benchmark}", ""] + plot_id_vs_ood(part, benchmark, markers, out / f"id_vs_ood_{benchmark}.png")
    return lines


def _feature_change_section(records: list[dict], selected: pd.DataFrame, out: Path) -> list[str]:
    lines = ["## Feature change during fine-tuning", "",
             "Mean over probe samples of ‖z_T − z_0‖ and cos(z_T, z_0) between the features before and after the "
             "FT phase, averaged over the ID (resp. OOD) sets, for the selected-hyperparameter jobs; "
             "mean ± std over seeds.", ""]
    summary = feature_change_summary(records, selected)
    if summary.empty:
        return lines + ["No finished job in this store has a full fine-tuning phase: no feature change to show.", ""]
    for benchmark, part in summary.groupby("benchmark"):
        lines += [f"### {benchmark}", ""] + plot_feature_change(part, benchmark, out / f"feature_change_{benchmark}.png")
    return lines


def _head_probing_section(records: list[dict], out: Path) -> list[str]:
    lines = ["## Head probing: HPτ-FT against τ and against HP-train-acc (Ren et al.'s Figure 4)", "",
             "FT validation accuracy (selection set, at the selected epoch), HP-train-acc and average initial "
             "energy at FT start, and feature change z_0 → z_T over FT on the selection set's probe subset "
             "(‖z_T − z_0‖, cos(z_T, z_0), ⟨z_T, z_0⟩, ‖z_T‖; z_T on FT's selected epoch), against the number τ "
             "of head-probing epochs and against HP-train-acc; one column per pretraining backbone, mean ± std "
             "over seeds. Label-smoothed head probing (lshp-ft) is one series per smoothing η.", ""]
    jobs = head_probing_jobs(records)
    if jobs.empty:
        return lines + [f"No head-probing sweep in this store (no finished {', '.join(HEAD_PROBING_STRATEGIES)} jobs).", ""]
    summary = head_probing_summary(jobs)
    for benchmark, part in summary.groupby("benchmark"):
        lines += [f"### {benchmark}", ""] + plot_head_probing(part, benchmark, out / f"head_probing_{benchmark}.png")
        lines += plot_against_hp_accuracy(against_hp_accuracy(part), benchmark,
                                          out / f"head_probing_vs_hp_acc_{benchmark}.png")
    return lines


def _swap_section(out: Path) -> list[str]:
    lines = ["## Heads and backbones exchanged (Ren et al.'s Figure 3)", ""]
    if not (out / SWAP_CSV).exists():
        return lines + [f"Not computed: `lpft-bench swap --store STORE --out {out}` evaluates every backbone of the "
                        "sweep with every head (no training) and writes it here for the next report.", ""]
    swaps = pd.read_csv(out / SWAP_CSV)
    lines += ["Backbone of the job with τ = row, head of the job with τ = column, evaluated without training "
              f"(accuracy %), as `lpft-bench swap` last wrote [{SWAP_CSV}]({SWAP_CSV}).", ""]
    for key, sweep in swaps.groupby(SWAP_SWEEP, sort=True):
        png = swap_png(key)
        diagonal = sweep.dropna(subset=["recorded_val_acc"])
        gap = (diagonal["val_acc"] - diagonal["recorded_val_acc"]).abs().max()
        lines += [f"### {', '.join(map(str, key))}", "", f"![{png[:-4]}]({png})", "", "```text"]
        for name in ("val", "train"):
            grid = sweep.pivot(index="backbone_tau", columns="head_tau", values=f"{name}_acc")
            lines += [f"{name} accuracy (%): rows backbone τ, columns head τ", grid.to_string(float_format="{:.1f}".format), ""]
        lines += ["```", "", f"Diagonal vs each job's recorded validation accuracy: largest difference {gap:.2g} points.", ""]
    return lines


def write_report(store: Path, out: Path | None = None) -> Path:
    """Write report.md, its figures and their CSVs into `out` (default `<store>/report`); return report.md's path."""
    store = Path(store)
    out = Path(out) if out is not None else store / "report"
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(store)
    selected = select_hparams(runs_frame(records))
    id_table, ood_table = summary_table(selected, "id"), summary_table(selected, "ood")
    done = [r for r in records if r.get("status") == "done"]
    failed = [r["job_id"] for r in records if r.get("status") == "failed"]
    benchmarks = sorted(selected["benchmark"].unique())
    lines = [f"# lpft-bench report: {store}", "",
             f"{len(done)} finished job(s); {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "") + ".",
             "Accuracy in %, at each strategy's hyperparameters with the best mean selection-set accuracy.", ""]
    lines += _table_section("id", "ID accuracy (%)", id_table, benchmarks, out)
    ood_cells = table_cells(ood_table)
    if ood_cells.empty and not table_cells(id_table).empty:  # Ren et al.'s tasks have no OOD set: ID only
        lines += [NO_OOD, ""]
        (out / "ood.csv").unlink(missing_ok=True)
    else:
        with_ood = sorted(set(ood_cells["column"].str.split(":").str[0]))
        lines += _table_section("ood", "OOD accuracy (%)", ood_table, with_ood, out)
        lines += _id_vs_ood_section(id_table, ood_table, out)
    lines += _feature_change_section(records, selected, out)
    lines += _head_probing_section(records, out)
    if not head_probing_jobs(records).empty:
        lines += _swap_section(out)
    report = out / "report.md"
    atomic_write(report, lambda tmp: tmp.write_text("\n".join(lines)))
    return report


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `lpft-bench report`."""
    parser.add_argument("--store", default="results/quickstart", help="results store (holds jobs/<job id>/record.json)")
    parser.add_argument("--out", help="report directory (default: STORE/report)")


def main_report(args: argparse.Namespace) -> int:
    """Entry point of `lpft-bench report`."""
    report = write_report(Path(args.store), Path(args.out) if args.out else None)
    print(f"wrote {report}")
    return 0
