"""Nothing blocks a store: unreadable records, stray markers, truncated phase results and checkpoints, NaN losses,
and the per-epoch resume checkpoint's contract. Faults are injected at named points (lpft_bench.faults)."""
import dataclasses
import json
from pathlib import Path
import signal
import stat

import pandas as pd
import pytest
import torch

from lpft_bench.analysis.tables import collect
from lpft_bench.cli import main
from lpft_bench.engine import Job, RunContext, phase_key, run_job
from lpft_bench.faults import FAULT_ENV
from lpft_bench.runner import run_matrix, store_status
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.kinds import select_epoch

TINY = {"subset": 60}


class Stop(Exception):
    """Raised by a test's signal handler at a fault point: the run stops there, in this process."""


def _ctx(tmp_path):
    return RunContext(out=tmp_path / "store", accelerator="cpu")


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_select_epoch_never_picks_a_diverged_epoch():
    rows = [{"epoch": 0, "acc/v": 0.5}, {"epoch": 1, "acc/v": 0.9, "diverged": True}]
    assert select_epoch(rows, "v")["epoch"] == 0
    assert select_epoch(rows[1:], "v") is None


def test_a_nan_loss_ends_the_phase_early_and_the_job_is_done_without_nan(tmp_path):
    ctx = _ctx(tmp_path)
    job = Job("digits", "ft", seed=0, hparams={"epochs": 5, "lr": 1e6}, benchmark_options=TINY)
    run_job(job, ctx)
    record = _strict_json(ctx.job_dir(job) / "record.json")
    (ft,) = record["phases"]
    assert record["status"] == "done" and ctx.store.is_done(job.id)
    assert record["diverged"] == ["ft"] and "calibration" not in record
    assert ft["epochs"][-1]["diverged"] and len(ft["epochs"]) == ft["diverged_epoch"] + 1 < 5  # stopped early
    assert ft["epochs"][-1]["train/loss"] is None  # logged at the batch that stopped the fit, not finite
    assert record["selection"]["epoch"] != ft["diverged_epoch"]
    collect(ctx.out)
    runs = pd.read_csv(ctx.out / "runs.csv")
    assert not runs["acc"].isna().any()


def test_unreadable_records_and_stray_done_markers_block_only_their_own_job(tmp_path, capsys):
    ctx = _ctx(tmp_path)
    garbled, stray, fine = (Job("digits", "lp", seed, benchmark_options=TINY) for seed in (0, 1, 2))
    run_matrix([garbled, stray, fine], ctx, progress=False)
    (ctx.job_dir(garbled) / "record.json").write_text('{"job_id": "\x01 not json')
    (ctx.job_dir(stray) / "record.json").unlink()

    counts = store_status(ctx.out)
    assert (counts["done"], counts["corrupt"], counts["total"]) == (1, 2, 3)
    assert any("record.json" in problem for problem in counts["problems"])
    assert any("done marker without" in problem for problem in counts["problems"])
    capsys.readouterr()
    assert main(["collect", "--out", str(ctx.out)]) == 0  # the other jobs are still tabulated
    assert f"skipped {ctx.job_dir(garbled) / 'record.json'}" in capsys.readouterr().err
    assert set(pd.read_csv(ctx.out / "runs.csv")["job_id"]) == {fine.id}

    result = run_matrix([garbled, stray, fine], ctx, progress=False)
    assert (result.done, result.skipped, result.failed) == (2, 1, 0)
    assert (ctx.job_dir(garbled) / "record.json.corrupt-1").read_text().startswith('{"job_id"')  # kept, not deleted
    assert store_status(ctx.out)["done"] == 3
    mode = (ctx.job_dir(fine) / "record.json").stat().st_mode
    assert mode & stat.S_IRGRP  # readable by the user's group, not mkstemp's 0600


@pytest.mark.parametrize("damaged", ["head.safetensors", "rng.pt"])  # the probe keeps its head alone
def test_a_truncated_phase_result_is_set_aside_and_recomputed(tmp_path, capsys, damaged):
    ctx = _ctx(tmp_path)
    lp = Job("digits", "lp", seed=0, benchmark_options=TINY)
    first = run_job(lp, ctx)
    key = phase_key(lp, get_strategy("lp").phases(), 0)
    path = ctx.store.phase_dir(key) / damaged
    path.write_bytes(path.read_bytes()[:100])  # what a full disk leaves
    again = run_job(lp, ctx)
    assert "reused" not in again["phases"][0]
    assert again["final"] == first["final"]
    assert str(ctx.store.phase_dir(key)) in capsys.readouterr().err
    assert (ctx.store.phase_dir(key).parent / f"{key}.corrupt-1" / damaged).exists()


