"""The shipped digits backbones: pinned by digest, refused when altered, in the wheel, and their recipe
reruns deterministically (`lpft-bench pretrain digits`)."""
import dataclasses
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lpft_bench.cli import main
from lpft_bench.models import BACKBONES, build_backbone, weights
from lpft_bench.models.digits_pretraining import DIGITS_PRETRAINING, SHIPPED_DIR, pretrain_digits
from lpft_bench.storage import file_digest

REPO = Path(__file__).resolve().parents[1]
DIGITS = ("digits-resnet", "digits-mlp")


@pytest.mark.parametrize("name", DIGITS)
def test_shipped_weights_match_their_pinned_digest_which_is_their_meaning(name):
    spec = BACKBONES[name]
    recipe = DIGITS_PRETRAINING[spec.weights]
    assert file_digest(SHIPPED_DIR / recipe.file) == recipe.sha256
    assert spec.meaning()["weights"] == f"{spec.weights}@sha256:{recipe.sha256}"
    model, _ = build_backbone(spec)
    shipped = load_file(str(SHIPPED_DIR / recipe.file))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in shipped.items())


def test_an_altered_shipped_file_is_refused(tmp_path, monkeypatch):
    recipe = DIGITS_PRETRAINING[BACKBONES["digits-mlp"].weights]
    altered = bytearray((SHIPPED_DIR / recipe.file).read_bytes())
    altered[-1] ^= 1
    (tmp_path / recipe.file).write_bytes(bytes(altered))
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    with pytest.raises(ValueError, match="altered"):
        build_backbone(BACKBONES["digits-mlp"])


def _short_recipe(monkeypatch, sha256: str = "0" * 64):
    """The MLP's recipe cut to two epochs, so that a test reruns it in seconds."""
    key = BACKBONES["digits-mlp"].weights
    monkeypatch.setitem(DIGITS_PRETRAINING, key, dataclasses.replace(DIGITS_PRETRAINING[key], epochs=2, sha256=sha256))


def test_pretraining_ignores_the_global_generator_and_thread_count(monkeypatch):
    _short_recipe(monkeypatch)
    threads = torch.get_num_threads()
    torch.manual_seed(1)
    first = pretrain_digits(BACKBONES["digits-mlp"])
    torch.manual_seed(2)
    torch.set_num_threads(max(2, threads))
    second = pretrain_digits(BACKBONES["digits-mlp"])
    torch.set_num_threads(threads)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == threads


def test_pretrain_verb_says_whether_it_reproduced_the_shipped_digest(tmp_path, monkeypatch, capsys):
    _short_recipe(monkeypatch)
    arguments = ["pretrain", "digits", "--backbones", "digits-mlp", "--out", str(tmp_path)]
    assert main(arguments) == 1
    assert "differs from the shipped sha256 " + "0" * 64 in capsys.readouterr().out
    _short_recipe(monkeypatch, sha256=file_digest(tmp_path / "digits-mlp.safetensors"))
    assert main(arguments) == 0
    assert "reproduced the shipped weights" in capsys.readouterr().out


@pytest.mark.slow
def test_a_non_editable_wheel_contains_the_shipped_weights(tmp_path):
    source = tmp_path / "source"  # a copy: building in the working tree would write build/ into it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("benchmark", "datamodules", "strategies"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("lpft_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in DIGITS_PRETRAINING.values():
        assert f"lpft_bench/models/weights/{recipe.file}" in names
