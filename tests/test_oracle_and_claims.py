"""The oracle probe (LP fitted on an OOD set itself) and the claims the default printout makes from its tables."""
import json

import numpy as np
import pandas as pd

from lpft_bench.analysis.claims import ORACLE, compare, grid_edge_lines, oracle_rows, ordering_lines
from lpft_bench.strategies import PAPER_PROBE_CS
from lpft_bench.strategies.oracle import oracle_probe, split_by_group


def _clusters(n_per_class: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    centres = rng.normal(size=(4, 16)) * 3
    return (centres[labels] + spread * rng.normal(size=(len(labels), 16))).astype(np.float32), labels


def test_oracle_reaches_separable_features_and_chance_on_noise():
    features, labels = _clusters(40, 0.1)
    assert oracle_probe(features, labels, PAPER_PROBE_CS, 4)["acc"] == 1.0
    noise = np.random.default_rng(1).normal(size=features.shape).astype(np.float32)
    assert oracle_probe(noise, labels, PAPER_PROBE_CS, 4)["acc"] < 0.5


def test_oracle_scores_only_examples_of_groups_it_never_fitted():
    features, labels = _clusters(30, 0.1)
    groups = np.arange(len(labels)) // 2  # two views of each source image
    rest, taken = split_by_group(np.arange(len(labels)), groups, 0.5, seed=0)
    assert not set(groups[rest]) & set(groups[taken]) and len(rest) + len(taken) == len(labels)
    result = oracle_probe(features, labels, PAPER_PROBE_CS, 4, groups)
    assert result["fit"] + result["held_out"] == len(labels) and result["held_out"] == len(taken)
    # Memorising the fit half is useless when each held-out example's twin is held out too: an oracle that
    # leaked a view across the split would score this noise far above chance.
    noise = np.repeat(np.random.default_rng(2).normal(size=(len(labels) // 2, 16)), 2, axis=0).astype(np.float32)
    assert oracle_probe(noise, labels, PAPER_PROBE_CS, 4, groups)["acc"] < 0.5


def _cells(**cells):
    return pd.DataFrame([{"strategy": s, "column": "d:rot", "mean": m, "ci90": c, "seeds": 3}
                         for s, (m, c) in cells.items()])


def test_ordering_claims_an_order_only_where_intervals_do_not_overlap():
    holds = ordering_lines(_cells(**{"lp-ft": (86.0, 0.5), "lp": (85.6, 0.4), "ft": (74.0, 1.0), ORACLE: (92.0, 0.0)}))
    assert holds[1] == "  d:rot: lp-ft 86.0 ± 0.5 ≈ lp 85.6 ± 0.4 > ft 74.0 ± 1.0; oracle 92.0: holds"
    overlapping = ordering_lines(_cells(**{"lp-ft": (86.0, 0.5), "lp": (85.6, 0.4), "ft": (84.0, 1.5)}))
    assert overlapping[1].endswith("lp 85.6 ± 0.4 ≈ ft 84.0 ± 1.5: does not hold")
    reversed_ = ordering_lines(_cells(**{"lp-ft": (80.0, 0.5), "lp": (85.6, 0.4), "ft": (74.0, 1.0)}))
    assert " < lp " in reversed_[1] and reversed_[1].endswith("does not hold")
    assert compare(pd.Series({"mean": 1.0, "ci90": float("nan")}), pd.Series({"mean": 0.0, "ci90": 0.1})) == "?"
    assert ordering_lines(_cells(lp=(85.6, 0.4), ft=(74.0, 1.0))) == []


def _runs(strategy, lrs):
    return [{"benchmark": "digits", "data": "d", "backbone": "b", "backbone_key": "k", "strategy": strategy,
             "hparams": json.dumps({"epochs": 10, "lr": lr, "reinit_blocks": ["layer4.2"]})} for lr in lrs]


def test_grid_edges_are_reported_and_single_values_are_not_a_grid():
    runs = pd.DataFrame(_runs("ft", [1e-2, 3e-2, 1e-1]) + _runs("lp-ft", [1e-4, 3e-4, 1e-3]) + _runs("scratch", [3e-2]))
    selected = pd.DataFrame(_runs("ft", [3e-2]) + _runs("lp-ft", [1e-4]) + _runs("scratch", [3e-2]))
    lines = grid_edge_lines(runs, selected)
    assert lines[1:] == ["  digits ft: lr=0.03 inside its grid [0.01, 0.03, 0.1]",
                         "  digits lp-ft: lr=0.0001 on the edge of its grid [0.0001, 0.0003, 0.001]"]


def test_oracle_rows_come_once_per_seed_and_set_from_shared_probe_phases():
    def record(strategy, seed, acc):
        job = {"benchmark": "digits", "backbone": "b", "strategy": strategy, "seed": seed, "benchmark_options": {}}
        return {"status": "done", "job": job,
                "phases": [{"name": "lp", "oracle": {"rot": {"acc": acc}}}, {"name": "ft"}]}

    rows = oracle_rows([record("lp", 0, 0.9), record("lp-ft", 0, 0.9), record("lp", 1, 0.8)])
    assert sorted(rows["acc"]) == [80.0, 90.0] and set(rows["strategy"]) == {ORACLE} and set(rows["split"]) == {"ood"}


def test_an_oracle_on_a_set_whose_fit_half_holds_one_class_is_undefined_not_an_error():
    from lpft_bench.strategies import PAPER_PROBE_CS

    features, labels = np.random.default_rng(0).normal(size=(12, 4)), np.array([3] * 11 + [5])
    assert oracle_probe(features, labels, PAPER_PROBE_CS[:3], 6) is None


def test_the_oracle_is_fitted_once_for_the_seeds_that_share_an_ood_set(tmp_path, monkeypatch):
    """Digits' OOD sets do not depend on the seed: the next seed's probe reads the oracle the first one fitted from
    the store's cache beside the features (the same result); an unreadable entry is set aside and refitted."""
    from lpft_bench.engine import Job, RunContext, run_job
    from lpft_bench.strategies.kinds import probe

    fits = []
    monkeypatch.setattr(probe, "oracle_probe", lambda *args: fits.append(args) or oracle_probe(*args))
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu")
    lp = [run_job(Job("digits", "lp", seed=seed, benchmark_options={"subset": 60}), ctx) for seed in (0, 1)]
    ood = sorted(name for name, s in lp[0]["eval_sets"].items() if s["split"] == "ood")
    oracle = lp[0]["phases"][0]["oracle"]
    assert sorted(oracle) == ood and len(fits) == len(ood) and lp[1]["phases"][0]["oracle"] == oracle
    cached = sorted((ctx.out / "features").glob("*.json"))
    assert len(cached) == len(ood)
    cached[0].write_text("{")
    third = run_job(Job("digits", "lp", seed=2, benchmark_options={"subset": 60}), ctx)
    assert len(fits) == len(ood) + 1 and third["phases"][0]["oracle"] == oracle
    assert len(list((ctx.out / "features").glob("*.json.corrupt-*"))) == 1
