"""The slurm launcher through submitit's local executor: arrays, submit-and-exit then status, a duplicate
submission that runs nothing twice, and a preemption/timeout signal that requeues and resumes."""
import json
import os

import pytest
import submitit

from lpft_bench.cli import main
from lpft_bench.engine import Job, RunContext, run_job
from lpft_bench.faults import FAULT_ENV, LOG_ENV
from lpft_bench.runner import store_status
from lpft_bench.slurm import SUBMISSION, Worker

TINY = {"subset": 60}
SUBMIT = ["run", "--strategies", "lp", "--seeds", "0", "1", "--subset", "60", "--launcher", "slurm",
          "--slurm-cluster", "local", "--slurm-option", "time=20"]


def _wait_for(out):
    """Wait for the local executor's controllers (children of this process) that the store recorded."""
    for note in (out / "jobs").glob(f"*/{SUBMISSION}"):
        try:
            os.waitpid(int(json.loads(note.read_text())["job_id"]), 0)
        except ChildProcessError:  # already reaped
            pass


@pytest.mark.slow
def test_submit_and_exit_then_status_and_a_duplicate_submission_runs_nothing_twice(tmp_path, capsys):
    out = tmp_path / "store"
    assert main([*SUBMIT, "--out", str(out)]) == 0
    assert "submitted 2 jobs" in capsys.readouterr().out
    counts = store_status(out)
    assert counts["queued"] + counts["running"] + counts["done"] == 2 == counts["total"]
    assert main([*SUBMIT, "--out", str(out)]) == 0  # the same matrix again, while it is queued or running
    assert "submitted 0 jobs" in capsys.readouterr().out
    _wait_for(out)
    assert store_status(out)["done"] == 2
    done_at = {p.parent.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*/done")}
    assert main([*SUBMIT, "--out", str(out)]) == 0
    assert "submitted 0 jobs (2 already done" in capsys.readouterr().out
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*/done")} == done_at


@pytest.mark.slow
def test_two_tasks_of_one_job_run_it_once(tmp_path):
    job, ctx = Job("digits", "lp", seed=0, benchmark_options=TINY), RunContext(out=tmp_path, accelerator="cpu")
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="local")
    executor.update_parameters(timeout_min=20)
    tasks = executor.map_array(Worker(), [job.to_dict()] * 2, [ctx.to_dict()] * 2)
    assert sorted(task.result() for task in tasks) in (["busy", "done"], ["done", "skipped"])
    assert ctx.store.load_record(job.id)["status"] == "done"


@pytest.mark.slow
def test_a_preempted_or_timed_out_task_is_requeued_and_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    job = Job("digits", "ft", seed=0, hparams={"epochs": 2}, benchmark_options=TINY)
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu")
    log = tmp_path / "fault.log"
    # The signal SLURM sends before a timeout (and on preemption), right after FT's first epoch checkpoint.
    monkeypatch.setenv(FAULT_ENV, f"{submitit.JobEnvironment._usr_sig().name}@1:epoch 0-ft")
    monkeypatch.setenv(LOG_ENV, str(log))
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="local")
    executor.update_parameters(timeout_min=20)
    (task,) = executor.map_array(Worker(), [job.to_dict()], [ctx.to_dict()])
    assert task.result() == "done"
    assert log.read_text().count("\t") == 1  # it fired once; the requeued task ran on past it
    assert "Requeued" in task.stderr() + task.stdout()
    monkeypatch.delenv(FAULT_ENV)
    resumed = ctx.store.load_record(job.id)
    clean = run_job(job, RunContext(out=tmp_path / "clean", accelerator="cpu"))
    assert [row["epoch"] for row in resumed["phases"][0]["epochs"]] == [0, 1]
    assert resumed["final"] == pytest.approx(clean["final"], abs=1e-6)
