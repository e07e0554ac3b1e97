"""From job records to tables: per-job epoch selection, per-strategy hyperparameter selection, seed statistics."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lpft_bench.analysis.claims import grid_edge_lines, ordering_lines, record_setting, with_oracle
from lpft_bench.analysis.vs_ren2023 import CAVEAT as REN_CAVEAT, ren_comparison, table2_cells as ren_table2
from lpft_bench.errors import UsageError
from lpft_bench.storage import atomic_write

Z90 = 1.645  # the paper's 90% interval: 1.645 * std / sqrt(n)
# The interval column, as the authors' summary prints it ("average and 90% confidence interval"); with n = 3
# seeds the Student-t interval (t = 2.92) is 1.8x wider than the normal one.
INTERVAL_LABELS = {"normal": "90% CI (1.645 s/sqrt(n))", "student-t": "90% CI (t(0.95, n-1) s/sqrt(n))"}
CI = "90% CI"  # the tables' interval columns: "<column> 90% CI"
# Shipped inside the package: a wheel install compares with the paper as a checkout does.
PAPER_TABLES = Path(__file__).resolve().parent / "paper_tables" / "lpft_paper_tables.csv"
# The paper gives one DomainNet OOD figure: the real domain's. The release evaluates real, painting and clipart and
# averages none (run_adaptation_experiments.py L587-600@36fb2ef), early-stops on sketch and real only
# (datasets_domainnet.yaml L67-69), and the authors' later summary reads "DomainNet OOD" as test_acc/real_val
# (freeze-embed-paper-fine-tuning-results.ipynb L2093-2096@13c3e2b): vs_paper sets it beside `real` alone.
PAPER_OOD_SET_NAMES = {"domainnet-ood": "real"}
CELL_COLUMNS = ["strategy", "column", "mean", "ci90", "seeds"]


def load_records(store: Path) -> list[dict]:
    """Every readable record of the store (an unreadable one is that job's problem alone: named and skipped)."""
    from lpft_bench.engine.store import Store

    store = Store(store)
    if not store.jobs_dir.is_dir():
        raise UsageError(f"no results store at {store.root}: expected {store.jobs_dir}/<job id>/record.json, "
                         "as `lpft-bench run --out DIR` writes")
    return list(store.records())


RUN_COLUMNS = ["job_id", "benchmark", "benchmark_name", "data", "backbone", "backbone_key", "strategy", "strategy_name",
               "hparams", "seed", "eval_set", "split", "selection_set", "selected_epoch", "acc"]
# What a result is of: never pooled across, so two datasets or two backbones are never averaged together.
SETTING = ["benchmark", "data", "backbone", "backbone_key", "strategy"]


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per finished job x evaluation set, at the epoch the job selected on ID validation (accuracy in %).

    benchmark / backbone / strategy: the labels the suite or experiment file gave (else the names);
    data / backbone_key: short hashes of what the benchmark's data and the backbone mean (content, weights,
    data config), which tell apart two datasets or two input sizes shown under one label."""
    rows = []
    for record in records:
        if record.get("status") != "done":
            continue
        job, selection, setting = record["job"], record["selection"], record_setting(record)
        for eval_set, accuracy in record["final"].items():
            rows.append({
                "job_id": record["job_id"],
                **setting,
                "hparams": json.dumps(job["hparams"], sort_keys=True),
                "seed": job["seed"],
                "eval_set": eval_set,
                "split": record["eval_sets"][eval_set]["split"],
                "selection_set": selection["set"],
                "selected_epoch": selection["epoch"],
                "acc": 100.0 * accuracy,
            })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def select_hparams(runs: pd.DataFrame) -> pd.DataFrame:
    """Keep, per setting (benchmark data, backbone, strategy), the hyperparameters with the best mean
    selection-set accuracy over seeds."""
    if runs.empty:
        return runs
    on_selection = runs[runs["eval_set"] == runs["selection_set"]]
    scores = on_selection.groupby(SETTING + ["hparams"], as_index=False)["acc"].mean()
    best = scores.sort_values("acc", ascending=False, kind="stable").drop_duplicates(SETTING)[SETTING + ["hparams"]]
    return runs.merge(best, on=SETTING + ["hparams"])


def _disambiguated(frame: pd.DataFrame, label: str, key: str) -> pd.Series:
    """`label`, suffixed with `#key` where one label stands for several keys in `frame`."""
    several = frame.groupby(label)[key].transform("nunique") > 1
    return frame[label].where(~several, frame[label] + "#" + frame[key])


def row_labels(frame: pd.DataFrame) -> pd.Series:
    """The strategy, with its backbone where the frame holds several (never averaged together)."""
    backbone = _disambiguated(frame, "backbone", "backbone_key")
    if backbone.nunique() > 1:
        return frame["strategy"] + " @ " + backbone
    return frame["strategy"]


def column_labels(frame: pd.DataFrame) -> pd.Series:
    """The benchmark label, with its data's hash where one label holds several datasets."""
    return _disambiguated(frame, "benchmark", "data")


