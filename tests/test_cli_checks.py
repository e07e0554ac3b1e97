"""Usage errors before anything trains (one line, exit 2), status of a store, device division, head sizes."""
import os

import numpy as np
import pytest
import timm
import torch
import yaml

from lpft_bench.cli import main
from lpft_bench.datamodules import build_datamodule
from lpft_bench.datamodules.fakes import write_images
from lpft_bench.engine import Job, RunContext
from lpft_bench.errors import UsageError
from lpft_bench.models import Classifier
from lpft_bench.runner import _gpu_slots, write_matrix
from lpft_bench.slurm import parse_options


@pytest.mark.parametrize("argument", [["--epochs", "0"], ["--epochs", "-1"], ["--subset", "0"], ["--seeds", "-5"]])
def test_bad_numbers_stop_the_run_with_one_line_before_anything_is_written(tmp_path, capsys, argument):
    assert main(["run", *argument, "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argument[0] in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_an_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["run", "--out", str(tmp_path / "file" / "store")]) == 2
    assert main(["run", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_out_inside_a_read_only_directory_is_a_usage_error(tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        assert main(["run", "--out", str(tmp_path / "store")]) == 2
    finally:
        tmp_path.chmod(0o700)
    assert "not a directory this user can write" in capsys.readouterr().err


def test_a_folder_dataset_with_one_class_is_a_one_line_usage_error_before_anything_trains(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for directory in ("train", "test"):
        write_images(tmp_path / "data" / directory / "cat", 2, rng, ".png")
    config = {"name": "one-class", "seeds": [0], "strategies": {"lp": {}},
              "benchmarks": {"cats": {"benchmark": "folder", "options": {"train": "data/train", "id_eval": "data/test"}}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 class folder(s) ['cat']" in err and "at least two" in err
    assert not (tmp_path / "store").exists()
    # Built directly (the Python API), the datamodule refuses it the same way when it discovers its classes.
    dm = build_datamodule("folder", train=str(tmp_path / "data" / "train"), id_eval=str(tmp_path / "data" / "test"))
    with pytest.raises(UsageError, match="at least two"):
        dm.class_names  # noqa: B018


def test_status_of_a_path_that_is_no_store_exits_2(tmp_path, capsys):
    assert main(["status", "--out", str(tmp_path / "nowhere")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_status_without_a_suite_counts_the_matrix_jobs_not_started_yet(tmp_path, capsys):
    jobs = [Job("digits", "lp", seed) for seed in (0, 1, 2)]
    write_matrix(RunContext(out=tmp_path), jobs)
    assert main(["status", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("0 done, 0 running, 0 failed, 3 pending of 3")


def test_the_pool_divides_the_devices_it_inherits(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    slots = _gpu_slots(2, 2)
    assert [slots.get(), slots.get()] == ["4,5", "6,7"]
    with pytest.raises(UsageError, match="gives this run 4"):
        _gpu_slots(3, 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _gpu_slots(2, 1).get() == "0"


def test_a_backbone_whose_classifier_input_is_not_num_features_gets_a_head_of_the_right_size():
    backbone = timm.create_model("mobilenetv3_small_050", num_classes=0)
    assert backbone.head_hidden_size != backbone.num_features
    model = Classifier(backbone, 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_slurm_options_take_short_names_numbers_and_any_submitit_parameter():
    assert parse_options(["time=90", "mem=7.5", "account=lab", "qos=high", "array_parallelism=8", "slurm_exclude=n1"]) == {
        "timeout_min": 90, "mem_gb": 7.5, "slurm_account": "lab", "slurm_qos": "high",
        "slurm_array_parallelism": 8, "slurm_exclude": "n1"}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_options(["time"])
