"""The CIFAR-10 and ImageNet loaders on real images (../shared/data), skipped where that data is absent."""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpft_bench.datamodules import BENCHMARKS, ID_TEST, build_datamodule, check_benchmarks
from lpft_bench.datamodules.class_tables import CIFAR10_CLASSES
from lpft_bench.datamodules.imagedata import data_root_variable

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMALL = {"input_size": (3, 32, 32)}
# The Imagenette classes and their ImageNet-1k indices (tench, English springer, cassette player, chain saw,
# church, French horn, garbage truck, gas pump, golf ball, parachute).
IMAGENETTE = {"n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491, "n03028079": 497,
              "n03394916": 566, "n03417042": 569, "n03425413": 571, "n03445777": 574, "n03888257": 701}


@pytest.fixture(autouse=True)
def no_data_root_from_environment(monkeypatch):
    for name in BENCHMARKS:
        monkeypatch.delenv(data_root_variable(name), raising=False)
    monkeypatch.delenv("LPFT_BENCH_DATA", raising=False)


def archive(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real-image archives live in shared/data beside the repository")
    return path


def read_cifar_jpegs(path: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Images and labels of each split of the JPEG copy, decoded straight from the archive, in name order."""
    found: dict[str, list[tuple[str, np.ndarray, int]]] = {"train": [], "test": []}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                split, class_name, _ = member.name.split("/")[-3:]
                image = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"))
                found[split].append((member.name, image, CIFAR10_CLASSES.index(class_name)))
    return {split: (np.stack([image for _, image, _ in sorted(items, key=lambda item: item[0])]),
                    [label for _, _, label in sorted(items, key=lambda item: item[0])])
            for split, items in found.items()}


def write_cifar_pickles(splits: dict[str, tuple[np.ndarray, list[int]]], cifar_dir: Path) -> None:
    """torchvision's CIFAR-10 pickle format: 5 train batches of 10,000 and a test batch, rows channel-major."""
    cifar_dir.mkdir(parents=True)

    def dump(name: str, images: np.ndarray, labels: list[int]) -> None:
        with open(cifar_dir / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                         "labels": labels}, f)

    images, labels = splits["train"]
    order = np.random.default_rng(0).permutation(len(labels))  # the original batches mix the classes too
    for i, chunk in enumerate(np.split(order, 5), start=1):
        dump(f"data_batch_{i}", images[chunk], [labels[j] for j in chunk])
    dump("test_batch", *splits["test"])
    with open(cifar_dir / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": 10_000, "num_vis": 3072}, f)


@pytest.fixture(scope="session")
def cifar_jpegs() -> dict[str, tuple[np.ndarray, list[int]]]:
    return read_cifar_jpegs(archive("cifar10-jpeg.tar.gz"))


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory, cifar_jpegs) -> Path:
    root = tmp_path_factory.mktemp("cifar10-root")
    write_cifar_pickles(cifar_jpegs, root / "cifar-10-batches-py")
    return root


@pytest.fixture(scope="session")
def imagenette_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenette-root")
    with tarfile.open(archive("imagenette-mini.tar.gz")) as tar:
        tar.extractall(root / "imagenet", filter="data")
    return root


def test_real_cifar10_pickles_load_in_full(cifar_root, cifar_jpegs):
    dm = build_datamodule("cifar10", data_config=SMALL, data_root=str(cifar_root), batch_size=8, ood_sets=[])
    dm.setup("fit")
    assert len(dm.splits.train) == 50_000 and [s.name for s in dm.eval_sets] == [ID_TEST]
    test = dm.eval_sets[0].dataset
    assert len(test) == 10_000
    assert np.bincount(dm.splits.train.targets).tolist() == [5_000] * 10
    assert np.bincount(test.targets).tolist() == [1_000] * 10
    test_images, test_labels = cifar_jpegs["test"]
    for index in (0, 9_999):
        image, label = test.images[index]
        assert np.array_equal(np.asarray(image), test_images[index]) and label == test_labels[index]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32)
    rows = {r.eval_set: r for r in check_benchmarks(str(cifar_root)) if r.benchmark == "cifar10"}
    assert rows["train"].status == "found" and rows[ID_TEST].images == 10_000 and not rows["stl10"].found


def test_real_imagenet_folders_get_1k_indices(imagenette_root):
    dm = build_datamodule("imagenet", data_config=SMALL, data_root=str(imagenette_root), batch_size=8,
                          eval_batch_size=8, ood_sets=[])
    dm.setup("fit")
    train, val = dm.splits.train.images, dm.eval_sets[0].dataset.images
    assert (len(train), len(val)) == (1_500, 500)
    for images in (train, val):
        assert {Path(path).parent.name: label for path, label in images.samples} == IMAGENETTE
    x, y = next(iter(dm.val_dataloader()[0]))
    assert x.shape == (8, 3, 32, 32) and set(y.tolist()) <= set(IMAGENETTE.values())
