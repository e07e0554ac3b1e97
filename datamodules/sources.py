"""Where every dataset file and paper checkpoint comes from: one table, read by `lpft-bench data download`,
`lpft-bench weights download`, their `--dry-run` and `lpft-bench data check`.

Each `Download` is one file: its upstream address, the checksum its publishers give (or None, and then the
structural check that replaces it), its size where published, and how it becomes part of the canonical layout.
The checksums' sources are named in `Checksum.source`; none of them is computed by this project.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .cifar import CIFAR101_DIR, CIFAR10_DIR, STL10_DIR
from .cifar100 import CIFAR100_DIR
from .flowers102 import FLOWERS_DIR
from .fmow import FMOW_DIR
from .imagenet import IMAGENET_V2_DIR


@dataclass(frozen=True)
class Checksum:
    """`kind` is md5, sha256 or git-blob-sha1 (a file's git object id at a pinned commit); `value` is the
    hex digest as published (MoCo publishes only its first 8 digits, so a published prefix must match)."""

    kind: str
    value: str
    source: str

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class Download:
    """One file. `name` is its file name (also its name in a mirror); `unpack` is "tar" (any compression),
    "zip" or "file" (used as it is); `member` is what inside the archive becomes `target` (a path under the
    data root; "." for the archive's whole content); `verify(unpacked, data_root)` returns a problem or None,
    the structural check that stands in where no checksum is published."""

    name: str
    url: str
    checksum: Checksum | None
    size: int | None
    unpack: str
    member: str
    target: str
    verify: Callable[[Path, Path], str | None] | None = None
    verified_by: str | None = None


TORCHVISION = "torchvision.datasets (cifar.py, stl10.py)"
TORCHVISION_FLOWERS = "torchvision.datasets flowers102.py (Flowers102._file_dict)"
FLOWERS_BASE = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
TFDS_CIFAR101 = "tensorflow/datasets url_checksums/cifar10_1.txt"
CIFAR101_COMMIT = "d9982abb0bfc4846b8d13a11e66b887d946205d0"  # modestyachts/CIFAR-10.1 master: numpy format 2.0
SENTRY_COMMIT = "7d594a54b5d96d317f8c7be5296d8819a7f1644a"  # virajprabhu/SENTRY master
DOMAINNET_BASE = "http://csr.bu.edu/ftp/visda/2019/multi-source/"  # ai.bu.edu/M3SDA; DomainBed's download.py
DOMAINS = ("sketch", "real", "painting", "clipart")
# The SENTRY lists' git object ids and sizes in bytes, from `git ls-tree -l` at SENTRY_COMMIT.
SENTRY_LISTS = {
    ("sketch", "train"): ("4f308fd74214a02f8fab0b68a75f150e9d13b8ef", 218_726),
    ("sketch", "test"): ("ff461e763062e8f3d4fc2c8371756624a79f339d", 94_760),
    ("real", "train"): ("e1b1bc2615e1af0a053a15b5a96e99a6e3136069", 568_839),
    ("real", "test"): ("6ff45f19aaf43802788509d23ab67f78b0c0c77a", 244_688),
    ("painting", "train"): ("c93c954f2a68331e00c3565b1959e9ac945afe62", 291_462),
    ("painting", "test"): ("ba78e537cff2d75254fc34920417915c96df411b", 126_043),
    ("clipart", "train"): ("c595f985cc109fc66d903a88655bffbbdaf88b60", 153_231),
    ("clipart", "test"): ("74c136ff20405fb469514958e2e6a50d570bfe4f", 66_796),
}


def sentry_images_present(domain: str) -> Callable[[Path, Path], str | None]:
    """No checksum is published for DomainNet's zips: every image the domain's SENTRY lists (downloaded
    first, into the data root) name must be in the unpacked zip."""

    def verify(unpacked: Path, data_root: Path) -> str | None:
        named = 0
        for split in ("train", "test"):
            for line in (data_root / "domainnet" / f"{domain}_{split}_mini.txt").read_text().splitlines():
                if line.strip():
                    relative = Path(line.rsplit(maxsplit=1)[0])  # "<domain>/<class>/<file>"
                    if not (unpacked / relative.relative_to(domain)).is_file():
                        return f"{relative} (named by the SENTRY {split} list) is not in the archive"
                    named += 1
        return None if named else f"the SENTRY lists of {domain} name no images"

    return verify


def fmow_images_present(unpacked: Path, data_root: Path) -> str | None:
    """No checksum is published for WILDS's FMoW archive (WILDS records only its approximate size): one
    image per metadata row, as WILDS reads them (rgb_img_<row>.png)."""
    metadata = unpacked / "rgb_metadata.csv"
    if not metadata.is_file():
        return "rgb_metadata.csv is not in the archive"
    rows = len(pd.read_csv(metadata, usecols=["split"]))
    images = sum(1 for _ in (unpacked / "images").glob("rgb_img_*.png"))
    return None if images == rows else f"{images} images for {rows} metadata rows"


def _cifar101(version: str, part: str, sha256: str, size: int) -> Download:
    name = f"cifar10.1_{version}_{part}.npy"
    return Download(name, f"https://raw.githubusercontent.com/modestyachts/CIFAR-10.1/{CIFAR101_COMMIT}/datasets/{name}",
                    Checksum("sha256", sha256, TFDS_CIFAR101), size, "file", ".", f"{CIFAR101_DIR}/{name}")


def _sentry_list(domain: str, split: str) -> Download:
    name = f"{domain}_{split}_mini.txt"
    blob, size = SENTRY_LISTS[domain, split]
    return Download(name, f"https://raw.githubusercontent.com/virajprabhu/SENTRY/{SENTRY_COMMIT}/data/DomainNet/txt/{name}",
                    Checksum("git-blob-sha1", blob, f"github.com/virajprabhu/SENTRY tree {SENTRY_COMMIT[:7]}"), size,
                    "file", ".", f"domainnet/{name}")


def _domain_zip(domain: str) -> Download:
    # clipart and painting live under groundtruth/, as DomainBed's download.py and the M3SDA page link them.
    folder = "groundtruth/" if domain in ("clipart", "painting") else ""
    return Download(f"{domain}.zip", f"{DOMAINNET_BASE}{folder}{domain}.zip", None, None, "zip", domain,
                    f"domainnet/{domain}", sentry_images_present(domain),
                    "every image named by the SENTRY lists of the domain is in the zip")


# DomainNet's official lists and zips for Ren et al.'s 200-class tasks. M3SDA publishes no checksum; kwcoco's
# download script pins each file by a sha512 prefix (github.com/Kitware/kwcoco kwcoco/data/grab_domainnet.py at
# 6e45953), which a download must match, and every image the lists name must then be in the zip.
KWCOCO_DOMAINNET = "github.com/Kitware/kwcoco kwcoco/data/grab_domainnet.py@6e45953 (sha512 prefix)"
DOMAINNET_200_SHA512 = {
    "real_train.txt": "a5a510fec614018546510d55c378bca008fcfd51062f6414583639e",
    "real_test.txt": "9586235e335340f065de720f99332bc906aa0ab147006a1a7ea4925",
    "sketch_train.txt": "ee92102f2b98f11765e6a97afbab15c60f2bac6e30fa7e1bc5a7db",
    "sketch_test.txt": "7384fc06670979911d7e1e9a34ba8a6cd20e9e77d6bc3536c739ff4",
    "quickdraw_train.txt": "7410e8a1debd769e0412725a0fcc646d83055d297b5f44a92f50308",
    "quickdraw_test.txt": "07a97e84d723f58dea67683ae5ddf013ebc5d33b76deca9a5d34f72",
    "real.zip": "751713d4592d1278b50bf69787988cfae280cabdac80ee34ec4016e",
    "sketch.zip": "369b8b6d78ac61bfcc85f660d878ba5fc701524b82bbc2eb65ca9a",
    "quickdraw.zip": "127cce1dd57fc99992f8614de77d03ae8ed6af242973f7a013ec0a",
}


def official_images_present(domain: str) -> Callable[[Path, Path], str | None]:
    """Every image DomainNet's official lists of the domain (downloaded first) name is in the unpacked zip."""

    def verify(unpacked: Path, data_root: Path) -> str | None:
        for split in ("train", "test"):
            for line in (data_root / "domainnet" / f"{domain}_{split}.txt").read_text().splitlines():
                relative = Path(line.rsplit(maxsplit=1)[0]) if line.strip() else None
                if relative is not None and not (unpacked / relative.relative_to(domain)).is_file():
                    return f"{relative} (named by the official {split} list) is not in the archive"
        return None

    return verify


def _domainnet_200(domain: str) -> tuple[Download, ...]:
    lists = tuple(Download(f"{domain}_{split}.txt", f"{DOMAINNET_BASE}domainnet/txt/{domain}_{split}.txt",
                           Checksum("sha512", DOMAINNET_200_SHA512[f"{domain}_{split}.txt"], KWCOCO_DOMAINNET), None,
                           "file", ".", f"domainnet/{domain}_{split}.txt") for split in ("train", "test"))
    return lists + (Download(f"{domain}.zip", f"{DOMAINNET_BASE}{domain}.zip",
                             Checksum("sha512", DOMAINNET_200_SHA512[f"{domain}.zip"], KWCOCO_DOMAINNET), None, "zip",
                             domain, f"domainnet/{domain}", official_images_present(domain),
                             "every image named by the official lists of the domain is in the zip"),)


# Sets by name; a benchmark's name stands for every set it reads (BENCHMARK_SETS).
DATASETS: dict[str, tuple[Download, ...]] = {
    "cifar-10": (Download("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                          Checksum("md5", "c58f30108f718f92721af3b95e74349a", TORCHVISION), None, "tar",
                          CIFAR10_DIR, CIFAR10_DIR),),
    "stl10": (Download("stl10_binary.tar.gz", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
                       Checksum("md5", "91f7769df0f17e558f3565bffb0c7dfb", TORCHVISION), None, "tar",
                       STL10_DIR, STL10_DIR),),
    "cifar-100": (Download("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                           Checksum("md5", "eb9058c3a382ffc7106e4002c42a8d85", TORCHVISION), None, "tar",
                           CIFAR100_DIR, CIFAR100_DIR),),
    # torchvision's three files: the images' archive (its jpg/ folder), the labels and the official splits.
    "flowers-102": (Download("102flowers.tgz", f"{FLOWERS_BASE}102flowers.tgz",
                             Checksum("md5", "52808999861908f626f3c1f4e79d11fa", TORCHVISION_FLOWERS), None, "tar",
                             "jpg", f"{FLOWERS_DIR}/jpg"),
                    Download("imagelabels.mat", f"{FLOWERS_BASE}imagelabels.mat",
                             Checksum("md5", "e0620be6f572b9609742df49c70aed4d", TORCHVISION_FLOWERS), None, "file",
                             ".", f"{FLOWERS_DIR}/imagelabels.mat"),
                    Download("setid.mat", f"{FLOWERS_BASE}setid.mat",
                             Checksum("md5", "a5357ecc9cb78c4bef273ce3793fc85c", TORCHVISION_FLOWERS), None, "file",
                             ".", f"{FLOWERS_DIR}/setid.mat")),
    "cifar10.1": (
        _cifar101("v6", "data", "2997188e5816f5bd545dc77771b6227828c28146049fcecf3fa10775474cacc6", 6_144_128),
        _cifar101("v6", "labels", "ae40beda001693674edc94d925ee8268cfe68905f8f9aff800c8dcdfcd6c9448", 8_128),
        _cifar101("v4", "data", "5aaedc268df8f4cffca2ac0cf9e608ae1897a8cddb630c7a850a2ea8f6558e75", 6_208_640),
        _cifar101("v4", "labels", "1f9544300ded199539b6662364ce7fe6c2e1ea9f87408f06db4b1a6184cffb18", 8_212),
    ),
    # The lists come first: each zip is verified against them.
    "domainnet": tuple(_sentry_list(d, s) for d in DOMAINS for s in ("train", "test"))
    + tuple(_domain_zip(d) for d in DOMAINS),
    **{f"domainnet-{domain}-official": _domainnet_200(domain) for domain in ("real", "sketch", "quickdraw")},
    # WILDS's own address and archive; WILDS unpacks it into fmow_v1.1/, so its whole content is the folder.
    "fmow": (Download("fmow_v1.1.tar.gz",
                      "https://worksheets.codalab.org/rest/bundles/0xaec91eb7c9d548ebb15e1b5e60f966ab/contents/blob/",
                      None, 53_893_324_800, "tar", ".", FMOW_DIR, fmow_images_present,
                      "one image per row of rgb_metadata.csv"),),
    "imagenet-v2": (Download("imagenetv2-matched-frequency.tar.gz",
                             "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
                             Checksum("sha256", "f0c37fdf925916b19ea1323cd9a2208cdb6959ba2c32eef2a7fc393835c9ca7c",
                                      "tensorflow/datasets datasets/imagenet_v2/checksums.tsv"),
                             1_264_079_360, "tar", IMAGENET_V2_DIR, IMAGENET_V2_DIR),),
    "imagenet-r": (Download("imagenet-r.tar", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                            Checksum("sha256", "18c6bf493b39a0d975d48e587437f562caab9c52ae6327dcfa9dd8eb54aa1b52",
                                     "tensorflow/datasets datasets/imagenet_r/checksums.tsv"),
                            2_191_079_936, "tar", "imagenet-r", "imagenet-r"),),
    "imagenet-a": (Download("imagenet-a.tar", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                            Checksum("sha256", "3bb3632277e6ba6392ea64c02ddbf4dd2266c9caffd6bc09c9656d28f012589e",
                                     "tensorflow/datasets datasets/imagenet_a/checksums.tsv"),
                            687_552_512, "tar", "imagenet-a", "imagenet-a"),),
    # The authors' Google Drive file, as the Hugging Face hub serves it (same sha256 in HF's and TFDS's records).
    # songweig/imagenet_sketch is its current address: the hub moved the namespace-less `imagenet_sketch` (the
    # name older dataset records and ImageNet-Sketch's README use) there, and the old address redirects to it
    # (the hub pages in this project's search index: /datasets/imagenet_sketch/commits/... renders as
    # songweig/imagenet_sketch, whose data/ folder came in commit bee800b). The sha256 is checked either way.
    "imagenet-sketch": (Download("ImageNet-Sketch.zip",
                                 "https://huggingface.co/datasets/songweig/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip",
                                 Checksum("sha256", "4d3ce6b82a7c48aabf14aeac105eb533e75707f152cc858f55bfc022031a72ed",
                                          "huggingface/datasets imagenet_sketch/dataset_infos.json"),
                                 7_593_573_012, "zip", "sketch", "sketch"),),
}

BENCHMARK_SETS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar-10", "stl10", "cifar10.1"),
    "cifar100": ("cifar-100",),
    "stl10": ("stl10",),
    "flowers102": ("flowers-102",),
    "domainnet": ("domainnet",),
    **{f"domainnet-{domain}-200": (f"domainnet-{domain}-official",) for domain in ("real", "sketch", "quickdraw")},
    "fmow": ("fmow",),
    "imagenet": ("imagenet-v2", "imagenet-r", "imagenet-a", "imagenet-sketch"),
}

# ImageNet's licence allows no redistribution: the user downloads it; torchvision's ImageNet checks the md5s
# it publishes (torchvision/datasets/imagenet.py) and unpacks train and val into wnid folders.
IMAGENET_ARCHIVES = (("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e"),
                     ("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622"),
                     ("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf"))
MANUAL = {"imagenet", "living17", "entity30"}


def imagenet_steps(data_root: str) -> str:
    files = "\n".join(f"       {name}  (md5 {md5})" for name, md5 in IMAGENET_ARCHIVES)
    return (f"ImageNet (needed by imagenet, living17, entity30) cannot be downloaded for you (licence):\n"
            f"  1. register at https://image-net.org/download-images and download into {data_root}/imagenet/:\n"
            f"{files}\n"
            f"  2. python -c \"from torchvision.datasets import ImageNet; "
            f"ImageNet('{data_root}/imagenet', split='train'); ImageNet('{data_root}/imagenet', split='val')\"\n"
            f"     (checks those md5s, unpacks imagenet/train/<wnid>/*.JPEG and imagenet/val/<wnid>/*.JPEG)\n"
            f"  3. lpft-bench data check --data-root {data_root}")


@dataclass(frozen=True)
class WeightDownload:
    """A paper backbone's published file; `convert` is "none" (saved as it is, under the canonical name the
    backbone table expects) or "openai-clip" (an OpenAI TorchScript release turned into a timm state dict)."""

    download: Download
    convert: str


CLIP_MODELS = "https://openaipublic.azureedge.net/clip/models/"  # openai/CLIP clip/clip.py _MODELS
MMSELFSUP = "https://download.openmmlab.com/mmselfsup/1.x/"


def _clip(file: str, sha256: str) -> WeightDownload:
    return WeightDownload(Download(file, f"{CLIP_MODELS}{sha256}/{file}",
                                   Checksum("sha256", sha256, "openai/CLIP clip.py (the digest is in the address)"),
                                   None, "file", ".", "."), "openai-clip")


WEIGHTS: dict[str, WeightDownload] = {
    "moco-v2-resnet50": WeightDownload(Download(
        "moco_v2_800ep_pretrain.pth.tar",
        "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
        Checksum("md5", "a04e12f8", "github.com/facebookresearch/moco README (first 8 digits)"), None, "file", ".", "."),
        "none"),
    # Ayush et al.'s MoCo-v2-TP (200 epochs on FMoW), the checkpoint Kumar et al. call mocotp_checkpoint_0200.
    "moco-tp-resnet50": WeightDownload(Download(
        "moco_tp.pth.tar", "https://zenodo.org/record/7379715/files/moco_tp.pth.tar?download=1", None, None,
        "file", ".", ".", verified_by="loads into timm's ResNet-50 with weights_only=True: every tensor found with its "
        "shape once MoCo's prefixes are stripped, nothing left over but the classifier, momentum encoder and queue; "
        "identity with the paper's checkpoint unverified (no published checksum)"), "none"),
    # Ren et al.'s Sup-IN: their scripts load a torchvision-format `resnet50-classification.pth` whose release they
    # never name (P2_better_v0 bashes/FT_IN1Kres50_STL10.sh:30, util/general.py:94 @895092c); torchvision's V1
    # weights, what `pretrained=True` loaded in 2022. torchvision names each file by its sha256's first 8 digits
    # and checks them on download (models/resnet.py ResNet50_Weights.IMAGENET1K_V1).
    "sup-in-resnet50": WeightDownload(Download(
        "resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        Checksum("sha256", "0676ba61", "torchvision models/resnet.py (first 8 digits, in the file name)"), None,
        "file", ".", "."), "none"),
    # SimCLR and BYOL: their scripts' `resnet50-simclr.pth` has no named source and no BYOL file appears; these are
    # OpenMMLab's ResNet-50 reimplementations (200 epochs, ImageNet-1k), named by their sha256's first 8 digits
    # (mmpretrain tools/model_converters/publish_model.py; configs/simclr/README.md, configs/byol/README.md).
    **{name: WeightDownload(Download(
        f"{file}-{sha256}.pth", f"{MMSELFSUP}{method}/{file.rsplit('_', 1)[0]}/{file}-{sha256}.pth",
        Checksum("sha256", sha256, f"open-mmlab/mmpretrain configs/{method}/README.md (first 8 digits, in the file name)"),
        None, "file", ".", "."), "none")
       for name, method, file, sha256 in (
           ("simclr-resnet50", "simclr", "simclr_resnet50_16xb256-coslr-200e_in1k_20220825", "4d9cce50"),
           ("byol-resnet50", "byol", "byol_resnet50_16xb256-coslr-200e_in1k_20220825", "de817331"))},
    "clip-resnet50": _clip("RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),
    "clip-vit-b16": _clip("ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"),
}


def describe(download: Download) -> str:
    """The address and what vouches for the file, for --dry-run and data check."""
    if download.checksum is not None:
        vouch = f"{download.checksum} ({download.checksum.source})"
    else:
        vouch = f"no checksum published; verified: {download.verified_by}"
    size = f", {download.size:,} bytes" if download.size else ""
    return f"{download.url}\n      {vouch}{size}"


def source_lines(benchmarks: list[str]) -> list[str]:
    """Every file these benchmarks' sets come from, with its address and checksum (for data check)."""
    sets = dict.fromkeys(s for benchmark in benchmarks for s in BENCHMARK_SETS.get(benchmark, ()))
    lines = [f"  {set_name:<15} {download.name}: {describe(download)}"
             for set_name in sets for download in DATASETS[set_name]]
    if MANUAL & set(benchmarks):
        lines.append("  imagenet/{train,val}: by hand (licence); `lpft-bench data download imagenet` prints the steps")
    return lines
