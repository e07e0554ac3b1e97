"""A real tiny matrix killed, signalled and resumed at deterministic fault points (lpft_bench.faults): the
resumed store must equal an uninterrupted one, with every job done exactly once."""
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lpft_bench.cli import main
from lpft_bench.engine.store import Store
from lpft_bench.faults import FAULT_ENV, LOG_ENV

# Every epoch its resume checkpoint, as a kill mid-phase is what these tests resume from.
ARGS = ["run", "--strategies", "lp", "lp-ft", "--seeds", "0", "--epochs", "2", "--subset", "60", "--set", "lr=0.001",
        "--checkpoint-every-minutes", "0"]
KEY = ["job_id", "eval_set"]


def _cli(args, out: Path, fault: str | None = None, log: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, LOG_ENV)}
    if fault:
        env.update({FAULT_ENV: fault, LOG_ENV: str(log)})
    return subprocess.run([sys.executable, "-m", "lpft_bench.cli", *args, "--out", str(out)], env=env,
                          capture_output=True, text=True)


def _done_times(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*/done")}


def _runs(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "runs.csv").sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_a_matrix_sigkilled_at_a_dozen_seeded_points_ends_equal_to_an_uninterrupted_run(tmp_path, clean, capsys):
    out, rng = tmp_path / "killed", random.Random(16)
    kills, reruns, landed, finished = 0, 0, [], {}
    duplicates = 0
    # First inside a phase save (lp's head), then at a job record's write (lp's: its rerun writes the phase's
    # weights and record.json, then the job's); then ten seeded moments among the first points of each rerun:
    # every run passes at least 7 (the matrix note, collect's tables), so each of these fires.
    specs = ["SIGKILL@1:write head.safetensors", "SIGKILL@2:write record.json",
             *(f"SIGKILL@{rng.randint(2, 6)}" for _ in range(10))]
    for attempt, spec in enumerate(specs):
        log = tmp_path / f"fault-{attempt}.log"
        completed = _cli(ARGS, out, spec, log)
        reruns += attempt > 0
        assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
        kills += 1
        landed.append(log.read_text().split("\t")[1].strip())
        now = _done_times(out)
        duplicates += sum(1 for job, mtime in finished.items() if now.get(job) != mtime)
        finished.update(now)
    assert _cli(ARGS, out).returncode == 0
    reruns += 1
    now = _done_times(out)
    duplicates += sum(1 for job, mtime in finished.items() if now.get(job) != mtime)
    jobs = len(list((clean / "jobs").glob("*/done")))
    lost = jobs - len(now)
    print(f"\nfault injection: kills={kills} reruns={reruns} jobs={jobs} duplicates={duplicates} lost={lost}")
    print("kill points: " + "; ".join(landed))
    assert (duplicates, lost) == (0, 0)
    assert all(Store(out).load_record(job)["status"] == "done" for job in now)
    assert landed[:2] == ["write head.safetensors", "write record.json"]
    pd.testing.assert_frame_equal(_runs(out), _runs(clean))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_epoch_stops_at_a_safe_point_and_the_resumed_records_equal_an_uninterrupted_run(
        tmp_path, clean, signum):
    out = tmp_path / "signalled"
    # The second training batch of lp-ft's FT phase (batch 1 of epoch 0 with --subset 60: one batch per epoch,
    # so epoch 1's batch): after one epoch checkpoint, inside the next epoch.
    completed = _cli(ARGS, out, f"{signal.Signals(signum).name}@2:batch 1-ft", tmp_path / "fault.log")
    assert completed.returncode == 128 + signum
    assert "Resume with: lpft-bench run" in completed.stderr and "Traceback" not in completed.stderr
    interrupted = [p.parent for p in (out / "jobs").glob("*/checkpoints/1-ft-*/last.ckpt")]
    assert len(interrupted) == 1
    job_dir = interrupted[0].parents[1]
    assert not (job_dir / "record.json").exists()  # neither failed nor half-written
    assert main([*ARGS, "--out", str(out)]) == 0
    resumed, reference = Store(out).load_record(job_dir.name), Store(clean).load_record(job_dir.name)
    assert resumed["final"] == reference["final"] and resumed["selection"] == reference["selection"]
    assert ([row["acc/id_val"] for row in resumed["phases"][-1]["epochs"]]
            == [row["acc/id_val"] for row in reference["phases"][-1]["epochs"]])
    pd.testing.assert_frame_equal(_runs(out), _runs(clean))
