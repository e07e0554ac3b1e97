"""The shift benchmarks on fakes written in their canonical layouts: loading, label semantics, options, errors."""
from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lpft_bench.datamodules import (
    BENCHMARKS, ID_TEST, ID_VAL, CorruptImage, DatasetMissing, build_datamodule, check_benchmarks, format_check, write_fake,
)
from lpft_bench.datamodules.class_tables import DOMAINNET40, IMAGENET_R_WNIDS, LIVING17, STL10_TO_CIFAR10
from lpft_bench.datamodules.imagenet import IMAGENET_INDEX
from lpft_bench.errors import UsageError
from lpft_bench.strategies.module import restrict_logits
from lpft_bench.suites import SUITES
from lpft_bench.datamodules.imagedata import data_root_variable

SMALL = {"input_size": (3, 32, 32)}
# Every benchmark read from a layout under the data root: the registry says which, so a new one is tested too.
CANONICAL = tuple(name for name, benchmark in BENCHMARKS.items() if benchmark.canonical)
# Each benchmark's OOD sets, as its own set specs declare them (their names are pinned by the protocol card's
# golden file, tests/golden/protocol.json, for the paper's benchmarks).
OOD_SETS = {name: [s.name for s in BENCHMARKS[name]().sets if s.split == "ood"] for name in CANONICAL}


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake-data")
    for benchmark in CANONICAL:
        write_fake(benchmark, root)
    return root


@pytest.fixture(scope="session")
def fake_folders(tmp_path_factory) -> Path:
    return write_fake("folder", tmp_path_factory.mktemp("fake-folders"))


@pytest.fixture(autouse=True)
def no_data_root_from_environment(monkeypatch):
    """A developer's own data roots must not leak into the tests."""
    for name in BENCHMARKS:
        monkeypatch.delenv(data_root_variable(name), raising=False)
    monkeypatch.delenv("LPFT_BENCH_DATA", raising=False)


def datamodule(name: str, root: Path, **options):
    dm = build_datamodule(name, data_config=SMALL, data_root=str(root), batch_size=4, eval_batch_size=8, **options)
    dm.setup("fit")
    return dm


def eval_set(dm, name: str):
    return next(s for s in dm.eval_sets if s.name == name)


def raw_set(dm, name: str):
    """A set as the loader reads it, (PIL image, label) pairs, before any transform."""
    return dm.read(next(spec for spec in dm.sets if spec.name == name))


def folder_options(fake_folders: Path, **ood) -> dict:
    return {"train": str(fake_folders / "train"), "id_eval": str(fake_folders / "id_eval"),
            "ood": ood or {"shifted": str(fake_folders / "shifted")}}


@pytest.mark.parametrize("name", CANONICAL)
def test_every_benchmark_loads_one_batch_of_every_set(name, fake_root):
    dm = datamodule(name, fake_root)
    assert [s.name for s in dm.eval_sets] == [ID_TEST, *OOD_SETS[name]]
    assert [s.split for s in dm.eval_sets] == ["id"] + ["ood"] * len(OOD_SETS[name])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    for s, loader in zip(dm.eval_sets, dm.val_dataloader()):
        x, y = next(iter(loader))
        assert x.shape[1:] == (3, 32, 32), s.name
        assert ((0 <= y) & (y < dm.num_classes)).all(), s.name
    assert len(dm.splits.train) == len(dm.splits.train_eval)


def test_folder_benchmark_matches_classes_by_folder_name(fake_folders):
    dm = build_datamodule("folder", data_config=SMALL, batch_size=4, mode="paper", **folder_options(fake_folders))
    dm.setup("fit")
    assert dm.splits.class_names == ["cat", "dog", "fox"]
    shifted = raw_set(dm, "shifted")
    # The OOD folder has only cat and fox: fox keeps its training label 2, not its position 1 in that folder.
    assert {Path(path).parent.name: label for path, label in shifted.samples} == {"cat": 0, "fox": 2}
    x, y = next(iter(dm.val_dataloader()[1]))
    assert x.shape[1:] == (3, 32, 32)
    relative = build_datamodule("folder", root=str(fake_folders), train="train", id_eval="id_eval", mode="paper",
                                ood={"shifted": "shifted"})
    assert len(relative.splits.train) == len(dm.splits.train)


