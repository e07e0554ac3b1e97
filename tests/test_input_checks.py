"""Issue 24: an experiment file from someone else cannot write outside the results folder, a weights file that is
no weights file (or does not fit) is refused before any job, and hyperparameters out of bounds are refused at the
checks: each one line, exit 2."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file

from lpft_bench.checks import check_name, inside
from lpft_bench.cli import main
from lpft_bench.datamodules.fakes import write_images
from lpft_bench.errors import UsageError
from lpft_bench.models import read_state_dict

SMALL_NET = {"name": "timm:resnet10t", "random": True, "data_config": {"input_size": [3, 32, 32]}}


def tree(root: Path) -> list[str]:
    """Every path under `root`, relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def write_folders(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test", "blur"):
        for label in ("cat", "dog"):
            write_images(root / "data" / split / label, per_class, rng, ".png")
    return root / "data"


def experiment(path: Path, name="my-shift", label="pets", strategy_label="lp", ood="blur", backbone=None,
               strategy=None, common=None) -> Path:
    options = {"train": "data/train", "id_eval": "data/test", "ood": {ood: "data/blur"}}
    config = {"name": name, "seeds": [0],
              "benchmarks": {label: {"benchmark": "folder", "options": options, "backbone": backbone or SMALL_NET,
                                     **({"common": common} if common else {})}},
              "strategies": {strategy_label: strategy or {}}}
    path.write_text(yaml.safe_dump(config))
    return path


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("field", ["name", "label", "strategy_label", "ood"])
@pytest.mark.parametrize("bad", ["../../escape", "..", "a/b"])
def test_a_name_that_is_a_path_is_refused_and_nothing_is_written_anywhere(tmp_path, monkeypatch, capsys, field, bad):
    work = tmp_path / "outer" / "work"
    work.mkdir(parents=True)
    write_folders(work)
    overrides = {field: bad, **({"strategy": {"strategy": "lp"}} if field == "strategy_label" else {})}
    config = experiment(work / "c.yaml", **overrides)
    monkeypatch.chdir(work)  # no --out: the store would be results/<name>, the name here
    before = tree(tmp_path)
    assert main(["run", "--config", str(config)]) == 2
    err = one_line(capsys)
    assert "is not a name" in err and repr(bad) in err
    assert tree(tmp_path) == before


def test_the_name_rule_and_the_store_bound():
    for good in ("my-shift", "r50_96", "v1.2", "CIFAR-10"):
        assert check_name(good, "name") == good
    for bad in (".", "..", "", "a b", "x/y", "../x", "é"):
        with pytest.raises(UsageError, match="is not a name"):
            check_name(bad, "name")


def test_every_path_the_store_builds_stays_inside_it(tmp_path):
    from lpft_bench.engine.store import Store

    assert inside(tmp_path, tmp_path / "jobs" / "abc") == tmp_path / "jobs" / "abc"
    with pytest.raises(UsageError, match="leaves the results store"):
        Store(tmp_path).phase_dir("../../x")
    with pytest.raises(UsageError, match="leaves the results store"):
        Store(tmp_path).features_path("folder", "x/../../../../y", "k")
    (tmp_path / "link").symlink_to(tmp_path.parent)  # resolved before compared: a link out is out
    with pytest.raises(UsageError, match="leaves the results store"):
        inside(tmp_path, tmp_path / "link" / "x")


class Payload:
    """Unpickling this runs code: it creates the marker folder."""

    marker = ""

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _timm_backbone(weights: Path) -> dict:
    return {"name": "timm:resnet10t", "weights": str(weights), "data_config": {"input_size": [3, 32, 32]}}


def test_a_pickle_with_a_payload_is_refused_before_training_and_never_runs(tmp_path, monkeypatch, capsys):
    write_folders(tmp_path)
    Payload.marker = str(tmp_path / "payload-ran")
    for path in (tmp_path / "evil.pt", tmp_path / "evil.pkl"):  # torch's zip format, and a bare pickle
        if path.suffix == ".pt":
            torch.save({"conv1.weight": Payload()}, path)
        else:
            path.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
        config = experiment(tmp_path / "c.yaml", backbone=_timm_backbone(path))
        assert main(["run", "--config", str(config), "--out", str(tmp_path / "store")]) == 2
        err = one_line(capsys)
        assert "not a weights file" in err and "convert it to safetensors" in err and "weights_only" not in err
        assert not (tmp_path / "payload-ran").exists() and not (tmp_path / "store").exists()
        # Read at run time (the Python API), the same refusal, with torch's advice dropped from the chain.
        with pytest.raises(UsageError, match="not a weights file") as refused:
            read_state_dict(path)
        assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert not (tmp_path / "payload-ran").exists()


def test_a_torch_file_of_something_else_than_tensors_is_not_a_weights_file(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 5)
    for name in ("list.pt", "garbage.safetensors"):
        with pytest.raises(UsageError, match="not a weights file"):
            read_state_dict(tmp_path / name)


def test_a_tensor_of_another_shape_is_refused_naming_it(tmp_path, capsys):
    write_folders(tmp_path)
    state = timm.create_model("resnet10t", num_classes=0).state_dict()
    first = next(iter(state))
    state[first] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "other.safetensors"))
    config = experiment(tmp_path / "c.yaml", backbone=_timm_backbone(tmp_path / "other.safetensors"))
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "store")]) == 2
    err = one_line(capsys)
    assert "do not fit resnet10t" in err and first in err and not (tmp_path / "store").exists()


