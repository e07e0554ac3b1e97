"""`data download` and `weights download` against a 127.0.0.1 server that serves tiny fakes in the upstream
formats (torchvision's CIFAR/STL archives, .npy pairs, tars of folders, a zip per DomainNet domain with the
SENTRY lists, WILDS's FMoW archive, MoCo and OpenAI CLIP checkpoints) through --mirror.

The fakes' checksums differ from the published ones, so each test puts the fakes' own digests into the table
(the production table is untouched outside the test)."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import warnings
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import timm
import torch

from lpft_bench.cli import main
from lpft_bench.datamodules import check_benchmarks, write_fake
from lpft_bench.datamodules import download as download_module
from lpft_bench.datamodules.sources import DATASETS, WEIGHTS, Checksum
from lpft_bench.models import BACKBONES, build_backbone


# Ren et al.'s tasks (ID evaluation only): stl10's files are CIFAR-10's OOD set's, already served.
REN_TASKS = ("cifar100", "stl10", "flowers102", "domainnet-real-200", "domainnet-sketch-200", "domainnet-quickdraw-200")
ALL_BENCHMARKS = ("cifar10", "domainnet", "fmow", "imagenet", *REN_TASKS)


def digest(data: bytes, kind: str) -> str:
    if kind == "git-blob-sha1":
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return hashlib.new(kind, data).hexdigest()


class Mirror:
    """Files by name; `cut[name] = n` closes the connection after n bytes of the next response for it."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("?")[0]
                mirror.requests.append((name, self.headers.get("Range")))
                if name not in mirror.files:
                    self.send_error(404)
                    return
                data = mirror.files[name]
                start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:start + mirror.cut.pop(name, len(data))])
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def ranges(self, name: str) -> list[str | None]:
        return [r for n, r in self.requests if n == name]


@pytest.fixture
def mirror():
    server = Mirror()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    stop = threading.Timer(120, server.server.shutdown)  # never outlives a stuck test
    stop.start()
    yield server
    stop.cancel()
    server.server.shutdown()
    server.server.server_close()