@pytest.mark.parametrize("channels,cache_mb", [(3, 0), (1, 64), (3, 64)])
def test_loaders_gather_the_default_collates_batches_bit_for_bit_with_the_same_draws(fake_folders, channels,
                                                                                       cache_mb):
    """The datamodule's loaders gather a batch at once (training: PIL draws per image, one tensor conversion);
    a plain loader over the same set, item by item and torch's default collate, gives the same tensors."""
    config = {"input_size": (channels, 32, 32), "mean": (0.5,) * channels, "std": (0.25,) * channels}
    dm = build_datamodule("folder", data_config=config, batch_size=4, eval_batch_size=3, seed=0, cache_mb=cache_mb,
                          **folder_options(fake_folders))
    dm.setup("fit")
    loaders = [(dm.train_dataloader(), dm.splits.train),
               *zip(dm.val_dataloader(), [s.dataset for s in dm.eval_sets]),
               (dm.eval_loader(dm.splits.train_eval), dm.splits.train_eval)]
    assert type(loaders[0][0].dataset).__name__ == "Gathering"  # the path under test, through the clean-mode Subset
    for loader, dataset in loaders:
        plain = torch.utils.data.DataLoader(dataset, batch_size=loader.batch_size, sampler=loader.sampler,
                                            generator=loader.generator)
        for epoch in range(2):  # the second epoch reads the cache where there is one
            if loader.sampler is not None and hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            torch.manual_seed(epoch)
            gathered = list(loader)
            after_gathered = torch.get_rng_state()
            torch.manual_seed(epoch)
            expected = list(plain)
            assert torch.equal(torch.get_rng_state(), after_gathered)
            assert len(gathered) == len(expected)
            for (images, labels), (expected_images, expected_labels) in zip(gathered, expected):
                assert images.shape[1] == channels and images.dtype == expected_images.dtype == torch.float32
                assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
                assert labels.dtype == expected_labels.dtype


def test_folder_benchmark_rejects_an_unknown_class(fake_folders, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(fake_folders / "shifted", odd)
    shutil.copytree(fake_folders / "shifted" / "cat", odd / "wolf")
    dm = build_datamodule("folder", data_config=SMALL, **folder_options(fake_folders, odd=str(odd)))
    with pytest.raises(DatasetMissing) as error:
        dm.setup("fit")
    assert str(odd / "wolf") in str(error.value) and "folder / odd" in str(error.value)


def test_folder_benchmark_defaults_to_clean_mode(fake_folders):
    dm = build_datamodule("folder", data_config=SMALL, **folder_options(fake_folders))
    assert dm.mode == "clean"
    assert [s.name for s in dm.eval_sets][:2] == [ID_VAL, ID_TEST]


def test_paper_mode_selects_on_the_reported_id_set(fake_root):
    dm = datamodule("living17", fake_root)
    assert dm.mode == "paper" and dm.selection_set == ID_TEST
    assert ID_VAL not in [s.name for s in dm.eval_sets]


def test_clean_mode_holds_out_a_stratified_seeded_id_val(fake_root):
    def split(seed):
        dm = datamodule("living17", fake_root, mode="clean", val_fraction=0.25, seed=seed)
        val = eval_set(dm, ID_VAL)
        return dm, set(val.dataset.indices.tolist()), set(dm.splits.train.indices.tolist())

    dm, val, train = split(0)
    assert dm.selection_set == ID_VAL and [s.name for s in dm.eval_sets][:2] == [ID_VAL, ID_TEST]
    assert not val & train and len(val | train) == 68 and len(val) == 17
    labels = np.asarray(dm.splits.train_eval.dataset.targets)
    assert sorted(labels[sorted(val)]) == list(range(17))  # one of each class's four training images
    assert split(0)[1] == val and split(1)[1] != val


def test_unknown_mode_and_digits_mode(fake_root):
    with pytest.raises(ValueError, match="mode"):
        build_datamodule("cifar10", data_root=str(fake_root), mode="test")
    with pytest.raises(ValueError, match="clean"):
        build_datamodule("digits", mode="paper")


def test_subset_is_stratified_bounded_and_the_same_for_every_seed(fake_root):
    dms = [datamodule("living17", fake_root, subset=34, seed=seed) for seed in (0, 1)]
    splits = dms[0].splits
    assert len(splits.train) == 34 and splits.train.indices.tolist() == splits.train_eval.indices.tolist()
    labels = np.asarray(splits.train.dataset.targets)[splits.train.indices]
    assert np.bincount(labels).tolist() == [2] * 17
    assert all(len(s.dataset) <= 34 for s in dms[0].eval_sets)
    assert splits.train.indices.tolist() == dms[1].splits.train.indices.tolist()
    with pytest.raises(ValueError, match="subset"):
        build_datamodule("living17", subset=0)


def test_digits_takes_the_subset_option():
    dm = build_datamodule("digits", subset=50)
    dm.setup("fit")
    assert len(dm.splits.train) == 50 and all(len(s.dataset) <= 50 for s in dm.eval_sets)


def transform_names(dataset) -> list[str]:
    return [type(t).__name__ for t in dataset.transform.transforms]


def test_augmentation_defaults_follow_the_paper_and_can_be_overridden(fake_root):
    cifar = datamodule("cifar10", fake_root)
    assert cifar.splits.train.transform is cifar.splits.train_eval.transform
    assert list(cifar.splits.train.transform.transforms[0].size) == [32, 32]  # the whole image, resized
    living = datamodule("living17", fake_root)
    assert any("RandomResizedCrop" in n for n in transform_names(living.splits.train))
    assert "RandomHorizontalFlip" in transform_names(living.splits.train)
    assert "ColorJitter" not in transform_names(living.splits.train)
    assert not any("Random" in n for n in transform_names(living.splits.train_eval))
    assert any("RandomResizedCrop" in n for n in transform_names(datamodule("cifar10", fake_root, augment=True).splits.train))
    assert not any("Random" in n for n in transform_names(datamodule("living17", fake_root, augment=False).splits.train))


def test_single_channel_backbones_get_luminance(fake_root):
    dm = build_datamodule("cifar10", data_config={"input_size": (1, 32, 32), "mean": (0.5,), "std": (0.5,)},
                          data_root=str(fake_root), batch_size=4)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 32, 32)