def test_a_state_dict_that_does_not_fit_the_architecture_names_its_keys(tmp_path, capsys):
    write_folders(tmp_path)
    state = timm.create_model("resnet10t", num_classes=0).state_dict()
    first = next(iter(state))
    state["renamed.weight"] = state.pop(first)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "other.safetensors"))
    config = experiment(tmp_path / "c.yaml", backbone=_timm_backbone(tmp_path / "other.safetensors"))
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "store")]) == 2
    err = one_line(capsys)
    assert "do not fit resnet10t" in err and f"missing from the checkpoint: {first}" in err
    assert "checkpoint tensors the model does not use: renamed.weight" in err
    assert not (tmp_path / "store").exists()


def test_a_state_dict_that_fits_passes_the_checks(tmp_path, capsys):
    write_folders(tmp_path)
    state = timm.create_model("resnet10t", num_classes=0).state_dict()
    torch.save({"state_dict": state}, tmp_path / "fits.pt")
    config = experiment(tmp_path / "c.yaml", backbone=_timm_backbone(tmp_path / "fits.pt"))
    assert main(["run", "--config", str(config), "--dry-run"]) == 0
    assert "1 jobs in suite my-shift" in capsys.readouterr().out


@pytest.mark.parametrize("value, bound", [("100000000", "at most the training set size"),
                                          ("0", "an integer >= 1"), ("2.5", "an integer >= 1")])
def test_an_out_of_range_batch_size_is_refused_at_the_checks(tmp_path, capsys, value, bound):
    for extra in (["--dry-run"], ["--out", str(tmp_path / "store")]):
        assert main(["run", "--strategies", "ft", "--set", f"batch_size={value}", *extra]) == 2
        err = one_line(capsys)
        assert f"batch_size={value}" in err and bound in err
    assert not (tmp_path / "store").exists()


def test_a_batch_size_above_a_folder_training_set_names_its_size(tmp_path, capsys):
    write_folders(tmp_path, per_class=3)  # 6 training images
    config = experiment(tmp_path / "c.yaml", strategy_label="ft", common={"batch_size": 7})
    assert main(["run", "--config", str(config), "--dry-run"]) == 2
    assert "batch_size=7, expected at most the training set size 6" in one_line(capsys)
    config = experiment(tmp_path / "c.yaml", strategy_label="ft", common={"batch_size": 6})
    assert main(["run", "--config", str(config), "--dry-run"]) == 0


@pytest.mark.parametrize("setting, expected", [("lr=-0.1", "lr=-0.1, expected a finite number > 0"),
                                               ("lr=.nan", "expected a finite number > 0"),
                                               ("epochs=0", "epochs=0, expected an integer >= 1"),
                                               ("epochs=2.5", "epochs=2.5, expected an integer >= 1"),
                                               ("hp_smoothing=1.5", "expected a finite number >= 0 and < 1")])
def test_hyperparameters_out_of_bounds_are_refused_with_the_bound(capsys, setting, expected):
    assert main(["run", "--set", setting, "--dry-run"]) == 2
    err = one_line(capsys)
    assert "--set" in err and expected in err


def test_a_checkpoint_flag_naming_a_pickle_is_refused_the_same_way(tmp_path, capsys):
    Payload.marker = str(tmp_path / "payload-ran")
    torch.save({"conv1.weight": Payload()}, tmp_path / "evil.pt")
    assert main(["run", "--backbone", "timm:resnet10t", "--checkpoint", str(tmp_path / "evil.pt"),
                 "--strategies", "lp", "--out", str(tmp_path / "store")]) == 2
    err = one_line(capsys)
    assert "not a weights file" in err and "weights_only" not in err
    assert not (tmp_path / "payload-ran").exists() and not (tmp_path / "store").exists()