def packed(folder: Path, kind: str, arcname: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as zipped:
            for path in sorted(folder.rglob("*")):
                zipped.write(path, f"{arcname}/{path.relative_to(folder)}")
    else:
        with tarfile.open(fileobj=buffer, mode=kind) as tar:
            tar.add(folder, arcname=arcname)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """Fakes in their canonical layout (to compare with) and the same fakes as the upstream files."""
    root = tmp_path_factory.mktemp("fakes")
    for benchmark in ("cifar10", "domainnet", "fmow", "imagenet", *REN_TASKS):
        write_fake(benchmark, root, images_per_class=1)
    files = {
        "cifar-100-python.tar.gz": packed(root / "cifar-100-python", "w:gz", "cifar-100-python"),
        # Oxford's archive holds jpg/ at its top; the two .mat files are served as they are.
        "102flowers.tgz": packed(root / "flowers-102" / "jpg", "w:gz", "jpg"),
        "imagelabels.mat": (root / "flowers-102" / "imagelabels.mat").read_bytes(),
        "setid.mat": (root / "flowers-102" / "setid.mat").read_bytes(),
        "cifar-10-python.tar.gz": packed(root / "cifar-10-batches-py", "w:gz", "cifar-10-batches-py"),
        "stl10_binary.tar.gz": packed(root / "stl10_binary", "w:gz", "stl10_binary"),
        "fmow_v1.1.tar.gz": packed(root / "fmow_v1.1", "w:gz", "."),  # WILDS unpacks it into fmow_v1.1/
        "imagenetv2-matched-frequency.tar.gz": packed(root / "imagenetv2-matched-frequency-format-val", "w:gz",
                                                      "imagenetv2-matched-frequency-format-val"),
        "imagenet-r.tar": packed(root / "imagenet-r", "w", "imagenet-r"),
        "imagenet-a.tar": packed(root / "imagenet-a", "w", "imagenet-a"),
        "ImageNet-Sketch.zip": packed(root / "sketch", "zip", "sketch"),
    }
    for path in (root / "cifar10.1").glob("*.npy"):
        files[path.name] = path.read_bytes()
    for domain in ("sketch", "real", "painting", "clipart", "quickdraw"):
        files[f"{domain}.zip"] = packed(root / "domainnet" / domain, "zip", domain)
        for name in (f"{domain}_{split}{mini}.txt" for split in ("train", "test") for mini in ("_mini", "")):
            if (root / "domainnet" / name).exists():  # SENTRY's lists (no quickdraw), the official ones (3 domains)
                files[name] = (root / "domainnet" / name).read_bytes()
    return root, files


def with_fake_checksums(monkeypatch, files: dict[str, bytes]) -> None:
    for name, downloads in DATASETS.items():
        monkeypatch.setitem(DATASETS, name, tuple(
            replace(d, size=len(files[d.name]),
                    checksum=d.checksum and replace(d.checksum, value=digest(files[d.name], d.checksum.kind)))
            for d in downloads))


@pytest.fixture
def served(mirror, upstream, monkeypatch):
    mirror.files.update(upstream[1])
    with_fake_checksums(monkeypatch, upstream[1])
    return mirror


def download(root: Path, *names: str, mirror: Mirror | None = None, url: str | None = None) -> int:
    return main(["data", "download", *names, "--data-root", str(root), "--mirror", url or mirror.url])


def test_dry_run_prints_the_published_addresses_and_md5s(capsys):
    assert main(["data", "download", "--dry-run", "cifar10", "stl10"]) == 0
    out = capsys.readouterr().out
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in out
    assert "md5 c58f30108f718f92721af3b95e74349a" in out
    assert "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz" in out
    assert "md5 91f7769df0f17e558f3565bffb0c7dfb" in out
    assert out.count("stl10_binary.tar.gz ->") == 1  # stl10 is also a set of cifar10: listed once


def test_every_benchmark_downloads_and_data_check_finds_it(served, upstream, tmp_path, capsys):
    assert download(tmp_path, *ALL_BENCHMARKS, mirror=served) == 0
    out = capsys.readouterr().out
    assert "ILSVRC2012_img_val.tar" in out and "data check" in out  # ImageNet's manual steps
    expected = {(r.benchmark, r.eval_set): r.images for r in check_benchmarks(str(upstream[0]))}
    rows = [r for r in check_benchmarks(str(tmp_path)) if r.benchmark in ALL_BENCHMARKS]
    assert {r.benchmark for r in rows} == set(ALL_BENCHMARKS)
    manual = {("imagenet", "train"), ("imagenet", "id_test")}
    assert {(r.benchmark, r.eval_set) for r in rows if not r.found} == manual
    assert all(r.images == expected[r.benchmark, r.eval_set] for r in rows if r.found)
    assert list((tmp_path / ".downloads").iterdir()) == []  # archives removed once installed
    assert main(["data", "check", "--data-root", str(tmp_path)]) == 0
    assert "sets found" in capsys.readouterr().out
    served.requests.clear()
    assert download(tmp_path, "cifar10", mirror=served) == 0  # everything there: nothing fetched again
    assert served.requests == []


def test_dry_run_prints_ren_tasks_published_addresses_and_md5s(capsys):
    """torchvision's addresses and md5s (cifar.py CIFAR100, flowers102.py Flowers102._file_dict)."""
    assert main(["data", "download", "--dry-run", *REN_TASKS]) == 0
    out = capsys.readouterr().out
    for address, md5 in (("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
                         ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb"),
                         ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz", "52808999861908f626f3c1f4e79d11fa"),
                         ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat", "e0620be6f572b9609742df49c70aed4d"),
                         ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat", "a5357ecc9cb78c4bef273ce3793fc85c")):
        assert f"{address}\n      md5 {md5}" in out


@pytest.mark.parametrize("name", REN_TASKS)
def test_each_ren_task_downloads_alone_into_what_its_loader_reads(name, served, upstream, tmp_path):
    assert download(tmp_path, name, mirror=served) == 0
    expected = {r.eval_set: r.images for r in check_benchmarks(str(upstream[0])) if r.benchmark == name}
    found = {r.eval_set: r.images for r in check_benchmarks(str(tmp_path)) if r.benchmark == name}
    assert found == expected and all(found.values())
    assert list((tmp_path / ".downloads").iterdir()) == []


def test_a_corrupt_flowers_split_file_is_refused_before_it_is_installed(served, upstream, tmp_path, capsys):
    good = upstream[1]["setid.mat"]
    served.files["setid.mat"] = good[:-1] + bytes([good[-1] ^ 1])
    assert download(tmp_path, "flowers102", mirror=served) == 2
    error = capsys.readouterr().err
    assert "setid.mat from" in error and "is not the published" in error
    assert not (tmp_path / "flowers-102" / "setid.mat").exists()


def test_a_download_cut_half_way_resumes_with_a_range_request(served, upstream, tmp_path):
    name = "cifar-10-python.tar.gz"
    half = len(upstream[1][name]) // 2
    served.cut[name] = half
    assert download(tmp_path, "cifar-10", mirror=served) == 0
    assert served.ranges(name) == [None, f"bytes={half}-"]
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_a_prefix_left_by_a_killed_run_is_resumed(served, upstream, tmp_path):
    name = "stl10_binary.tar.gz"
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / name).write_bytes(upstream[1][name][:1000])
    assert download(tmp_path, "stl10", mirror=served) == 0
    assert served.ranges(name) == ["bytes=1000-"]
    assert (tmp_path / "stl10_binary" / "test_X.bin").is_file()


def test_a_corrupt_archive_is_refused_and_removed(served, upstream, tmp_path, capsys):
    name = "stl10_binary.tar.gz"
    good = upstream[1][name]
    served.files[name] = good[:100] + bytes([good[100] ^ 1]) + good[101:]
    assert download(tmp_path, "stl10", mirror=served) == 2
    assert "is not the published" in capsys.readouterr().err
    assert not (tmp_path / "stl10_binary").exists()
    assert not (tmp_path / ".downloads" / name).exists()  # whole but wrong: no use for resuming


def test_an_archive_without_checksum_is_checked_against_its_structure(served, upstream, tmp_path, capsys):
    fakes = upstream[0] / "domainnet"
    served.files["clipart.zip"] = packed(fakes / "painting", "zip", "clipart")  # the wrong domain's images
    assert download(tmp_path, "domainnet", mirror=served) == 2
    assert "named by the SENTRY" in capsys.readouterr().err
    assert not (tmp_path / "domainnet" / "clipart").exists() and (tmp_path / "domainnet" / "painting").is_dir()
    served.files["clipart.zip"] = b"not a zip at all"
    assert download(tmp_path, "domainnet", mirror=served) == 2
    assert "not a readable zip" in capsys.readouterr().err
    assert not (tmp_path / "domainnet" / "clipart").exists()


def test_no_server_is_a_clear_one_line_error(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert download(tmp_path, "stl10", url=closed) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lpft-bench:")]
    assert len(errors) == 1 and f"cannot reach {closed}/stl10_binary.tar.gz" in errors[0]
    assert "download http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz yourself" in errors[0]


def test_no_space_stops_before_anything_is_fetched(served, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 10})())
    assert download(tmp_path, "imagenet-r", mirror=served) == 2
    assert "free in" in capsys.readouterr().err and served.requests == []


def test_unknown_names_list_the_known_ones(capsys):
    assert main(["data", "download", "--dry-run", "cifar1000"]) == 2
    assert "known:" in capsys.readouterr().err
    assert main(["weights", "download", "--dry-run", "resnet-9000"]) == 2
    assert "moco-v2-resnet50" in capsys.readouterr().err


def test_git_blob_checksums_are_git_object_ids(tmp_path):
    path = tmp_path / "hello"
    path.write_bytes(b"hello world\n")
    assert download_module.matches(path, Checksum("git-blob-sha1", "3b18e512dba79e4c8300dd08aeb37f8e728b8dad", "git"))


class Scriptable(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def torchscript_archive(state: dict[str, torch.Tensor]) -> bytes:
    """A TorchScript file whose state dict is `state`, as OpenAI's CLIP releases are."""
    root = Scriptable()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated, and still what OpenAI's files are
        torch.jit.save(torch.jit.script(root), buffer)
    return buffer.getvalue()


def openai_vit(width: int, tokens: int, output: int) -> dict[str, torch.Tensor]:
    """OpenAI's names for a one-block ViT image tower (CLIP's model.py), plus a text tensor that must be dropped."""
    block = "visual.transformer.resblocks.0."
    shapes = {"visual.class_embedding": (width,), "visual.positional_embedding": (tokens, width),
              "visual.conv1.weight": (width, 3, 16, 16), "visual.proj": (width, output),
              f"{block}attn.in_proj_weight": (3 * width, width), f"{block}attn.in_proj_bias": (3 * width,),
              f"{block}attn.out_proj.weight": (width, width), f"{block}attn.out_proj.bias": (width,),
              f"{block}mlp.c_fc.weight": (4 * width, width), f"{block}mlp.c_fc.bias": (4 * width,),
              f"{block}mlp.c_proj.weight": (width, 4 * width), f"{block}mlp.c_proj.bias": (width,),
              "token_embedding.weight": (10, width)}
    for norm in ("visual.ln_pre", "visual.ln_post", f"{block}ln_1", f"{block}ln_2"):
        shapes |= {f"{norm}.weight": (width,), f"{norm}.bias": (width,)}
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=generator).half() for key, shape in shapes.items()}  # fp16 as released


