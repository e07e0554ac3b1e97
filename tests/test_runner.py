"""The matrix runner: suite expansion, launchers, status, and the tables (kills and resumes: test_faults.py)."""
import json
from pathlib import Path

import pandas as pd
import pytest

from lpft_bench.cli import main
from lpft_bench.engine import Job, RunContext
from lpft_bench.errors import UsageError
from lpft_bench.runner import run_matrix, store_status
from lpft_bench.storage import write_json
from lpft_bench.strategies import STRATEGIES
from lpft_bench.suites import get_suite
from lpft_bench.analysis.tables import collect

GOLDEN = Path(__file__).parent / "golden"


def test_suite_expansion_counts_and_filters():
    assert len(get_suite("quickstart").expand()) == (1 + 1 + 4 + 3) * 3
    # 5 benchmarks x (lp + 6 FT LRs + 6 LP-FT LRs) x 3 seeds; ImageNet sweeps 3 probe, 3 FT and 3 LP-FT LRs.
    assert len(get_suite("paper").expand()) == 5 * 13 * 3 + 9 * 3
    assert len(get_suite("hpft").expand()) == (9 + 3) * 3
    # Every smoke benchmark (the registry's fakes and the paper architectures) with every strategy.
    assert len(get_suite("smoke").expand()) == len(get_suite("smoke").benchmarks) * len(STRATEGIES)
    jobs = get_suite("paper").expand(benchmarks=["cifar10"], strategies=["ft"], seeds=[0])
    assert sorted(j.hparams["lr"] for j in jobs) == [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    assert {j.backbone for j in jobs} == {"moco-v2-resnet50"} and {j.hparams["epochs"] for j in jobs} == {20}
    assert {j.hparams["epochs"] for j in get_suite("paper").expand(overrides={"epochs": 1}) if j.strategy != "lp"} == {1}
    assert len({j.id for j in get_suite("paper").expand()}) == 222  # every job is distinct
    with pytest.raises(UsageError, match="has no strategy"):
        get_suite("quickstart").expand(strategies=["nope"])


def test_dry_run_prints_the_paper_matrix_and_its_count(capsys):
    assert main(["run", "--suite", "kumar2022", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().endswith("222 jobs in suite paper")


def _record(job_id, strategy, seed, lr, final, benchmark="digits", status="done"):
    sets = {"id_val": "id", "id_test": "id", "rotated": "ood"}
    record = {"schema": "lpft-bench/record/v1", "job_id": job_id, "status": status,
              "job": {"benchmark": benchmark, "strategy": strategy, "seed": seed, "backbone": "b",
                      "hparams": {"lr": lr}, "benchmark_options": {}, "checkpoint": None}}
    if status == "done":
        record.update(eval_sets={k: {"split": v, "size": 10} for k, v in sets.items()},
                      selection={"set": "id_val", "phase": "ft", "epoch": 0},
                      final=dict(zip(sets, final)))
    else:
        record["error"] = "RuntimeError: boom"
    return record


def _synthetic_store(root: Path) -> Path:
    records = [
        # ft: lr 1e-3 wins on ID validation (mean 0.9 vs 0.8), so its test and OOD numbers are reported.
        _record("a0", "ft", 0, 1e-3, (0.9, 0.8, 0.5)),
        _record("a1", "ft", 1, 1e-3, (0.9, 0.9, 0.6)),
        _record("b0", "ft", 0, 1e-2, (0.8, 0.99, 0.99)),
        _record("b1", "ft", 1, 1e-2, (0.8, 0.99, 0.99)),
        _record("c0", "lp", 0, 0.0, (0.7, 0.7, 0.7)),
        _record("c1", "lp", 1, 0.0, (0.8, 0.8, 0.6)),
        # lp on a second benchmark only: the ft cell there is missing.
        _record("d0", "lp", 0, 0.0, (0.5, 0.4, 0.3), benchmark="other"),
        _record("e0", "ft", 2, 1e-3, None, status="failed"),
    ]
    for record in records:
        write_json(root / "jobs" / record["job_id"] / "record.json", record)
    return root


def test_collect_selects_on_id_validation_and_matches_the_golden_tables(tmp_path):
    store = _synthetic_store(tmp_path / "store")
    printed = collect(store)
    for name in ("id.csv", "ood.csv"):
        assert (store / name).read_text() == (GOLDEN / f"collect_{name}").read_text(), name
    runs = pd.read_csv(store / "runs.csv")
    assert len(runs) == 7 * 3 and not runs.duplicated(["job_id", "eval_set"]).any()
    assert "1 failed job(s): e0" in printed
    ood = pd.read_csv(store / "ood.csv", index_col="strategy")
    assert ood.loc["ft", "digits:rotated"] == pytest.approx(55.0)  # lr 1e-3, not the OOD-better 1e-2
    assert pd.isna(ood.loc["ft", "other:rotated"])
    assert (store / "summary.md").read_text().startswith("# Results of store")
    assert (store / "vs_paper.csv").exists()


@pytest.mark.slow
def test_pool_launcher_runs_jobs_in_two_cpu_slots(tmp_path):
    jobs = [Job("digits", "lp", seed) for seed in (0, 1, 2)]
    ctx = RunContext(out=tmp_path, accelerator="cpu")
    result = run_matrix(jobs, ctx, launcher="pool", slots=2, progress=False)
    assert (result.done, result.failed) == (3, 0)
    assert all(ctx.store.is_done(job.id) for job in jobs)
    assert all((ctx.job_dir(job) / "worker.log").exists() for job in jobs)


@pytest.mark.slow
def test_slurm_launcher_through_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit")
    job = Job("digits", "lp", seed=0)
    ctx = RunContext(out=tmp_path, accelerator="cpu")
    result = run_matrix([job], ctx, launcher="slurm", slurm={"cluster": "local", "timeout_min": 10}, progress=False)
    assert (result.done, result.failed) == (1, 0)
    assert ctx.store.is_done(job.id)
    assert list((tmp_path / "slurm").glob("*_log.out"))


def test_a_job_held_by_another_runner_is_neither_run_nor_counted_done(tmp_path):
    job = Job("digits", "lp", seed=0)
    ctx = RunContext(out=tmp_path, accelerator="cpu")
    with ctx.store.job_lock(job.id) as acquired:
        assert acquired
        assert store_status(tmp_path, [job])["running"] == 1
        result = run_matrix([job], ctx, progress=False)
    assert (result.busy, result.done) == (1, 0) and not ctx.store.is_done(job.id)
    counts = store_status(tmp_path, [job, Job("digits", "lp", seed=1)])
    assert {k: counts[k] for k in ("done", "running", "failed", "pending", "total")} == {
        "done": 0, "running": 0, "failed": 0, "pending": 2, "total": 2}


def test_a_failing_job_is_recorded_and_the_matrix_goes_on(tmp_path, capsys):
    good, bad = Job("digits", "lp", seed=0), Job("digits", "ft", seed=0, hparams={"head": "nonsense"})
    ctx = RunContext(out=tmp_path, accelerator="cpu")
    result = run_matrix([bad, good], ctx, progress=False)
    assert (result.failed, result.done) == (1, 1)
    failure = json.loads((ctx.job_dir(bad) / "record.json").read_text())
    assert failure["status"] == "failed" and "unknown head 'nonsense'" in failure["error"]
    assert store_status(tmp_path, [good, bad])["failed"] == 1


def test_collect_on_a_path_that_is_no_store_says_what_it_expected(tmp_path, capsys):
    assert main(["collect", "--out", str(tmp_path / "nowhere")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_missing_data_stops_a_run_before_training_with_the_expected_layout(tmp_path, capsys):
    code = main(["run", "--suite", "paper", "--benchmarks", "cifar10", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing was run" in err and str(tmp_path / "cifar-10-batches-py") in err
    assert not (tmp_path / "o" / "jobs").exists()