def _stop_at(monkeypatch, spec):
    """Stop this process's run at the fault point `spec` names (SIGUSR1 -> Stop)."""
    def handler(signum, frame):
        raise Stop(spec)

    previous = signal.signal(signal.SIGUSR1, handler)
    monkeypatch.setenv(FAULT_ENV, f"SIGUSR1@{spec}")
    return previous


def _stopped_after_epoch_1(ctx, monkeypatch, seed: int) -> tuple[Job, Path]:
    """An FT job of 3 epochs stopped right after its epoch 1 ended: the job and its resume checkpoint's path.
    Each test takes its own seed: a phase key of its own (fault points count their passes per process)."""
    job = Job("digits", "ft", seed=seed, hparams={"epochs": 3}, benchmark_options=TINY)
    key = phase_key(job, get_strategy("ft").phases({"epochs": 3}), 0)
    previous = _stop_at(monkeypatch, f"2:epoch {key}")
    try:
        with pytest.raises(Stop):
            run_job(job, ctx)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    monkeypatch.delenv(FAULT_ENV)
    return job, ctx.job_dir(job) / "checkpoints" / key / "last.ckpt"


def test_every_epoch_ends_with_an_atomic_resume_checkpoint_that_resumes_exactly(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path)
    job, last = _stopped_after_epoch_1(ctx, monkeypatch, seed=0)  # right after epoch 1's checkpoint
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1
    (recorded,) = [state["epochs"] for name, state in checkpoint["callbacks"].items() if "EpochRecorder" in name]
    assert [row["epoch"] for row in recorded] == [0, 1]
    assert not list(last.parent.glob(".*partial"))  # written beside, then renamed into place
    # What a resume needs and nothing more: no diagnostics tensors (z_0 is the probe's cached features).
    (diagnostics,) = [state for name, state in checkpoint["callbacks"].items() if "FinetuneDiagnostics" in name]
    assert set(diagnostics) == {"start"} and not any(isinstance(v, torch.Tensor) for v in diagnostics["start"].values())
    (rng,) = [state["rng"] for name, state in checkpoint["callbacks"].items() if "EpochCheckpoint" in name]
    assert {"torch", "python", "numpy"} <= set(rng)

    resumed = run_job(job, ctx)
    clean = run_job(job, RunContext(out=tmp_path / "clean", accelerator="cpu"))
    assert [row["epoch"] for row in resumed["phases"][0]["epochs"]] == [0, 1, 2]
    for row, reference in zip(resumed["phases"][0]["epochs"], clean["phases"][0]["epochs"]):
        assert row["acc/id_val"] == pytest.approx(reference["acc/id_val"], abs=1e-6)
    assert not last.parent.exists()  # a finished phase lives in the phase store


def test_a_truncated_checkpoint_is_named_set_aside_and_the_phase_restarts(tmp_path, capsys):
    ctx = _ctx(tmp_path)
    job = Job("digits", "ft", seed=0, hparams={"epochs": 1}, benchmark_options=TINY)
    last = ctx.job_dir(job) / "checkpoints" / phase_key(job, get_strategy("ft").phases({"epochs": 1}), 0) / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 truncated")
    record = run_job(job, ctx)
    assert [row["epoch"] for row in record["phases"][0]["epochs"]] == [0]
    assert f"{last}: checkpoint unreadable" in capsys.readouterr().err


def test_checkpoints_every_n_minutes_skip_epochs_and_a_killed_phase_still_gives_the_same_cells(tmp_path, monkeypatch):
    ctx = dataclasses.replace(_ctx(tmp_path), checkpoint_every_minutes=60.0)
    job, last = _stopped_after_epoch_1(ctx, monkeypatch, seed=1)  # no hour has passed: no checkpoint
    assert not last.exists()

    resumed = run_job(job, ctx)
    clean = run_job(job, RunContext(out=tmp_path / "clean", accelerator="cpu"))
    assert [row["epoch"] for row in resumed["phases"][0]["epochs"]] == [0, 1, 2]
    assert resumed["final"] == clean["final"] and resumed["calibration"] == clean["calibration"]
