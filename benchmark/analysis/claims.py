"""What a default run claims, checked against its own intervals: the OOD ordering of Kumar et al.
(LP-FT >= LP > FT), the oracle probe's ceiling beside it, and hyperparameters selected on a grid's edge."""
from __future__ import annotations

import json
import math

import pandas as pd

from lpft_bench.meaning import meaning_hash

ORACLE = "oracle"  # the row of the OOD table holding the oracle probe (LP fitted on each OOD set itself)


def record_setting(record: dict) -> dict:
    """What a record's result is of, as table keys: labels (else names) and short hashes of the benchmark's data
    and the backbone's meaning (a record without its meaning is keyed by its job's benchmark and backbone)."""
    job, labels = record["job"], record["job"].get("labels") or {}
    meaning = record.get("meaning") or {"benchmark": {"name": job["benchmark"], "options": job["benchmark_options"]},
                                        "backbone": [job["backbone"], job.get("checkpoint")]}
    return {"benchmark": labels.get("benchmark") or job["benchmark"], "benchmark_name": job["benchmark"],
            "data": meaning_hash(meaning["benchmark"], 8), "backbone": labels.get("backbone") or job["backbone"],
            "backbone_key": meaning_hash(meaning["backbone"], 8), "strategy": labels.get("strategy") or job["strategy"],
            "strategy_name": job["strategy"]}


def oracle_rows(records: list[dict]) -> pd.DataFrame:
    """Runs-like rows (accuracy in %) of the oracle probe that LP phases recorded, once per benchmark, backbone,
    seed and OOD set (lp and lp-ft share their probe phase)."""
    rows = {}
    for record in records:
        if record.get("status") != "done":
            continue
        job = record["job"]
        setting = {k: v for k, v in record_setting(record).items() if k in ("benchmark", "data", "backbone", "backbone_key")}
        for phase in record.get("phases", []):
            for eval_set, oracle in phase.get("oracle", {}).items():
                key = (setting["data"], setting["backbone_key"], job["seed"], eval_set)
                rows[key] = {**setting, "strategy": ORACLE, "seed": job["seed"], "eval_set": eval_set, "split": "ood",
                             "acc": 100.0 * oracle["acc"]}
    return pd.DataFrame(list(rows.values()), columns=["benchmark", "data", "backbone", "backbone_key", "strategy",
                                                      "seed", "eval_set", "split", "acc"])


def with_oracle(selected: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """The selected runs plus the oracle probe's rows, for the OOD table."""
    oracle = oracle_rows(records)
    return selected if oracle.empty else pd.concat([selected, oracle], ignore_index=True)


def compare(a: pd.Series, b: pd.Series) -> str:
    """'>' or '<' where the 90% intervals do not overlap, '≈' where they do (no order claimed), '?' without
    intervals (one seed)."""
    if math.isnan(a["ci90"]) or math.isnan(b["ci90"]):
        return "?"
    if a["mean"] - a["ci90"] > b["mean"] + b["ci90"]:
        return ">"
    if a["mean"] + a["ci90"] < b["mean"] - b["ci90"]:
        return "<"
    return "≈"


def _cell(row: pd.Series) -> str:
    return f"{row.name} {row['mean']:.1f} ± {row['ci90']:.1f}"


def ordering_lines(ood_cells: pd.DataFrame) -> list[str]:
    """Per OOD column holding lp, ft and lp-ft: whether LP-FT >= LP > FT holds, claiming '>' only where
    the intervals do not overlap; the oracle's ceiling beside it."""
    lines = []
    for column, cells in ood_cells.groupby("column", sort=True):
        by = cells.set_index("strategy")
        if not {"lp", "ft", "lp-ft"} <= set(by.index):
            continue
        lp_ft_vs_lp, lp_vs_ft = compare(by.loc["lp-ft"], by.loc["lp"]), compare(by.loc["lp"], by.loc["ft"])
        holds = lp_ft_vs_lp in (">", "≈") and lp_vs_ft == ">"
        verdict = "holds" if holds else "does not hold"
        if "?" in (lp_ft_vs_lp, lp_vs_ft):
            verdict = "undecided (one seed: no intervals)"
        ceiling = f"; oracle {by.loc[ORACLE, 'mean']:.1f}" if ORACLE in by.index else ""
        lines.append(f"  {column}: {_cell(by.loc['lp-ft'])} {lp_ft_vs_lp} {_cell(by.loc['lp'])} {lp_vs_ft} "
                     f"{_cell(by.loc['ft'])}{ceiling}: {verdict}")
    if not lines:
        return []
    return ["OOD ordering LP-FT ≥ LP > FT (> / <: 90% intervals apart; ≈: they overlap, no order claimed)", *lines]


def grid_edge_lines(runs: pd.DataFrame, selected: pd.DataFrame) -> list[str]:
    """For every swept numeric hyperparameter: the selected value and whether it is an end of its grid."""
    lines = []
    keys = ["benchmark", "data", "backbone", "backbone_key", "strategy"]  # tables.SETTING: never pooled
    for (benchmark, data, backbone, backbone_key, strategy), jobs in runs.groupby(keys, sort=True):
        grids = [json.loads(h) for h in jobs["hparams"].unique()]
        chosen = selected[(selected["data"] == data) & (selected["backbone_key"] == backbone_key) &
                          (selected["benchmark"] == benchmark) & (selected["strategy"] == strategy)]
        if chosen.empty:
            continue
        picked = json.loads(chosen["hparams"].iloc[0])
        for name in sorted({k for grid in grids for k in grid}):
            values = sorted({grid[name] for grid in grids if isinstance(grid.get(name), (int, float))
                             and not isinstance(grid.get(name), bool)})
            if len(values) < 2 or name not in picked:
                continue
            where = "on the edge of" if picked[name] in (values[0], values[-1]) else "inside"
            lines.append(f"  {benchmark} {strategy}: {name}={picked[name]:g} {where} its grid "
                         f"[{', '.join(f'{v:g}' for v in values)}]")
    return ["Selected hyperparameters (best mean ID validation accuracy)", *lines] if lines else []