def test_stl10_drops_monkeys_and_maps_labels_to_cifar_order(fake_root):
    stl_labels = np.frombuffer((fake_root / "stl10_binary" / "test_y.bin").read_bytes(), dtype=np.uint8) - 1
    assert (stl_labels == 7).sum() > 0  # the fake has monkeys to drop
    stl = raw_set(datamodule("cifar10", fake_root), "stl10")
    assert len(stl) == (stl_labels != 7).sum()
    for image, label in (stl[i] for i in range(len(stl))):
        written = (int(np.asarray(image)[0, 5, 0]) - 10) // 20  # the STL label the fake wrote into the top row
        assert written != 7 and label == STL10_TO_CIFAR10[written]
    assert 6 not in stl.targets  # frog has no STL-10 images, but its logit stays
    assert datamodule("cifar10", fake_root).num_classes == 10


def test_cifar101_version_is_selectable(fake_root):
    v6 = eval_set(datamodule("cifar10", fake_root), "cifar10.1")
    v4 = eval_set(datamodule("cifar10", fake_root, cifar101_version="v4"), "cifar10.1")
    assert len(v4.dataset) == len(v6.dataset) + 1
    with pytest.raises(ValueError, match="v6"):
        build_datamodule("cifar10", cifar101_version="v5")


def test_imagenet_r_and_a_predict_only_their_200_classes(fake_root):
    dm = datamodule("imagenet", fake_root)
    r = eval_set(dm, "imagenet-r")
    assert r.class_subset == tuple(sorted(IMAGENET_INDEX[w] for w in IMAGENET_R_WNIDS)) and len(r.class_subset) == 200
    assert set(raw_set(dm, "imagenet-r").targets) <= set(r.class_subset)
    logits = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0))
    assert set(restrict_logits(logits, r.class_subset).argmax(-1).tolist()) <= set(r.class_subset)
    a = eval_set(dm, "imagenet-a")
    assert len(a.class_subset) == 200 and a.class_subset != r.class_subset
    assert eval_set(dm, "imagenet-v2").class_subset is None and dm.num_classes == 1000