def test_weights_download_saves_loadable_checkpoints(mirror, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path))
    tiny_resnet = replace(BACKBONES["moco-v2-resnet50"], timm_name="resnet10t",
                          timm_kwargs={"channels": (8, 8, 8, 8), "stem_width": 8})
    # One transformer block of width 32 on 32x32 images (4 patches + the class token), OpenAI's 512-d projection.
    tiny_vit = replace(BACKBONES["clip-vit-b16"], timm_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 32})
    monkeypatch.setitem(BACKBONES, "moco-v2-resnet50", tiny_resnet)
    monkeypatch.setitem(BACKBONES, "clip-vit-b16", tiny_vit)
    moco = timm.create_model("resnet10t", num_classes=10, **tiny_resnet.timm_kwargs).state_dict()
    buffer = io.BytesIO()
    torch.save({"epoch": 800, "state_dict": {f"module.encoder_q.{k}": v for k, v in moco.items()}}, buffer)
    openai = openai_vit(32, 5, 512)
    mirror.files = {"moco_v2_800ep_pretrain.pth.tar": buffer.getvalue(), "ViT-B-16.pt": torchscript_archive(openai)}
    for name, data in (("moco-v2-resnet50", mirror.files["moco_v2_800ep_pretrain.pth.tar"]),
                       ("clip-vit-b16", mirror.files["ViT-B-16.pt"])):
        entry = WEIGHTS[name]
        published = entry.download.checksum
        # MoCo publishes the first 8 digits of the md5: the fake's prefix stands in for it.
        value = digest(data, published.kind)[:len(published.value)]
        monkeypatch.setitem(WEIGHTS, name, replace(entry, download=replace(entry.download, checksum=replace(published, value=value))))
    assert main(["weights", "download", "moco-v2-resnet50", "clip-vit-b16", "--mirror", mirror.url]) == 0
    assert (tmp_path / "vit_base_patch16_clip_quickgelu_224.openai.safetensors").is_file()
    resnet, _ = build_backbone(tiny_resnet)
    assert torch.equal(resnet.state_dict()["conv1.0.weight"], moco["conv1.0.weight"])
    vit, _ = build_backbone(tiny_vit)
    assert torch.equal(vit.patch_embed.proj.weight, openai["visual.conv1.weight"].float())
    assert torch.equal(vit.blocks[0].attn.qkv.weight, openai["visual.transformer.resblocks.0.attn.in_proj_weight"].float())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads", "moco_v2_800ep_pretrain.pth.tar",
                                                          "vit_base_patch16_clip_quickgelu_224.openai.safetensors"]