# What the tables say where no benchmark of a store has an OOD set (Ren et al.'s tasks): no empty OOD table.
NO_OOD = "No OOD sets in these benchmarks: ID accuracy only."


def written_tables(store: Path) -> list[str]:
    """The table files a collect left in `store`, in the order they are described (ood.csv only with OOD sets)."""
    names = ("runs.csv", "id.csv", "ood.csv", "vs_paper.csv", "ren2023_table2.csv", "summary.md")
    return [name for name in names if (Path(store) / name).exists()]


def interval_halfwidth(values: pd.Series, interval: str = "normal") -> float:
    """The 90% interval's half-width over seeds (sample std s): 1.645 s/sqrt(n), as the authors' summary, or
    Student-t's t(0.95, n - 1) s/sqrt(n)."""
    if interval not in INTERVAL_LABELS:
        raise ValueError(f"interval must be one of {', '.join(INTERVAL_LABELS)}, not {interval!r}")
    n = len(values)
    if n < 2:
        return float("nan")
    if interval == "normal":
        return Z90 * values.std(ddof=1) / math.sqrt(n)
    from scipy.stats import t

    return float(t.ppf(0.95, n - 1)) * values.std(ddof=1) / math.sqrt(n)


def summary_table(selected: pd.DataFrame, split: str, interval: str = "normal") -> pd.DataFrame:
    """Strategies x benchmark columns (ID: the ID test set; OOD: one column per shift), mean and 90% interval
    (`interval`: a key of INTERVAL_LABELS)."""
    part = selected[(selected["split"] == split) & ((split == "ood") | (selected["eval_set"] == "id_test"))]
    benchmark = column_labels(part)
    column = benchmark if split == "id" else benchmark + ":" + part["eval_set"]
    part = part.assign(column=column, strategy=row_labels(part))
    stats = part.groupby(["strategy", "column"])["acc"].agg(
        mean="mean", ci90=lambda values: interval_halfwidth(values, interval), seeds="count").reset_index()
    wide = stats.pivot(index="strategy", columns="column", values=["mean", "ci90", "seeds"])
    table = pd.DataFrame(index=wide.index)
    for name in sorted(stats["column"].unique()):
        table[name] = wide[("mean", name)]
        table[f"{name} {CI}"] = wide[("ci90", name)]
        table[f"{name} seeds"] = wide[("seeds", name)].astype("Int64")
    means = [c for c in table.columns if not c.endswith((CI, "seeds"))]
    # Like the paper's averages: over every column, so a strategy with a missing cell has no average.
    table["average"] = table[means].mean(axis=1, skipna=False)
    return table.round(2)


