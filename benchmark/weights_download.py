"""The paper's backbones, fetched from their authors' releases into `$LPFT_BENCH_CHECKPOINTS` under the
canonical names the backbone table expects (`checkpoint:<file>` in BACKBONES).

MoCo checkpoints are saved as published, after checking that they load into the backbone. OpenAI's CLIP
releases are TorchScript archives: after their sha256 matches (the digest OpenAI puts in the address), the
image tower is mapped onto timm's architecture by timm's own OpenAI converter and saved as safetensors.
"""
from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import replace
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from lpft_bench.datamodules.download import STAGING, DownloadError, fetch_verified
from lpft_bench.datamodules.sources import WEIGHTS
from lpft_bench.errors import UsageError
from lpft_bench.models import BACKBONES, BackboneSpec, build_backbone
from lpft_bench.models.weights import CHECKPOINT_DIR_ENV
from lpft_bench.storage import atomic_write


def checkpoint_dir() -> Path:
    root = os.environ.get(CHECKPOINT_DIR_ENV)
    if not root:
        raise UsageError(f"set ${CHECKPOINT_DIR_ENV} to the folder the checkpoints go to (and runs read them from)")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def canonical_file(name: str) -> str:
    return BACKBONES[name].weights.removeprefix("checkpoint:")


def openai_clip_to_timm(openai_state: dict[str, torch.Tensor], spec: BackboneSpec) -> dict[str, torch.Tensor]:
    """The image tower of an OpenAI CLIP state dict as the timm model's state dict (fp32, with the projection).

    timm ships the converter it uses for its own `.openai` weights as its module's `checkpoint_filter_fn`;
    the strict load proves every tensor of the tower was found and nothing else was left over."""
    model = timm.create_model(spec.timm_name, pretrained=False, **spec.timm_kwargs)
    convert = importlib.import_module(type(model).__module__).checkpoint_filter_fn
    model.load_state_dict(convert(openai_state, model), strict=True)
    return {key: value.contiguous() for key, value in model.state_dict().items()}


def _check_loads(path: Path, spec: BackboneSpec, source: str) -> None:
    """Load the file exactly as a run loads the backbone's checkpoint (same prefixes dropped, same checks)."""
    try:
        build_backbone(replace(spec, weights=str(path)))
    except (ValueError, RuntimeError) as error:
        path.unlink()
        raise DownloadError(f"{path.name} from {source} does not load into {spec.timm_name}: {error}; removed it") from None


def download_weights(name: str, mirror: str | None) -> str:
    """Fetch, verify (and for CLIP convert) one backbone's weights; say where they are."""
    entry, spec = WEIGHTS[name], BACKBONES[name]
    directory = checkpoint_dir()
    target = directory / canonical_file(name)
    if target.exists():
        return f"{target} is already there, skipped"
    path = fetch_verified(entry.download, directory / STAGING, mirror)
    if entry.convert == "openai-clip":
        # TorchScript archives can hold code: only the official file, its sha256 just verified, gets here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; OpenAI's files are TorchScript
            openai_state = torch.jit.load(str(path), map_location="cpu").state_dict()
        state = openai_clip_to_timm(openai_state, spec)
        atomic_write(target, lambda tmp: save_file(state, str(tmp)))
        path.unlink()
    else:
        _check_loads(path, spec, entry.download.url)
        os.replace(path, target)
    return str(target)
