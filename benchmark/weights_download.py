"""The paper's backbones, fetched from their authors' releases into `$LPFT_BENCH_CHECKPOINTS` under the
canonical names the backbone table expects (`checkpoint:<file>` in BACKBONES).

MoCo checkpoints are saved as published, after checking that they load into the backbone. OpenAI's CLIP
releases are TorchScript archives: after their sha256 matches (the digest OpenAI puts in the address), the
image tower is mapped onto timm's architecture by timm's own OpenAI converter and saved as safetensors.
"""
from __future__ import annotations

import importlib
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

from lpft_bench.models.timm_models import create_model
import torch
from safetensors.torch import save_file

from lpft_bench.datamodules.download import STAGING, DownloadError, fetch_verified, file_digest
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
    model = create_model(spec.timm_name, pretrained=False, **spec.timm_kwargs)
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
        if entry.download.checksum is None:
            _record_provenance(path, target, entry.download)
        os.replace(path, target)
    return str(target)


PROVENANCE_SUFFIX = ".provenance.json"


def _record_provenance(path: Path, target: Path, download) -> None:
    """What can be said of a file no publisher vouches for (MoCo-TP on Zenodo): its sha256, the check it passed,
    and the file's own metadata (MoCo's training scripts store `epoch` and `arch` beside the weights)."""
    content = torch.load(path, map_location="cpu", weights_only=True)
    metadata = {k: v for k, v in content.items() if isinstance(v, (int, float, str))} if isinstance(content, dict) else {}
    record = {"file": target.name, "source": download.url, "sha256": file_digest(path, "sha256"),
              "size": path.stat().st_size, "check": download.verified_by, "metadata": metadata}
    atomic_write(target.with_name(target.name + PROVENANCE_SUFFIX), lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


def checkpoint_provenance(name: str) -> dict:
    """A paper backbone's file as the protocol card states it: where it comes from, what vouches for it, and for
    a file without a published checksum the sha256 and metadata `weights download` recorded on this machine."""
    download = WEIGHTS[name].download
    card = {"file": canonical_file(name), "source": download.url,
            "published_checksum": f"{download.checksum} ({download.checksum.source})" if download.checksum else None}
    if download.checksum is None:
        card["check"] = download.verified_by
        root = os.environ.get(CHECKPOINT_DIR_ENV)
        recorded = Path(root or ".") / (card["file"] + PROVENANCE_SUFFIX)
        card["recorded"] = (json.loads(recorded.read_text()) if root and recorded.is_file() else
                            f"not downloaded on this machine: `lpft-bench weights download {name}` records its sha256")
    return card