def calibration_table(records: list[dict], selected: pd.DataFrame) -> pd.DataFrame:
    """Expected calibration error (%) before and after temperature scaling, and the temperature, per strategy
    and column of the ID/OOD tables (ID test, each OOD set), mean over seeds at the selected hyperparameters.
    Empty when no selected job recorded calibration."""
    chosen = set(selected["job_id"]) if not selected.empty else set()
    rows = []
    for record in records:
        if record["job_id"] not in chosen or "calibration" not in record:
            continue
        labels = record["job"].get("labels") or {}
        calibration = record["calibration"]
        benchmark = labels.get("benchmark") or record["job"]["benchmark"]
        for eval_set, metrics in calibration["sets"].items():
            if metrics["split"] == "id" and eval_set != "id_test":
                continue
            rows.append({"strategy": labels.get("strategy") or record["job"]["strategy"], "split": metrics["split"],
                         "column": benchmark if metrics["split"] == "id" else f"{benchmark}:{eval_set}",
                         "ece": 100.0 * metrics["ece"], "ece_calibrated": 100.0 * metrics["ece_calibrated"],
                         "temperature": calibration["temperature"]})
    columns = ["strategy", "split", "column", "ece", "ece_calibrated", "temperature", "seeds"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    table = frame.groupby(["strategy", "split", "column"]).agg(
        ece=("ece", "mean"), ece_calibrated=("ece_calibrated", "mean"), temperature=("temperature", "mean"),
        seeds=("ece", "count")).reset_index()
    return table[columns].round(2)


def format_calibration(table: pd.DataFrame) -> str:
    """Strategies x columns, each cell 'ECE before → after'."""
    title = "ECE (%) before → after temperature scaling fitted on ID validation, mean over seeds"
    cells = table.assign(cell=[f"{b:.1f} → {a:.1f}" for b, a in zip(table["ece"], table["ece_calibrated"])])
    order = list(dict.fromkeys(sorted(cells.loc[cells["split"] == "id", "column"]) +
                               sorted(cells.loc[cells["split"] == "ood", "column"])))
    wide = cells.pivot(index="strategy", columns="column", values="cell")[order].fillna("—")
    wide.columns.name = None
    return f"{title}\n{wide.to_string()}"


def format_table(table: pd.DataFrame, title: str) -> str:
    """A readable view: 'mean ± interval (n seeds)' per cell."""
    if table.empty:
        return f"{title}: no finished jobs"
    shown = pd.DataFrame(index=table.index)
    for name in [c for c in table.columns if not c.endswith((CI, "seeds")) and c != "average"]:
        shown[name] = ["—" if pd.isna(m) else f"{m:.1f} (n={int(n)})" if pd.isna(ci) else f"{m:.1f} ± {ci:.1f} (n={int(n)})"
                       for m, ci, n in zip(table[name], table[f"{name} {CI}"], table[f"{name} seeds"].fillna(0))]
    shown["average"] = table["average"].map(lambda v: "—" if pd.isna(v) else f"{v:.1f}")
    return f"{title}\n{shown.to_string()}"


def table_cells(table: pd.DataFrame) -> pd.DataFrame:
    """summary_table's wide layout as one row per (strategy, column): mean, 90% interval, seeds."""
    names = [c for c in table.columns if not c.endswith((CI, "seeds")) and c != "average"]
    cells = [pd.DataFrame({"strategy": table.index, "column": name, "mean": table[name].to_numpy(),
                           "ci90": table[f"{name} {CI}"].to_numpy(), "seeds": table[f"{name} seeds"].to_numpy()})
             for name in names]
    if not cells:
        return pd.DataFrame(columns=CELL_COLUMNS)
    return pd.concat(cells, ignore_index=True).dropna(subset=["mean"]).astype({"seeds": int})


def read_paper_tables(path: Path = PAPER_TABLES) -> pd.DataFrame:
    """Kumar et al.'s rows, each named like a column of this suite's tables (ID: benchmark; OOD: benchmark:set)."""
    paper = pd.read_csv(path, comment="#")
    # OOD rows are named by shift (cifar10-stl, imagenet-v2): the benchmark is the part before the dash.
    benchmark = paper["benchmark"].str.split("-").str[0]
    eval_set = paper["eval_set"].replace(PAPER_OOD_SET_NAMES)
    return paper.assign(column=benchmark.where(paper["split"] == "id", benchmark + ":" + eval_set))


def paper_comparison(cells: pd.DataFrame, paper: pd.DataFrame, split: str) -> pd.DataFrame:
    """This suite's cells beside the paper's accuracy (and its 90% CI) for the columns and strategies both report."""
    reported = paper.loc[paper["split"] == split, ["column", "strategy", "acc", "ci90"]]
    return cells.merge(reported.rename(columns={"acc": "paper", "ci90": "paper 90% CI"}), on=["column", "strategy"])


def _write_csv(frame: pd.DataFrame, path: Path, index: bool) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=index))


def export_tables(store: Path, form: str) -> list[Path]:
    """id and ood tables of a collected store (or of the folder its tables went to) as Markdown or LaTeX
    (pandas' to_markdown / to_latex)."""
    suffix = {"md": ".md", "latex": ".tex"}[form]
    written = []
    for name in ("id", "ood"):
        if name == "ood" and not (Path(store) / "ood.csv").exists():  # benchmarks without OOD sets: ID only
            continue
        table = pd.read_csv(Path(store) / f"{name}.csv", index_col=0)
        text = table.to_markdown(floatfmt=".2f") if form == "md" else table.to_latex(float_format="%.2f")
        path = Path(store) / f"{name}{suffix}"
        atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))
        written.append(path)
    return written


