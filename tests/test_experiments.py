"""Your data, your backbone, your grid: experiment files run from the CLI, with identities that never collide."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image, ImageFilter

from lpft_bench.cli import main
from lpft_bench.engine import Job
from lpft_bench.experiments import load_experiment
from lpft_bench.matrix import matrix_jobs

CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CLASSES = ("airplane", "automobile", "ship")
# What identity is tested on needs no pretrained features: a small random timm network keeps the LPs quick.
SMALL_NET = {"name": "timm:resnet10t", "random": True, "data_config": {"input_size": [3, 32, 32]}}


@pytest.fixture(scope="module")
def cifar_images() -> dict[str, dict[str, list[Image.Image]]]:
    """The first 60 training and 20 test images of three CIFAR-10 classes, decoded from the real archive."""
    if not CIFAR.is_file():
        pytest.skip(f"{CIFAR} is absent: the real-image archives live in shared/data beside the repository")
    wanted = {f"{split}/{c}/{i:04d}.jpg": (split, c) for c in CLASSES for split, n in (("train", 60), ("test", 20))
              for i in range(n)}
    images = {"train": {c: [] for c in CLASSES}, "test": {c: [] for c in CLASSES}}
    with tarfile.open(CIFAR) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted:
                split, label = wanted[name]
                images[split][label].append((name, Image.open(tar.extractfile(member)).convert("RGB")))
    return {split: {c: [img for _, img in sorted(found)] for c, found in by_class.items()}
            for split, by_class in images.items()}


def write_dataset(root: Path, images, train: slice, test: slice) -> Path:
    """train/ and test/ from the given images, blur/ and noise/ as two OOD shifts of test/."""
    shifts = {"train": lambda im: im, "test": lambda im: im, "blur": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
              "noise": lambda im: Image.eval(im, lambda v: min(255, v + 40))}
    for folder, shift in shifts.items():
        for label in CLASSES:
            source = images["train"][label][train] if folder == "train" else images["test"][label][test]
            (root / folder / label).mkdir(parents=True)
            for index, image in enumerate(source):
                shift(image).save(root / folder / label / f"{index:04d}.png")
    return root


def write_config(path: Path, data: str, strategies: dict, backbone=None, name: str = "my-shift",
                 label: str = "my-cifar") -> Path:
    config = {"name": name, "seeds": [0],
              "benchmarks": {label: {"benchmark": "folder", "backbone": backbone or SMALL_NET,
                                     "options": {"train": f"{data}/train", "id_eval": f"{data}/test",
                                                 "ood": {"blur": f"{data}/blur", "noise": f"{data}/noise"}},
                                     "common": {"epochs": 1, "batch_size": 32}}},
              "strategies": strategies}
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(*args: str) -> int:
    return main(["run", *args])


@pytest.mark.slow
def test_two_folder_datasets_with_the_same_ood_names_never_share_ids_features_or_rows(tmp_path, cifar_images, capsys):
    write_dataset(tmp_path / "a", cifar_images, slice(0, 30), slice(0, 10))
    write_dataset(tmp_path / "b", cifar_images, slice(30, 60), slice(10, 20))
    config_a = write_config(tmp_path / "a.yaml", "a", {"lp": {}})
    config_b = write_config(tmp_path / "b.yaml", "b", {"lp": {}})
    store = tmp_path / "store"
    assert run_cli("--config", str(config_a), "--out", str(store)) == 0
    assert run_cli("--config", str(config_b), "--out", str(store)) == 0
    (job_a,), (job_b,) = load_experiment(config_a).expand(), load_experiment(config_b).expand()
    assert job_a.id != job_b.id
    assert len(list((store / "jobs").glob("*/done"))) == 2, "the second dataset ran: not skipped as the first's"
    features = sorted(p.name for p in (store / "features").glob("*.npz"))
    assert len(features) == 2 * 5, features  # train, id_val, id_test, blur and noise of each dataset, none shared
    runs = pd.read_csv(store / "runs.csv")
    data = sorted(runs["data"].unique())
    assert len(data) == 2 and runs.groupby("data")["job_id"].nunique().tolist() == [1, 1]
    ood = pd.read_csv(store / "ood.csv", index_col=0)
    blur = sorted(c for c in ood.columns if c.endswith(":blur"))
    assert blur == [f"my-cifar#{key}:blur" for key in data], "one label, two datasets: two columns, never pooled"


def test_moving_a_dataset_keeps_its_ids_and_changing_one_image_changes_them(tmp_path, cifar_images):
    write_dataset(tmp_path / "a", cifar_images, slice(0, 10), slice(0, 5))
    config = write_config(tmp_path / "a.yaml", "a", {"ft": {"lr": [1e-3, 1e-2]}})
    before = [job.id for job in load_experiment(config).expand()]
    shutil.move(tmp_path / "a", tmp_path / "moved")
    write_config(tmp_path / "a.yaml", "moved", {"ft": {"lr": [1e-3, 1e-2]}})
    assert [job.id for job in load_experiment(config).expand()] == before
    image = next((tmp_path / "moved" / "noise" / "ship").glob("*.png"))
    Image.new("RGB", (32, 32), (255, 0, 0)).save(image)  # another size on disk: another dataset
    assert [job.id for job in load_experiment(config).expand()] != before


@pytest.mark.slow
def test_input_sizes_and_strategy_variants_are_their_own_ids_and_rows(tmp_path, cifar_images):
    write_dataset(tmp_path / "a", cifar_images, slice(0, 20), slice(0, 10))
    strategies = {"lp-ft": {"lr": 1e-3}, "lp-ft-bn-train": {"strategy": "lp-ft", "lr": 1e-3, "batchnorm": "train"}}
    config = yaml.safe_load(write_config(tmp_path / "c.yaml", "a", strategies).read_text())
    plan = config["benchmarks"]["my-cifar"]
    config["benchmarks"] = {"my-cifar": {**plan, "backbone": {**SMALL_NET, "label": "r10-32"}},
                            "my-cifar-48": {**plan, "backbone": {**SMALL_NET, "label": "r10-48",
                                                                  "data_config": {"input_size": [3, 48, 48]}}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    jobs = load_experiment(tmp_path / "c.yaml").expand()
    assert len({job.id for job in jobs}) == len(jobs) == 4, "two input sizes x two variants: four jobs"
    assert run_cli("--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "store")) == 0
    id_table = pd.read_csv(tmp_path / "store" / "id.csv", index_col=0)
    assert set(id_table.index) == {f"{s} @ {b}" for s in strategies for b in ("r10-32", "r10-48")}
    records = [json.loads(p.read_text()) for p in (tmp_path / "store" / "jobs").glob("*/record.json")]
    probes = {r["phases"][0]["end"]["head_sha256"] for r in records}
    assert len(probes) == 2, "each input size has its own LP head; the two variants share it"
    assert len(list((tmp_path / "store" / "features").glob("*-train-*.npz"))) == 2


@pytest.mark.slow
def test_two_backbones_on_one_benchmark_are_two_rows(tmp_path, cifar_images):
    write_dataset(tmp_path / "a", cifar_images, slice(0, 20), slice(0, 10))
    config = yaml.safe_load(write_config(tmp_path / "c.yaml", "a", {"lp": {}}).read_text())
    plan = config["benchmarks"]["my-cifar"]
    config["benchmarks"] = {"my-cifar": plan}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    store = tmp_path / "store"
    assert run_cli("--config", str(tmp_path / "c.yaml"), "--out", str(store)) == 0
    assert run_cli("--config", str(tmp_path / "c.yaml"), "--out", str(store), "--backbone", "timm:resnet18",
                   "--backbone-option", "random=true", "--backbone-option", "data_config={input_size: [3, 32, 32]}") == 0
    id_table = pd.read_csv(store / "id.csv", index_col=0)
    assert set(id_table.index) == {"lp @ timm:resnet10t", "lp @ timm:resnet18"}


@pytest.mark.parametrize("change, message", [
    ({"benchmarks": {"x": {"benchmark": "folder", "optoins": {}}}}, "unknown key(s) ['optoins']"),
    ({"benchmarks": {"x": {"benchmark": "nope"}}}, "unknown benchmark 'nope'"),
    ({"strategies": {"ft": {"lrr": [1e-3]}}}, "ft has no hyperparameters ['lrr']"),
    ({"benchmarks": {"x": {"benchmark": "folder", "backbone": "timm:resnet18",
                           "options": {"train": "a/train", "id_eval": "a/test"}}}}, "needs exactly one of"),
    ({"benchmarks": {"x": {"benchmark": "folder", "options": {"train": "missing", "id_eval": "a/test"}}}},
     "no such directory"),
    ({"seeds": [-1]}, "seeds must be"),
    ({"benchmarks": {"x": {"benchmark": "folder", "options": {"train": "a/blur/ship", "id_eval": "a/test"}}}},
     "at least two"),
])
def test_bad_experiment_files_get_one_line_naming_what_was_expected(tmp_path, cifar_images, capsys, change, message):
    write_dataset(tmp_path / "a", cifar_images, slice(0, 4), slice(0, 2))
    config = {**yaml.safe_load(write_config(tmp_path / "c.yaml", "a", {"ft": {}}).read_text()), **change}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert run_cli("--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "store")) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "Traceback" not in error and len(error.splitlines()) <= 3
    assert not (tmp_path / "store" / "jobs").exists(), "nothing ran"


def test_numbers_are_numbers_as_people_write_them_and_a_string_for_a_number_is_refused():
    from lpft_bench.matrix import parse_assignments

    assert parse_assignments(["lr=1e-2", "epochs=3", "lr_grid=[1e-3, 3.0e-3]"], "--set") == {
        "lr": 0.01, "epochs": 3, "lr_grid": [0.001, 0.003]}
    with pytest.raises(ValueError, match="lr must be a number"):
        Job("digits", "ft", 0, hparams={"lr": "fast"}).id  # noqa: B018


def test_an_ood_folder_with_a_class_training_lacks_is_refused_before_anything_trains(tmp_path, cifar_images, capsys):
    write_dataset(tmp_path / "a", cifar_images, slice(0, 4), slice(0, 2))
    shutil.copytree(tmp_path / "a" / "noise" / "ship", tmp_path / "a" / "noise" / "frog")
    config = write_config(tmp_path / "c.yaml", "a", {"lp": {}})
    assert run_cli("--config", str(config), "--out", str(tmp_path / "store")) == 2
    error = capsys.readouterr().err
    assert "ood noise folder" in error and "['frog']" in error and not (tmp_path / "store" / "jobs").exists()


def test_set_overrides_sweep_and_name_who_takes_what():
    jobs = matrix_jobs(load_suite("quickstart"), strategies=["ft"], seeds=[0], sets={"lr": [0.1, 0.2], "epochs": 2})
    assert sorted((j.hparams["lr"], j.hparams["epochs"]) for j in jobs) == [(0.1, 2), (0.2, 2)]
    with pytest.raises(ValueError, match="no chosen strategy takes it"):
        matrix_jobs(load_suite("quickstart"), strategies=["lp"], sets={"lr": 0.1})


def load_suite(name):
    from lpft_bench.suites import get_suite

    return get_suite(name)


def test_a_timm_backbone_without_weights_is_refused_and_hub_weights_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="needs exactly one of"):
        Job("digits", "lp", 0, backbone="timm:resnet18").id  # noqa: B018
    job = Job("digits", "lp", 0, backbone="timm:resnet18", backbone_options={"pretrained": True})
    assert job.backbone_spec().meaning()["weights"] == "timm-hub:resnet18"
    from lpft_bench.models import build_backbone

    with pytest.raises(ValueError, match="hub cache"):
        build_backbone(job.backbone_spec())


@pytest.mark.slow
def test_the_readme_example_file_runs_as_written_on_real_cifar_images(tmp_path, cifar_images, capsys):
    """examples/my-shift.yaml, unchanged, on folders written by examples/make_cifar_folders.py (small: one seed,
    one epoch, three classes of a few real CIFAR-10 images)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    source = tmp_path / "cifar"
    # 22 per class: the example's batch_size 64 fits the training set (a larger batch is refused at the checks).
    for split, count in (("train", 22), ("test", 6)):
        for label in CLASSES:
            (source / split / label).mkdir(parents=True)
            for index, image in enumerate(cifar_images[split][label][:count]):
                image.save(source / split / label / f"{index:04d}.jpg")
    shutil.copy(repo / "examples" / "my-shift.yaml", tmp_path / "my-shift.yaml")
    subprocess.run([sys.executable, str(repo / "examples" / "make_cifar_folders.py"), str(source), str(tmp_path / "data")],
                   check=True)
    store = tmp_path / "store"
    assert run_cli("--config", str(tmp_path / "my-shift.yaml"), "--out", str(store), "--seeds", "0", "--set", "epochs=1") == 0
    printed = capsys.readouterr().out
    assert "my-cifar:blur" in printed and "my-cifar:noise" in printed
    ood = pd.read_csv(store / "ood.csv", index_col=0)
    assert {"lp", "ft", "lp-ft"} <= set(ood.index)
    assert len(list((store / "jobs").glob("*/done"))) == 5  # lp, ft at two learning rates, lp-ft at two


def test_two_labels_for_one_and_the_same_job_are_refused_rather_than_one_silently_dropped():
    from lpft_bench.suites import Suite

    suite = Suite("twice", "", benchmarks=load_suite("quickstart").benchmarks,
                  strategies={"ft-a": {"strategy": "ft", "lr": 1e-3}, "ft-b": {"strategy": "ft", "lr": 1e-3}}, seeds=(0,))
    with pytest.raises(ValueError, match="same job"):
        matrix_jobs(suite)
    assert len(matrix_jobs(suite, strategies=["ft-a"])) == 1
