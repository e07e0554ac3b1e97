"""Ren et al.'s ImageNet backbones (issue 27): `weights download` of torchvision's supervised ResNet-50 and OpenMMLab's
SimCLR and BYOL ResNet-50 against a 127.0.0.1 server serving tiny fakes in the upstream formats: torchvision's bare
state dict (classifier `fc` included) and OpenMMLab's `{"meta", "state_dict"}` with `backbone.*` beside the neck,
head and BYOL's momentum target network."""
from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import replace

import pytest
import timm
import torch
from test_download import digest, mirror  # noqa: F401 - the loopback server fixture

from lpft_bench.cli import main
from lpft_bench.datamodules.sources import WEIGHTS
from lpft_bench.models import BACKBONES, build_backbone, resolve_backbone

REN_IMAGENET_BACKBONES = ("sup-in-resnet50", "simclr-resnet50", "byol-resnet50")
TINY = {"channels": (8, 8, 8, 8), "stem_width": 8}


def torch_file(content) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


def upstream_file(name: str, resnet: dict[str, torch.Tensor]) -> bytes:
    """The file as its publisher serves it, around the weights of a tiny ResNet (its classifier `fc` included)."""
    if name == "sup-in-resnet50":
        return torch_file(OrderedDict(resnet))
    backbone = {f"backbone.{k}": v for k, v in resnet.items() if not k.startswith("fc.")}
    neck = {"neck.mlp.0.weight": torch.randn(16, 8), "neck.mlp.2.weight": torch.randn(8, 16)}
    state = {**backbone, **neck}
    if name == "byol-resnet50":
        state.update({f"target_net.module.0.{k.removeprefix('backbone.')}": v for k, v in backbone.items()})
        state.update({"target_net.steps": torch.tensor(0), "head.predictor.mlp.0.weight": torch.randn(16, 8)})
    meta = {"epoch": 200, "iter": 500_400, "mmselfsup_version": "1.0.0rc1", "dataset_meta": {}}
    return torch_file({"meta": meta, "state_dict": OrderedDict(state)})


def test_published_checksums_are_the_digits_in_the_file_names():
    """torchvision and OpenMMLab name each file by the first 8 digits of its sha256: the table says the same."""
    for name in REN_IMAGENET_BACKBONES:
        download = WEIGHTS[name].download
        assert download.checksum.kind == "sha256" and len(download.checksum.value) == 8
        assert download.name.endswith(f"-{download.checksum.value}.pth") and download.url.endswith("/" + download.name)
        assert BACKBONES[name].weights == f"checkpoint:{download.name}"


def test_weights_download_fetches_verifies_and_loads_ren_backbones(mirror, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path))
    resnet = timm.create_model("resnet10t", num_classes=10, **TINY).state_dict()
    for name in REN_IMAGENET_BACKBONES:
        monkeypatch.setitem(BACKBONES, name, replace(BACKBONES[name], timm_name="resnet10t", timm_kwargs=TINY))
        entry = WEIGHTS[name]
        data = upstream_file(name, resnet)
        mirror.files[entry.download.name] = data
        checksum = replace(entry.download.checksum, value=digest(data, "sha256")[:8])  # the fake's own prefix
        monkeypatch.setitem(WEIGHTS, name, replace(entry, download=replace(entry.download, checksum=checksum)))
    assert main(["weights", "download", *REN_IMAGENET_BACKBONES, "--mirror", mirror.url]) == 0
    for name in REN_IMAGENET_BACKBONES:
        assert (tmp_path / WEIGHTS[name].download.name).is_file()
        model, _ = build_backbone(BACKBONES[name])
        assert torch.equal(model.state_dict()["layer4.0.conv1.weight"], resnet["layer4.0.conv1.weight"])
        assert model.num_classes == 0  # the supervised classifier is left out, not loaded


def test_a_file_whose_sha256_prefix_differs_is_refused(mirror, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path))
    entry = WEIGHTS["simclr-resnet50"]
    mirror.files[entry.download.name] = b"not the published file"
    assert main(["weights", "download", "simclr-resnet50", "--mirror", mirror.url]) != 0
    assert "4d9cce50" in capsys.readouterr().err and not (tmp_path / entry.download.name).exists()


@pytest.mark.parametrize("name", [*REN_IMAGENET_BACKBONES, "sup-c10-resnet50"])
def test_every_ren_backbone_is_the_resnet50_the_smoke_suite_covers(name):
    """Untrained, each is timm's ResNet-50, the architecture the smoke suite's living17-resnet50 runs every strategy on."""
    spec = resolve_backbone(name, options={"random": True})
    assert spec.timm_name == BACKBONES["moco-v2-resnet50"].timm_name == "resnet50" and spec.weights is None