def collect(store: Path, interval: str = "normal", tables_out: Path | None = None, write: bool = True,
            matrix: list[str] | None = None) -> str:
    """Write runs.csv, id.csv, ood.csv, vs_paper.csv and summary.md into the store, or into `tables_out` (and
    calibration.csv when jobs recorded temperature scaling); with `write` False only return them (a store
    this user cannot write); return the printed tables. `interval`: which 90% interval the tables hold
    (INTERVAL_LABELS); the printout and summary.md say which. `matrix` (default: the store's `matrix.json`): the
    job ids whose failures are this run's; every finished record is tabulated, keyed by its data and backbone."""
    from lpft_bench.paths import display_path
    from lpft_bench.prune import matrix_ids, outside_line, outside_records

    store = Path(store)
    destination = Path(tables_out) if tables_out is not None else store

    def save(frame: pd.DataFrame, name: str, index: bool) -> None:
        if write:
            _write_csv(frame, destination / name, index)

    records = load_records(store)
    matrix = matrix if matrix is not None else matrix_ids(store)
    outside = set(outside_records(store, matrix))
    finished = sum(r.get("status") == "done" for r in records)
    runs = runs_frame(records)
    selected = select_hparams(runs)
    id_table = summary_table(selected, "id", interval)
    ood_table = summary_table(with_oracle(selected, records), "ood", interval)
    # Finished jobs and not one OOD cell: benchmarks without OOD sets (with no finished job, both tables say so).
    has_ood = not table_cells(ood_table).empty or table_cells(id_table).empty
    save(runs, "runs.csv", index=False)
    save(id_table, "id.csv", index=True)
    if has_ood:
        save(ood_table, "ood.csv", index=True)
    elif write:  # an ID-only store has no OOD table; one left by an earlier collect would be stale
        (destination / "ood.csv").unlink(missing_ok=True)
    paper = read_paper_tables()
    comparison = pd.concat([paper_comparison(table_cells(id_table), paper, "id").assign(split="id"),
                            paper_comparison(table_cells(ood_table), paper, "ood").assign(split="ood")])
    comparison = comparison.assign(difference=(comparison["mean"] - comparison["paper"]).round(2),
                                   paper_source="Kumar et al. 2022")
    ren = ren_comparison(records)
    comparison = pd.concat([comparison, ren], ignore_index=True) if not ren.empty else comparison
    save(comparison, "vs_paper.csv", index=False)
    table2 = ren_table2(records)
    if not table2.empty:  # no published numbers to set beside it: our side of Ren et al.'s Table 2 alone
        save(table2, "ren2023_table2.csv", index=False)
    failed = [r for r in records if r.get("status") == "failed" and r.get("job_id") not in outside]
    label = INTERVAL_LABELS[interval]
    lines = [format_table(id_table, f"ID accuracy (%), mean ± {label} over seeds"), "",
             format_table(ood_table, f"OOD accuracy (%), mean ± {label} over seeds") if has_ood else NO_OOD]
    for claims in (ordering_lines(table_cells(ood_table)), grid_edge_lines(runs, selected)):
        lines += ["", *claims] if claims else []
    calibration = calibration_table(records, selected)
    if not calibration.empty:
        save(calibration, "calibration.csv", index=False)
        lines += ["", format_calibration(calibration)]
    if failed:
        lines += ["", f"{len(failed)} failed job(s): " + ", ".join(r["job_id"] for r in failed)]
    if outside:
        lines += ["", outside_line(len(outside))]
    if not ren.empty:
        lines += ["", f"{len(ren)} cell(s) of Ren et al.'s Tables 1 and 3 in vs_paper.csv. {REN_CAVEAT}"]
    text = "\n".join(lines)
    summary = [f"# Results of {display_path(store.name)}", "",
               f"{finished} finished job(s), {len(failed)} failed. Epoch and hyperparameters "
               f"selected on ID validation; intervals: {label} over seeds (s: sample std).", "", "```", text, "```", ""]
    if not comparison.empty:
        summary += ["Beside the papers (`vs_paper.csv`):", "", "```",
                    comparison[["paper_source", "split", "strategy", "column", "mean", "paper", "difference"]]
                    .to_string(index=False), "```", ""] + ([REN_CAVEAT, ""] if not ren.empty else [])
    if write:
        atomic_write(destination / "summary.md", lambda tmp: tmp.write_text("\n".join(summary)))
    return text
