"""What a run writes: per epoch only the selection set is evaluated (every set behind a recording option that
changes no result and no job id), and the bytes a run writes stay within a small multiple of the store it leaves."""
import json
from pathlib import Path

import pytest

from lpft_bench.cli_parser import CHECKPOINT_EVERY_MINUTES
from lpft_bench.engine import Job, RunContext, run_job
from lpft_bench.engine.retention import DEFAULT_POLICY, apply_policy, weights_written
from lpft_bench.runner import run_matrix
from lpft_bench.suites import SUITES

PROC_IO = Path("/proc/self/io")


def _bytes_written() -> int:
    """Bytes this process has passed to write() so far (files, and pytest's captured output)."""
    fields = dict(line.split(": ") for line in PROC_IO.read_text().splitlines())
    return int(fields["wchar"])


def _record(ctx: RunContext, job: Job) -> dict:
    return json.loads((ctx.job_dir(job) / "record.json").read_text())


def _size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


@pytest.mark.slow
@pytest.mark.skipif(not PROC_IO.exists(), reason="counts write() bytes with Linux's /proc/self/io")
def test_a_small_suite_writes_at_most_three_times_the_store_it_leaves(tmp_path):
    """The quickstart's strategies on digits for three epochs, seed 0, as `lpft-bench run` runs them (resume
    checkpoints every ten minutes: none in phases this short; the default keep-weights policy, which keeps no
    weights here, applied when the matrix is done), every set's features once."""
    jobs = SUITES["quickstart"].expand(seeds=[0], overrides={"epochs": 3})
    assert {job.strategy for job in jobs} == {"scratch", "lp", "ft", "lp-ft"}
    jobs.sort(key=lambda job: job.strategy not in ("scratch", "ft"))  # before the probe fills the feature cache
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu", checkpoint_every_minutes=CHECKPOINT_EVERY_MINUTES,
                     weights_written=weights_written(jobs, DEFAULT_POLICY))
    before = _bytes_written()
    run_matrix(jobs, ctx, progress=False)
    apply_policy(ctx.store, jobs, DEFAULT_POLICY)
    written = _bytes_written() - before
    store = _size(ctx.out)
    assert len(list((ctx.out / "jobs").glob("*/record.json"))) == len(jobs)
    assert written <= 3 * store, f"wrote {written:,} bytes for a store of {store:,}"
    # z_0 comes from the probe's feature cache, which scratch (a random backbone: its z_0 in NHWC) must not fill
    # and ft (the pretrained one) must fill as the probe would, in NCHW: an NHWC forward differs in the last bits.
    (lp,) = [job for job in jobs if job.strategy == "lp"]
    alone = run_job(lp, RunContext(out=tmp_path / "lp-alone", accelerator="cpu"))
    assert _record(ctx, lp)["final"] == alone["final"]
    cached = sorted((tmp_path / "lp-alone" / "features").glob("*.npz"))
    assert cached and all(path.read_bytes() == (ctx.out / "features" / path.name).read_bytes() for path in cached)


def test_per_epoch_rows_hold_the_selection_set_unless_every_set_is_asked_for(tmp_path):
    """The reported cells are the same either way: the final pass on the selected epoch's weights gives what the
    validation loop gives at that epoch."""
    job = Job("digits", "ft", seed=0, hparams={"epochs": 2, "lr": 0.03}, benchmark_options={"subset": 60})
    lean = run_job(job, RunContext(out=tmp_path / "lean", accelerator="cpu"))
    every = run_job(job, RunContext(out=tmp_path / "every", accelerator="cpu", eval_every_epoch=True))
    sets = set(lean["eval_sets"])
    assert len(sets) > 1
    for row in lean["phases"][0]["epochs"]:
        assert {k for k in row if k.startswith("acc/")} == {"acc/id_val"}
    for row in every["phases"][0]["epochs"]:
        assert {k for k in row if k.startswith("acc/")} == {f"acc/{name}" for name in sets}
    assert lean["final"] == every["final"] and set(lean["final"]) == sets
    assert lean["calibration"] == every["calibration"]
    assert lean["selection"] == every["selection"]
    assert lean["phases"][0]["feature_change"] == every["phases"][0]["feature_change"]


def test_checkpoint_every_minutes_takes_a_number_of_minutes(capsys):
    from lpft_bench.cli import main

    assert main(["run", "--checkpoint-every-minutes", "-1", "--dry-run"]) == 2
    assert "expected a number of minutes, e.g. 30 (0: every epoch)" in capsys.readouterr().err