def test_imagenet_labels_are_1k_indices_and_v2_folders_are_numbers(fake_root):
    dm = datamodule("imagenet", fake_root)
    for path, label in raw_set(dm, "train").samples:
        assert label == IMAGENET_INDEX[Path(path).parent.name]
    v2 = {Path(path).parent.name: label for path, label in raw_set(dm, "imagenet-v2").samples}
    assert v2 == {"0": 0, "2": 2, "10": 10, "100": 100, "999": 999}


def test_imagenet_rejects_a_folder_that_is_not_a_class(fake_root, tmp_path):
    shutil.copytree(fake_root / "imagenet-r", tmp_path / "imagenet-r")
    (tmp_path / "imagenet-r" / "n01440764").mkdir()  # tench: an ImageNet class, not an ImageNet-R one
    with pytest.raises(DatasetMissing, match="n01440764"):
        build_datamodule("imagenet", root=str(tmp_path), ood_sets=["imagenet-r"]).read(
            next(s for s in BENCHMARKS["imagenet"].sets if s.name == "imagenet-r"))


def test_breeds_reads_source_subclasses_for_id_and_target_subclasses_for_ood(fake_root):
    dm = datamodule("living17", fake_root)
    for name, side in (("train", "source"), (ID_TEST, "source"), ("living17-target", "target")):
        for path, label in raw_set(dm, name).samples:
            assert Path(path).parent.name in getattr(LIVING17[label], side)
    assert dm.splits.class_names[3] == "snake, serpent, ophidian"


def test_domainnet_labels_come_from_the_sentry_list(fake_root):
    dm = datamodule("domainnet", fake_root)
    for name in ("train", ID_TEST, "real", "painting", "clipart"):
        images = raw_set(dm, name)
        assert all(DOMAINNET40[label] == Path(path).parent.name for path, label in zip(images.paths, images.targets))
    butterflies = {label for path, label in zip(raw_set(dm, "train").paths, raw_set(dm, "train").targets)
                   if Path(path).parent.name == "butterfly"}
    assert butterflies == {36}  # not its alphabetical position


def test_domainnet_rejects_a_label_that_contradicts_the_table(fake_root, tmp_path):
    shutil.copytree(fake_root / "domainnet", tmp_path / "domainnet")
    listing = tmp_path / "domainnet" / "sketch_train_mini.txt"
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join([lines[0].rsplit(" ", 1)[0] + " 5", *lines[1:]]))
    with pytest.raises(DatasetMissing, match="line 1"):
        datamodule("domainnet", tmp_path)


def test_fmow_selects_regions_by_name_from_the_in_time_splits(fake_root):
    dm = datamodule("fmow", fake_root)
    metadata = pd.read_csv(fake_root / "fmow_v1.1" / "rgb_metadata.csv")
    expected = {"train": ("train", {"USA", "BRA"}), ID_TEST: ("val", {"USA", "BRA"}),
                "africa": ("val", {"NGA"}), "europe": ("val", {"FRA"})}
    for name, (split, countries) in expected.items():
        images = raw_set(dm, name)
        rows = metadata.iloc[[int(Path(p).stem.removeprefix("rgb_img_")) for p in images.paths]]
        assert set(rows["split"]) == {split} and set(rows["country_code"]) == countries, name
        assert all(ts.startswith("2010") for ts in rows["timestamp"]), name
        assert len(images) == ((metadata["split"] == split) & metadata["country_code"].isin(countries)
                               & metadata["timestamp"].str.startswith("2010")).sum()
    # Category 61 never occurs in the Americas training images; the model keeps all 62 outputs.
    assert 61 not in raw_set(dm, "train").targets and 61 in raw_set(dm, "africa").targets
    assert dm.num_classes == 62


