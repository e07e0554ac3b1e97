"""The suite as a user meets it: the CLI writes the tables, DDP counts every example once, real weights load."""
import json
import os
import subprocess
import sys
import tarfile

import pandas as pd
import pytest
import torch

from conftest import SHARED_DATA
from lpft_bench.cli import main
from lpft_bench.engine import Job, RunContext


@pytest.mark.slow
def test_run_writes_runs_id_and_ood_tables_for_all_strategies_and_resumes(tmp_path, capsys):
    out = tmp_path / "quick"
    quick = ["run", "--out", str(out), "--seeds", "0", "1", "--epochs", "1", "--set", "lr=0.01"]  # one job each
    assert main(quick) == 0
    printed = capsys.readouterr().out
    assert "ID accuracy" in printed and "OOD accuracy" in printed
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["strategy"]) == {"scratch", "lp", "ft", "lp-ft"}
    assert set(runs["eval_set"]) == {"id_val", "id_test", "rotated-mild", "rotated-strong"}
    assert set(runs["seed"]) == {0, 1}
    assert runs["acc"].between(0, 100).all()
    id_table = pd.read_csv(out / "id.csv", index_col="strategy")
    ood_table = pd.read_csv(out / "ood.csv", index_col="strategy")
    assert set(id_table.index) == set(ood_table.index) - {"oracle"} == {"scratch", "lp", "ft", "lp-ft"}
    assert {"digits:rotated-mild", "digits:rotated-strong"} <= set(ood_table.columns)
    # Selected hyperparameters only: one ID row per strategy and seed.
    assert (id_table["digits seeds"] == 2).all()

    records = {p.parent.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*/record.json")}
    assert main(quick) == 0
    assert "0 run, 8 already done" in capsys.readouterr().out
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*/record.json")} == records


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_evaluates_every_example_exactly_once(tmp_path):
    job = Job("digits", "lp-ft", seed=0, hparams={"epochs": 1})
    # Every set through Lightning's distributed validation loop every epoch (by default only the selection set).
    ctx = RunContext(out=tmp_path, accelerator="cpu", devices=2, eval_every_epoch=True)
    completed = subprocess.run(
        [sys.executable, "-m", "lpft_bench.engine.execution", json.dumps(job.to_dict()), json.dumps(ctx.to_dict())],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = ctx.store.load_record(job.id)
    assert record["environment"]["world_size"] == 2
    epoch = record["phases"][-1]["epochs"][-1]
    sizes = {name: info["size"] for name, info in record["eval_sets"].items()}
    assert any(size % 2 for size in sizes.values()), "an odd-sized set is what padding would betray"
    for name, size in sizes.items():
        assert epoch[f"n/{name}"] == size
        assert abs(epoch[f"acc/{name}"] * size - round(epoch[f"acc/{name}"] * size)) < 1e-3


IMAGENETTE = SHARED_DATA / "imagenette-mini.tar.gz"


@pytest.mark.skipif(not IMAGENETTE.exists(), reason=f"real images not available: {IMAGENETTE} is absent")
def test_efficientnet_lite0_package_weights_classify_real_imagenet_photos(tmp_path):
    import timm.data
    from timm.data import ImageNetInfo
    from torchvision.datasets import ImageFolder

    from lpft_bench.models import BACKBONES, build_backbone

    with tarfile.open(IMAGENETTE) as archive:
        archive.extractall(tmp_path, filter="data")
    model, data_config = build_backbone(BACKBONES["efficientnet-lite0"], num_classes=1000)
    assert data_config["mean"] == (0.5, 0.5, 0.5) and data_config["std"] == (0.5, 0.5, 0.5)
    val = next(p for p in tmp_path.rglob("val") if p.is_dir())
    dataset = ImageFolder(val, transform=timm.data.create_transform(**data_config))
    wnids = ImageNetInfo().label_names()
    imagenet_index = [wnids.index(wnid) for wnid in dataset.classes]
    subset = torch.utils.data.Subset(dataset, list(range(0, len(dataset), 5)))
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(subset, batch_size=50):
            correct += (model(x).argmax(-1) == torch.tensor(imagenet_index)[y]).sum().item()
    # 1000-way top-1 (the published ImageNet figure is about 75%); a mis-mapped tensor gives about 0.
    assert correct / len(subset) > 0.6


@pytest.mark.slow
def test_smoke_suite_runs_every_benchmark_and_strategy_on_fakes_to_tables(tmp_path, capsys):
    """The digits backbone on every shift benchmark's fake, every strategy, to tables. The smoke suite's other
    plans run as their own steps in .ci/run, from the wheel: Ren et al.'s ID-only tasks (54 jobs; here they are
    covered by tests/test_ren_tasks.py) and the paper architectures (ResNet-50, CLIP RN50, ViT-B/16, Sup-C10's
    ResNet-18: about half an hour on 2 cores; here each takes a step of every strategy,
    tests/test_paper_architectures.py)."""
    from lpft_bench.datamodules import BENCHMARKS
    from lpft_bench.suites import SUITES

    digits_backbone = [label for label, plan in SUITES["smoke"].benchmarks.items() if plan.backbone == "digits-resnet"]
    canonical = [name for name, benchmark in BENCHMARKS.items() if benchmark.canonical and benchmark.write_fake]
    assert digits_backbone == ["digits", *canonical]  # every fake of the registry, on the shipped digits backbone
    ood_sets = {name: BENCHMARKS[name]().ood_sets for name in canonical}
    shifts = ["digits", *(name for name in canonical if ood_sets[name])]
    out = tmp_path / "smoke"
    assert main(["run", "--suite", "smoke", "--benchmarks", *shifts, "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    from lpft_bench.strategies import STRATEGIES

    assert set(runs["benchmark"]) == set(shifts)
    assert set(runs["strategy"]) == set(STRATEGIES)
    # Every set each job evaluates: the ID test set and each OOD set (digits, in clean mode, ID validation too).
    assert runs.groupby("benchmark")["eval_set"].nunique().to_dict() == {
        "digits": 4, "living17": 2, "entity30": 2, "domainnet": 4, "cifar10": 3, "fmow": 3, "imagenet": 5}
    ood = pd.read_csv(out / "ood.csv", index_col="strategy")
    total_ood = 2 + sum(len(sets) for sets in ood_sets.values())
    assert len([c for c in ood.columns if not c.endswith(("90% CI", "seeds")) and c != "average"]) == total_ood
