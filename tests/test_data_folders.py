"""Image folders as users have them: symbolic links, bad files, changed data, odd names and full disks, each
refused or reported before anything trains (issues 23 and 25)."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import timm
import yaml
from PIL import Image
from safetensors.torch import save_file

from lpft_bench.cli import main
from lpft_bench.datamodules import imagecheck
from lpft_bench.errors import UsageError
from lpft_bench.datamodules.folder import FolderShift, folder_fingerprint
from lpft_bench.datamodules import walk
from lpft_bench.datamodules.walk import FolderLoop, walk_folder
from lpft_bench.engine.store import Store
from lpft_bench.experiments import load_experiment
from lpft_bench.preflight import JOB_OVERHEAD_BYTES, estimate_bytes

SMALL_NET = {"name": "timm:resnet10t", "random": True, "data_config": {"input_size": [3, 32, 32]}}
# The five kinds of file a scraped folder holds besides good images: four unreadable, one fine under a wrong name.
BAD = {"random.jpg": "not an image", "empty.jpg": "empty file", "truncated.jpg": "truncated", "notes.png": "not an image"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(imagecheck.CACHE_VARIABLE, str(tmp_path / "cache"))


def _image(rng: np.random.Generator, size: int = 32) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def write_folders(root: Path, images: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for index in range(images):
                _image(rng).save(root / split / label / f"{index}.jpg", quality=90)
    return root


def add_bad_files(folder: Path) -> None:
    rng = np.random.default_rng(1)
    (folder / "random.jpg").write_bytes(rng.bytes(3000))
    (folder / "empty.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    _image(rng, 64).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    png = io.BytesIO()
    _image(rng).save(png, "PNG")
    (folder / "png-named.jpg").write_bytes(png.getvalue())
    (folder / "notes.png").write_text("not an image, whatever its name says\n")


def write_config(path: Path, data: Path, backbone: dict | None = None, **options) -> Path:
    config = {"name": "folders", "seeds": [0],
              "benchmarks": {"mine": {"benchmark": "folder", "backbone": backbone or SMALL_NET,
                                      "options": {"train": os.fsdecode(data / "train"),
                                                  "id_eval": os.fsdecode(data / "test"), **options},
                                      "common": {"epochs": 1, "batch_size": 8}}},
              "strategies": {"lp": {}}}
    # Surrogate escapes: a folder name that is not valid UTF-8 is written as the bytes it has on disk.
    path.write_bytes(yaml.safe_dump(config, allow_unicode=True).encode("utf-8", "surrogateescape"))
    return path


def test_a_symlink_loop_is_refused_in_one_line_before_any_job(tmp_path):
    data = write_folders(tmp_path / "data")
    (data / "train" / "cat" / "loop").symlink_to("..")
    config = write_config(tmp_path / "exp.yaml", data)
    # Its own process, with a timeout as a safety net: the walk this replaced never ended and filled memory.
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "lpft_bench.cli", "run", "--config", str(config), "--out", str(store)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpft-bench: "), done.stderr
    assert f"{data / 'train' / 'cat' / 'loop'}: the same folder as {data / 'train'}" in lines[0]
    assert "symbolic link loop" in lines[0] and not store.exists()


def test_the_loader_walks_the_same_way_and_refuses_the_loop(tmp_path):
    data = write_folders(tmp_path / "data")
    (data / "train" / "dog" / "up").symlink_to("..")
    module = FolderShift(train=str(data / "train"), id_eval=str(data / "test"))
    with pytest.raises(FolderLoop, match="symbolic link loop"):
        module.read(module.sets[0])


def test_folder_links_must_stay_inside_and_file_links_count_in_the_identity(tmp_path):
    data = write_folders(tmp_path / "data")
    outside = write_folders(tmp_path / "elsewhere")
    before = folder_fingerprint(data / "train")
    (data / "train" / "cat" / "more").symlink_to(outside / "train" / "cat")
    with pytest.raises(FolderLoop, match="outside the dataset folder"):
        walk_folder(data / "train")
    (data / "train" / "cat" / "more").unlink()
    (data / "train" / "cat" / "twice").symlink_to(data / "train" / "dog")
    with pytest.raises(FolderLoop, match="two paths to the same images"):
        folder_fingerprint(data / "train")
    (data / "train" / "cat" / "twice").unlink()
    assert folder_fingerprint(data / "train") == before
    (data / "train" / "cat" / "linked.jpg").symlink_to(outside / "train" / "dog" / "0.jpg")
    assert folder_fingerprint(data / "train") != before, "a linked image is part of the data: it changes the id"
    assert "cat/linked.jpg" in [listed.relative for listed in walk_folder(data / "train")]


def _listed(text: str) -> set[str]:
    return {line.strip().split(": ")[0] for line in text.splitlines() if line.startswith("    ")}


def test_data_check_lists_exactly_the_four_bad_files_and_a_second_check_decodes_nothing(tmp_path, capsys, monkeypatch):
    data = write_folders(tmp_path / "data")
    add_bad_files(data / "train" / "cat")
    config = write_config(tmp_path / "exp.yaml", data)
    assert main(["data", "check", "--config", str(config)]) == 2
    printed = capsys.readouterr().out
    assert _listed(printed) == {str(data / "train" / "cat" / name) for name in BAD}, printed
    for name, reason in BAD.items():
        assert any(name in line and reason in line for line in printed.splitlines()), (name, printed)
    assert "mine (folder): 4 unreadable file(s) of 29 images" in printed and "train (4 of 17" in printed

    def never(listed):
        raise AssertionError(f"{listed.path} decoded again, though no file changed")

    monkeypatch.setattr(imagecheck, "image_problem", never)
    assert main(["data", "check", "--config", str(config), "--benchmarks", "mine"]) == 2
    assert capsys.readouterr().out == printed
    (data / "train" / "cat" / "empty.jpg").unlink()  # a changed folder is checked again
    with pytest.raises(AssertionError, match="decoded again"):
        main(["data", "check", "--config", str(config)])


def test_run_refuses_before_training_with_the_same_list(tmp_path, capsys):
    data = write_folders(tmp_path / "data")
    add_bad_files(data / "train" / "cat")
    config = write_config(tmp_path / "exp.yaml", data)
    assert main(["data", "check", "--config", str(config)]) == 2
    listed = _listed(capsys.readouterr().out)
    store = tmp_path / "store"
    assert main(["run", "--config", str(config), "--out", str(store)]) == 2
    printed = capsys.readouterr().err
    assert printed.startswith("lpft-bench: unreadable images, nothing was run.")
    assert _listed(printed) == listed and len(listed) == 4
    assert not store.exists(), "nothing is written before the data is known to be readable"


def test_skip_unreadable_counts_in_the_identity_only_when_true(tmp_path):
    data = write_folders(tmp_path / "data")
    ids = {}
    for name, options in (("absent", {}), ("false", {"skip_unreadable": False}), ("true", {"skip_unreadable": True})):
        (job,) = load_experiment(write_config(tmp_path / f"{name}.yaml", data, **options)).expand()
        ids[name] = job.id
    assert ids["absent"] == ids["false"] != ids["true"]
    with pytest.raises(UsageError, match="skip_unreadable='yes', expected true or false"):  # the options' schema
        load_experiment(write_config(tmp_path / "yes.yaml", data, skip_unreadable="yes")).expand()[0].id


def _run_tiny(config: Path, store: Path, *extra: str) -> int:
    return main(["run", "--config", str(config), "--out", os.fsdecode(store), *extra])


@pytest.mark.slow
@pytest.mark.parametrize("name", [b"store-\xff-not-utf8", "store with spaces, été, ünïcode".encode()])
def test_any_store_and_data_path_runs_end_to_end_skipping_unreadable_files(tmp_path, capsys, name):
    base = tmp_path / os.fsdecode(name)
    data = write_folders(base / "data")
    add_bad_files(data / "train" / "cat")
    weights = base / "weights.safetensors"  # a checkpoint under that name too
    save_file(timm.create_model("resnet10t", num_classes=0).state_dict(), os.fsdecode(weights))
    backbone = {"name": "timm:resnet10t", "weights": os.fsdecode(weights), "data_config": {"input_size": [3, 32, 32]}}
    config = write_config(base / "exp.yaml", data, backbone, skip_unreadable=True)
    store = base / "store"
    jobs = load_experiment(config).expand()
    kept, _ = estimate_bytes(jobs, store, "all")
    assert _run_tiny(config, store, "--keep-weights", "all") == 0
    written = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    # The probe keeps its head alone: the per-job margin for records and logs is most of the estimate.
    assert written <= kept <= 2 * written + JOB_OVERHEAD_BYTES * len(jobs), \
        "the disk estimate bounds what a run keeps, and not by much"
    output = capsys.readouterr()
    assert "moved aside" not in output.err
    (phase,) = (store / "phases").iterdir()
    assert Store(store).load_phase(phase.name) is not None, "a stored phase loads back from a path that is not UTF-8"
    assert "1 run, 0 already done, 0 failed" in output.out
    assert os.fsencode(base).decode("utf-8", "backslashreplace") in output.out  # printed, never a traceback
    (record_path,) = (store / "jobs").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "done"
    assert sorted(entry.split(":")[0] for entry in record["skipped_files"]["train"]) == sorted(f"cat/{n}" for n in BAD)
    assert main(["status", "--out", os.fsdecode(store)]) == 0
    assert "1 done" in capsys.readouterr().out


@pytest.mark.slow
def test_a_rerun_after_changing_the_data_reports_the_old_records_outside_the_matrix(tmp_path, capsys):
    data = write_folders(tmp_path / "data")
    add_bad_files(data / "train" / "cat")
    config = write_config(tmp_path / "exp.yaml", data)
    store = tmp_path / "store"
    assert _run_tiny(config, store, "--no-preflight") == 1  # the user who skipped the check: the job fails
    (old,) = [p.name for p in (store / "jobs").iterdir()]
    for name in BAD:
        (data / "train" / "cat" / name).unlink()
    capsys.readouterr()
    assert _run_tiny(config, store) == 0
    printed = capsys.readouterr().out
    assert "failed job(s)" not in printed and "1 run, 0 already done, 0 failed" in printed
    assert printed.count("1 record(s) outside this matrix (`lpft-bench prune` removes them)") == 1
    assert main(["status", "--out", str(store)]) == 0
    status = capsys.readouterr().out
    assert "1 done" in status and "0 failed" in status and "of 1" in status and "1 record(s) outside" in status
    assert main(["prune", "--out", str(store)]) == 0
    assert f"removed 1 job record(s) outside this matrix: {old}" in capsys.readouterr().out
    assert not (store / "jobs" / old).exists() and len(list((store / "jobs").glob("*/done"))) == 1
    assert main(["collect", "--out", str(store)]) == 0
    assert "outside this matrix" not in capsys.readouterr().out


DiskUsage = namedtuple("DiskUsage", "total used free")


def test_run_refuses_when_the_store_has_too_little_space_and_loses_nothing(tmp_path, capsys, monkeypatch):
    store = tmp_path / "store"
    kept = store / "jobs" / "earlier" / "record.json"
    kept.parent.mkdir(parents=True)
    kept.write_text('{"kept": true}')
    before = sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 1000, 1000))
    args = ["run", "--strategies", "lp", "ft", "--seeds", "0", "--out", str(store)]
    assert main(args) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "needs about" in line and "0.00 GB is free" in line and "--force" in line
    assert sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*")) == before

    class Started(Exception):
        pass

    def started(*args, **kwargs):
        raise Started

    monkeypatch.setattr("lpft_bench.runner.run_matrix", started)
    with pytest.raises(Started):  # --force: past the check, to the first job
        main([*args, "--force"])


def test_data_check_of_a_file_without_folder_benchmarks_says_there_is_nothing_to_decode(tmp_path, capsys):
    config = tmp_path / "digits.yaml"
    config.write_text(yaml.safe_dump({"name": "d", "benchmarks": {"digits": {}}, "strategies": {"lp": {}}}))
    assert main(["data", "check", "--config", str(config)]) == 2
    assert "has no folder benchmark: nothing to decode" in capsys.readouterr().err


def test_a_run_lists_each_folder_once_for_every_job_id_and_the_loader(tmp_path, monkeypatch, capsys):
    data = write_folders(tmp_path / "data")
    config = yaml.safe_load(write_config(tmp_path / "exp.yaml", data).read_text())
    config["strategies"] = {"lp": {}, "ft": {"lr": [1e-3, 1e-2]}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    scanned = []
    real_scandir = os.scandir

    def counting(path="."):
        scanned.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    assert main(["run", "--config", str(tmp_path / "exp.yaml"), "--dry-run"]) == 0
    assert "3 jobs" in capsys.readouterr().out
    assert scanned.count(str(data / "train" / "cat")) == 1, "three jobs' ids, one walk of the folder"
    scanned.clear()
    with walk.one_listing_per_folder():
        (job, *_) = load_experiment(tmp_path / "exp.yaml").expand()
        job.id  # noqa: B018 - lists the folders
        module = FolderShift(train=str(data / "train"), id_eval=str(data / "test"))
        assert len(module.read(module.sets[0])) == 12
    assert scanned.count(str(data / "train" / "cat")) == 1, "the loader read the listing the id was made of"


def test_prune_removes_only_records_outside_the_matrix_and_never_a_running_job(tmp_path, capsys):
    from lpft_bench.storage import write_json

    store = tmp_path / "store"
    for job_id in ("kept", "old", "running"):
        write_json(store / "jobs" / job_id / "record.json", {"job_id": job_id, "status": "failed", "error": "x"})
    (store / "phases" / "0-lp-abc").mkdir(parents=True)
    write_json(store / "matrix.json", {"jobs": ["kept", "pending"]})
    assert main(["prune", "--out", str(store), "--dry-run"]) == 0
    assert "would remove 2 job record(s) outside this matrix: old, running" in capsys.readouterr().out
    assert (store / "jobs" / "old").exists()
    with Store(store).job_lock("running"):
        assert main(["prune", "--out", str(store)]) == 0
    assert "removed 1 job record(s) outside this matrix: old" in capsys.readouterr().out
    assert sorted(p.name for p in (store / "jobs").iterdir()) == ["kept", "running"]
    assert (store / "phases" / "0-lp-abc").is_dir(), "phase results are shared and stay"
    (store / "matrix.json").unlink()
    assert main(["prune", "--out", str(store)]) == 2
    assert "records no matrix" in capsys.readouterr().err
