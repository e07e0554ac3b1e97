"""Ren et al.'s downstream tasks (CIFAR-100, STL-10, Flowers-102) on their fakes, and a benchmark without OOD sets
end to end: it runs, tabulates ID only (no empty OOD table or column), reports and claims nothing about OOD."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import loadmat

from lpft_bench.cli import main
from lpft_bench.datamodules import BENCHMARKS, ID_TEST, DatasetMissing, build_datamodule, write_fake
from lpft_bench.datamodules.cifar import STL10_CLASSES
from lpft_bench.datamodules.cifar100 import CIFAR100_CLASSES
from lpft_bench.suites import SUITES


def _ood_sets(benchmark) -> list[str]:
    return [spec.name for spec in benchmark(data_root="unused").sets if spec.split == "ood"]


# The registry says which benchmarks have no OOD set, so a new one is covered too.
ID_ONLY = tuple(name for name, benchmark in BENCHMARKS.items()
                if benchmark.canonical and benchmark.write_fake is not None and not _ood_sets(benchmark))


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ren-fakes")
    for name in ("cifar10", *ID_ONLY):  # cifar10 first: STL-10's folder serves both, as on a real data root
        write_fake(name, root)
    return root


def datamodule(name: str, root: Path, **options):
    dm = build_datamodule(name, data_config={"input_size": (3, 32, 32)}, data_root=str(root), **options)
    dm.setup("fit")
    return dm


def raw(dm, name: str):
    return dm.read(next(spec for spec in dm.sets if spec.name == name))


def test_the_three_tasks_are_registered_without_ood_sets_and_in_the_smoke_suite():
    assert set(ID_ONLY) == {"cifar100", "stl10", "flowers102", "domainnet-real-200", "domainnet-sketch-200",
                            "domainnet-quickdraw-200"}
    assert set(ID_ONLY) <= set(SUITES["smoke"].benchmarks)


def test_a_folder_free_experiment_file_names_the_tasks(tmp_path):
    from lpft_bench.experiments import load_experiment

    path = tmp_path / "ren.yaml"
    path.write_text("name: ren\nseeds: [0]\nbenchmarks:\n" + "".join(f"  {name}: {{}}\n" for name in ID_ONLY)
                    + "strategies:\n  lp: {}\n")
    assert [job.benchmark for job in load_experiment(path).expand()] == list(ID_ONLY)


@pytest.mark.parametrize("name", ID_ONLY)
def test_an_id_only_task_evaluates_its_id_set_in_both_modes(name, fake_root):
    assert [s.name for s in datamodule(name, fake_root, mode="paper").eval_sets] == [ID_TEST]
    assert [(s.name, s.split) for s in datamodule(name, fake_root, mode="clean").eval_sets] == [
        ("id_val", "id"), (ID_TEST, "id")]


def test_cifar100_reads_the_fine_labels(fake_root):
    dm = datamodule("cifar100", fake_root)
    assert dm.num_classes == 100 and len(CIFAR100_CLASSES) == 100 and CIFAR100_CLASSES == tuple(sorted(CIFAR100_CLASSES))
    train = raw(dm, "train")
    assert sorted(set(train.targets)) == list(range(100))  # the coarse labels (0..19) would not reach 99
    assert len(train) == len(raw(dm, ID_TEST)) == 200


def test_stl10_task_keeps_monkeys_in_stl_order_and_reads_the_train_files(fake_root):
    dm = datamodule("stl10", fake_root)
    assert dm.num_classes == 10 and tuple(dm.class_names) == STL10_CLASSES
    for split, name in (("train", "train"), ("test", ID_TEST)):
        images = raw(dm, name)
        written = np.frombuffer((fake_root / "stl10_binary" / f"{split}_y.bin").read_bytes(), dtype=np.uint8) - 1
        assert images.targets == written.tolist() and 7 in images.targets  # the monkeys are a class here
        for image, label in (images[i] for i in range(len(images))):
            assert (int(np.asarray(image)[0, 5, 0]) - 10) // 20 == label  # the label the fake wrote into the image
    assert len(raw(datamodule("cifar10", fake_root), "stl10")) == 18  # CIFAR-10's OOD use is unchanged


def test_flowers_trains_on_the_official_test_split_and_evaluates_on_val(fake_root):
    dm = datamodule("flowers102", fake_root)
    setid = loadmat(fake_root / "flowers-102" / "setid.mat", squeeze_me=True)
    labels = loadmat(fake_root / "flowers-102" / "imagelabels.mat", squeeze_me=True)["labels"]
    for name, key in (("train", "tstid"), (ID_TEST, "valid")):
        images = raw(dm, name)
        assert [path.name for path in images.paths] == [f"image_{i:05d}.jpg" for i in setid[key]]
        assert images.targets == [int(labels[i - 1]) - 1 for i in setid[key]]  # 1-based in the files
    assert dm.num_classes == 102


def test_flowers_without_its_split_file_names_it(fake_root, tmp_path):
    copy = tmp_path / "flowers-102"
    copy.mkdir()
    (copy / "jpg").symlink_to(fake_root / "flowers-102" / "jpg")
    (copy / "imagelabels.mat").write_bytes((fake_root / "flowers-102" / "imagelabels.mat").read_bytes())
    with pytest.raises(DatasetMissing, match="setid.mat"):
        datamodule("flowers102", tmp_path)


@pytest.mark.slow
def test_an_id_only_benchmark_runs_collects_reports_and_claims_without_ood(tmp_path, capsys):
    """One LP job on an ID-only fake, end to end; then beside a benchmark with OOD sets, whose columns alone
    make the OOD table."""
    name, out = ID_ONLY[0], tmp_path / "store"
    tiny = ["run", "--suite", "smoke", "--strategies", "lp", "--seeds", "0", "--subset", "20", "--out", str(out)]
    assert main([*tiny, "--benchmarks", name]) == 0
    printed = capsys.readouterr().out
    assert "ID accuracy" in printed and "No OOD sets in these benchmarks" in printed
    assert "OOD accuracy" not in printed and "OOD ordering" not in printed and "ood.csv" not in printed
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["split"]) == {"id"} and set(runs["benchmark"]) == {name}
    assert list(pd.read_csv(out / "id.csv", index_col="strategy").index) == ["lp"]
    assert not (out / "ood.csv").exists()
    assert "OOD accuracy" not in (out / "summary.md").read_text()

    assert main(["collect", "--out", str(out), "--format", "md"]) == 0
    assert (out / "id.md").is_file() and not (out / "ood.md").exists()
    assert main(["report", "--store", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "## ID accuracy" in report and "No OOD sets in these benchmarks" in report
    assert "## OOD accuracy" not in report and "## ID vs OOD" not in report
    assert not (out / "report" / "ood.csv").exists()

    capsys.readouterr()
    assert main([*tiny, "--benchmarks", name, "digits"]) == 0
    assert "OOD accuracy" in capsys.readouterr().out
    ood = pd.read_csv(out / "ood.csv", index_col="strategy")
    columns = [c for c in ood.columns if not c.endswith(("90% CI", "seeds")) and c != "average"]
    assert columns and all(c.startswith("digits:") for c in columns)  # no empty column for the ID-only task
    assert main(["report", "--store", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "## OOD accuracy" in report and f"no OOD numbers for {name}" not in report


def test_domainnet_200_selects_the_first_200_classes_and_capped_images_by_name_alone(tmp_path):
    from lpft_bench.datamodules.domainnet200 import read_official_list

    write_fake("domainnet-sketch-200", tmp_path, images_per_class=3)
    listed = tmp_path / "domainnet" / "sketch_train.txt"
    chosen = read_official_list(listed, per_class=2, seed=0)
    assert sorted(set(chosen.targets)) == list(range(200))  # the fake's classes 200 and 201 are left out
    assert [chosen.targets.count(label) for label in range(200)] == [2] * 200
    # The rank is the file name's: the list's line order does not matter, the seed does.
    lines = listed.read_text().splitlines(keepends=True)
    listed.write_text("".join(sorted(lines)))
    assert read_official_list(listed, per_class=2, seed=0).paths == chosen.paths
    assert read_official_list(listed, per_class=2, seed=1).paths != chosen.paths


def test_domainnet_200_refuses_a_label_that_is_not_its_folders_class(tmp_path):
    from lpft_bench.datamodules.domainnet200 import read_official_list

    write_fake("domainnet-real-200", tmp_path)
    listed = tmp_path / "domainnet" / "real_test.txt"
    listed.write_bytes(listed.read_bytes().replace(b" 0\r\n", b" 1\r\n", 1))
    with pytest.raises(DatasetMissing, match="is not DomainNet's class of folder"):
        read_official_list(listed, per_class=19, seed=0)