def test_missing_data_names_benchmark_set_path_layout_and_source(fake_root, tmp_path):
    shutil.copytree(fake_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    dm = build_datamodule("cifar10", data_config=SMALL, data_root=str(tmp_path))
    with pytest.raises(DatasetMissing) as error:
        dm.setup("fit")
    message = str(error.value)
    assert message.startswith("cifar10 / stl10: STL-10 (binary) not found")
    assert str(tmp_path / "stl10_binary") in message
    assert "test_X.bin" in message and "stl10_binary.tar.gz" in message
    # The user who has only CIFAR-10 and STL-10 leaves CIFAR-10.1 out.
    shutil.copytree(fake_root / "stl10_binary", tmp_path / "stl10_binary")
    datamodule("cifar10", tmp_path, ood_sets=["stl10"])
    with pytest.raises(ValueError, match="cifar10.2"):
        build_datamodule("cifar10", ood_sets=["cifar10.2"])


def test_a_missing_subclass_folder_is_named(fake_root, tmp_path):
    shutil.copytree(fake_root / "imagenet", tmp_path / "imagenet")
    shutil.rmtree(tmp_path / "imagenet" / "val" / LIVING17[0].target[0])
    with pytest.raises(DatasetMissing) as error:
        datamodule("living17", tmp_path)
    assert "living17 / living17-target" in str(error.value)
    assert str(tmp_path / "imagenet" / "val" / LIVING17[0].target[0]) in str(error.value)


def test_no_data_root_says_how_to_set_one():
    with pytest.raises(DatasetMissing, match="LPFT_BENCH_DATA_FMOW"):
        build_datamodule("fmow").setup("fit")


def test_data_root_overrides(fake_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LPFT_BENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetMissing):
        build_datamodule("fmow").setup("fit")
    monkeypatch.setenv("LPFT_BENCH_DATA_FMOW", str(fake_root))
    build_datamodule("fmow", data_root=str(tmp_path)).setup("fit")
    monkeypatch.setenv("LPFT_BENCH_DATA_FMOW", str(tmp_path))
    build_datamodule("fmow", data_root=str(tmp_path), root=str(fake_root)).setup("fit")


def test_a_corrupt_image_is_named(fake_root, tmp_path):
    shutil.copytree(fake_root / "imagenet", tmp_path / "imagenet")
    victim = sorted((tmp_path / "imagenet" / "train" / LIVING17[0].source[0]).iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:200])  # a JPEG cut short, as by an interrupted copy
    dm = datamodule("living17", tmp_path)
    index = [path for path, _ in dm.splits.train.images.samples].index(str(victim))
    with pytest.raises(CorruptImage, match=re.escape(str(victim))):
        dm.splits.train[index]


def test_every_canonical_benchmark_writes_its_own_fake_and_runs_in_the_smoke_suite(tmp_path):
    assert all(BENCHMARKS[name].write_fake is not None for name in CANONICAL)
    smoke = SUITES["smoke"].benchmarks
    assert list(smoke)[:1 + len(CANONICAL)] == ["digits", *CANONICAL]
    # ... and the paper's architectures, each on the fake of a benchmark it ran on.
    assert {label: (plan.benchmark, plan.backbone) for label, plan in list(smoke.items())[1 + len(CANONICAL):]} == {
        "living17-resnet50": ("living17", "moco-v2-resnet50"), "domainnet-clip-rn50": ("domainnet", "clip-resnet50"),
        "imagenet-clip-vit-b16": ("imagenet", "clip-vit-b16"),
        "cifar10-sup-c10-resnet18": ("cifar10", "sup-c10-resnet18")}
    with pytest.raises(UsageError, match="no fake for 'digits'"):  # its data ships with scikit-learn
        write_fake("digits", tmp_path)
    with pytest.raises(UsageError, match="images_per_class"):
        write_fake("cifar10", tmp_path, images_per_class=0)


def test_dataset_missing_survives_pickling():
    error = DatasetMissing("/data/x", "not found", "cifar10", "stl10", "layout", "obtain")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_check_lists_every_set_of_every_canonical_benchmark(fake_root, tmp_path):
    rows = check_benchmarks(str(fake_root))
    assert {r.benchmark for r in rows} == set(CANONICAL)
    assert [(r.benchmark, r.eval_set) for r in rows if r.split == "ood"] == \
        [(name, s) for name in CANONICAL for s in OOD_SETS[name]]
    assert all(r.found for r in rows)
    stl = next(r for r in rows if r.benchmark == "cifar10" and r.eval_set == "stl10")
    assert stl.images == 18 and stl.expected == 7_200 and stl.path == str(fake_root / "stl10_binary")
    table = format_check(rows)
    assert f"{len(rows)} of {len(rows)} sets found" in table and "imagenet-sketch" in table

    missing = check_benchmarks(str(tmp_path))
    assert not any(r.found for r in missing) and len(missing) == len(rows)
    table = format_check(missing)
    assert f"0 of {len(rows)} sets found" in table and "cifar-10-python.tar.gz" in table and str(tmp_path / "sketch") in table