def test_moco_tp_download_records_its_sha256_metadata_and_check_which_the_card_prints(mirror, tmp_path, monkeypatch):
    """No checksum is published for MoCo-TP (issue 21): what can be said of the file is recorded and shown."""
    from lpft_bench.weights_download import checkpoint_provenance

    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path))
    tiny = replace(BACKBONES["moco-tp-resnet50"], timm_name="resnet10t", timm_kwargs={"channels": (8, 8, 8, 8), "stem_width": 8})
    monkeypatch.setitem(BACKBONES, "moco-tp-resnet50", tiny)
    weights = timm.create_model("resnet10t", num_classes=10, **tiny.timm_kwargs).state_dict()
    buffer = io.BytesIO()
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": {f"module.encoder_q.{k}": v for k, v in weights.items()}},
               buffer)
    entry = WEIGHTS["moco-tp-resnet50"]
    mirror.files = {entry.download.name: buffer.getvalue()}
    assert main(["weights", "download", "moco-tp-resnet50", "--mirror", mirror.url]) == 0
    recorded = json.loads((tmp_path / "mocotp_checkpoint_0200.pth.tar.provenance.json").read_text())
    assert recorded["sha256"] == digest(buffer.getvalue(), "sha256")
    assert recorded["metadata"] == {"epoch": 200, "arch": "resnet50"} and recorded["check"] == entry.download.verified_by
    assert checkpoint_provenance("moco-tp-resnet50")["recorded"] == recorded


