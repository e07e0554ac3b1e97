"""Sup-C10 (issue 27): `lpft-bench pretrain cifar10` on real CIFAR-10 images reproduces its digest, resumes, and the
result is a backbone identified by that digest."""
from __future__ import annotations

import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpft_bench.cli import main
from lpft_bench.datamodules.class_tables import CIFAR10_CLASSES
from lpft_bench.models import BACKBONES, build_backbone, resolve_backbone
from lpft_bench.models.cifar_pretraining import RESUME_SUFFIX, augment

SHARED_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
PER_CLASS = 13  # 130 real training images: one batch of the recipe's 128


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """The first PER_CLASS real training images of each class (and of the test split), as torchvision's pickles."""
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"{SHARED_CIFAR} is absent: the real-image archives live in shared/data beside the repository")
    found: dict[str, list[tuple[str, np.ndarray, int]]] = {"train": [], "test": []}
    with tarfile.open(SHARED_CIFAR) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                split, class_name, _ = member.name.split("/")[-3:]
                label = CIFAR10_CLASSES.index(class_name)
                if sum(item[2] == label for item in found[split]) < PER_CLASS:
                    image = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"))
                    found[split].append((member.name, image, label))
    root = tmp_path_factory.mktemp("cifar")
    directory = root / "cifar-10-batches-py"
    directory.mkdir()
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        items = sorted(found[split], key=lambda item: item[0])
        for name, chunk in zip(names, np.array_split(np.arange(len(items)), len(names))):
            images = np.stack([items[i][1] for i in chunk])
            with open(directory / name, "wb") as f:
                pickle.dump({"data": images.transpose(0, 3, 1, 2).reshape(len(chunk), -1),
                             "labels": [items[i][2] for i in chunk]}, f)
    return root


def pretrain(cifar_root: Path, out: Path, capsys, *options: str) -> str:
    assert main(["pretrain", "cifar10", "--arch", "resnet18", "--data-root", str(cifar_root), "--out", str(out),
                 "--epochs", "1", *options]) == 0
    return re.search(r"sha256 ([0-9a-f]{64})", capsys.readouterr().out).group(1)


@pytest.mark.slow  # two one-step runs of the recipe's batch of 128: ~20 s on one CPU thread
def test_pretraining_on_real_cifar10_reproduces_its_digest_and_is_a_backbone(cifar_root, tmp_path, monkeypatch, capsys):
    first = pretrain(cifar_root, tmp_path / "a", capsys)
    assert pretrain(cifar_root, tmp_path / "b", capsys) == first
    assert not (tmp_path / "a" / ("sup-c10-resnet18.safetensors" + RESUME_SUFFIX)).exists()  # done: nothing to resume
    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path / "a"))
    spec = resolve_backbone("sup-c10-resnet18")
    assert spec.meaning()["weights"] == f"pretrained:sup-c10-resnet18.safetensors@sha256:{first}"
    model, data_config = build_backbone(spec)
    assert data_config["input_size"] == (3, 32, 32) and model(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    assert resolve_backbone("sup-c10-resnet18", options={"random": True}).meaning()["weights"] is None


@pytest.mark.slow  # four steps of the recipe: ~45 s on one CPU thread
def test_an_interrupted_pretraining_resumes_from_its_last_epoch(cifar_root, tmp_path, capsys, monkeypatch):
    import lpft_bench.models.cifar_pretraining as pretraining

    two_epochs = ("--epochs", "2", "--subset", "13")  # 130 images: one step per epoch
    straight = pretrain(cifar_root, tmp_path / "straight", capsys, *two_epochs)
    real_augment, calls = pretraining.augment, []

    def counted(*args, die_at: int | None = None):
        calls.append(1)
        if len(calls) == die_at:
            raise KeyboardInterrupt
        return real_augment(*args)

    monkeypatch.setattr(pretraining, "augment", lambda *args: counted(*args, die_at=2))
    with pytest.raises(KeyboardInterrupt):
        pretrain(cifar_root, tmp_path / "resumed", capsys, *two_epochs)
    assert (tmp_path / "resumed" / ("sup-c10-resnet18.safetensors" + RESUME_SUFFIX)).is_file()
    calls.clear()
    monkeypatch.setattr(pretraining, "augment", lambda *args: counted(*args))
    assert pretrain(cifar_root, tmp_path / "resumed", capsys, *two_epochs) == straight
    assert len(calls) == 1  # only the second epoch ran again


def test_augmentation_is_the_authors_crop_and_flip_drawn_from_the_given_generator():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    a = augment(images, 32, torch.Generator().manual_seed(3))
    assert torch.equal(a, augment(images, 32, torch.Generator().manual_seed(3)))
    assert a.shape == (4, 3, 32, 32) and augment(images, 224, torch.Generator()).shape == (4, 3, 224, 224)


def test_missing_sup_c10_weights_say_how_to_make_them(tmp_path, monkeypatch):
    from lpft_bench.errors import UsageError

    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path))
    with pytest.raises(UsageError, match="lpft-bench pretrain cifar10 --arch resnet50"):
        BACKBONES["sup-c10-resnet50"].meaning()
