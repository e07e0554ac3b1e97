"""Lightning's loggers per phase: the CSV log always, the chosen one beside it, missing packages refused up front."""
import importlib.util

import pytest

from lpft_bench.cli import main
from lpft_bench.engine import Job, RunContext, run_job


def test_the_chosen_logger_writes_beside_the_csv_log(tmp_path):
    ctx = RunContext(out=tmp_path, accelerator="cpu", logger="tensorboard")
    job = Job("digits", "ft", 0, hparams={"epochs": 1}, benchmark_options={"subset": 60})
    run_job(job, ctx)
    (phase_log,) = (ctx.job_dir(job) / "logs").iterdir()
    assert (phase_log / "metrics.csv").is_file()
    assert list((ctx.job_dir(job) / "tensorboard" / phase_log.name).glob("events.out.tfevents.*"))


@pytest.mark.parametrize("name", ["wandb", "mlflow", "nope"])
def test_a_logger_that_cannot_run_is_refused_before_anything_trains(tmp_path, capsys, name):
    if name != "nope" and importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    assert main(["run", "--strategies", "lp", "--seeds", "0", "--logger", name, "--out", str(tmp_path / "s")]) == 2
    assert name in capsys.readouterr().err
    assert not (tmp_path / "s" / "jobs").exists()