def test_openai_clip_resnet50_names_map_onto_timms_architecture():
    """Every tensor of OpenAI's ModifiedResNet-50 image tower (named as in CLIP's model.py) lands in timm's
    resnet50_clip, strictly: the conversion the real RN50.pt goes through."""
    from timm.models.byobnet import checkpoint_filter_fn

    from lpft_bench.weights_download import openai_clip_to_timm

    spec = BACKBONES["clip-resnet50"]
    model = timm.create_model(spec.timm_name, pretrained=False)
    target = model.state_dict()
    norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    names = [name for i in (1, 2, 3) for name in [f"visual.conv{i}.weight"] + [f"visual.bn{i}.{p}" for p in norm]]
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for block in range(blocks):
            prefix = f"visual.layer{layer}.{block}."
            names += [n for i in (1, 2, 3) for n in [f"{prefix}conv{i}.weight"] + [f"{prefix}bn{i}.{p}" for p in norm]]
            if block == 0:
                names += [f"{prefix}downsample.0.weight"] + [f"{prefix}downsample.1.{p}" for p in norm]
    names += ["visual.attnpool.positional_embedding"]
    names += [f"visual.attnpool.{n}_proj.{p}" for n in "qkvc" for p in ("weight", "bias")]
    # timm's names for OpenAI's give each tensor its shape; the text tower's tensors must be dropped.
    timm_names = list(checkpoint_filter_fn({name: None for name in names}, model))
    openai = {name: torch.ones(target[t].shape).half() for name, t in zip(names, timm_names)}
    converted = openai_clip_to_timm({**openai, "token_embedding.weight": torch.ones(3, 2)}, spec)
    assert converted.keys() == target.keys()
