"""The files inside a store's directories: a phase result's weights and record, and how to tell a damaged one.

A phase whose backbone is the one the job started from (a probe over a frozen backbone) keeps its head alone
(`head.safetensors`) and its record names the backbone's digest (`backbone_sha256`): whoever loads it rebuilds
the backbone from its source and must find that digest. Any other phase keeps its whole model."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from lpft_bench.paths import load_safetensors
from lpft_bench.storage import atomic_write, set_aside, write_json

RECORD = "record.json"
MODEL = "model.safetensors"
HEAD = "head.safetensors"
SELECTED = "selected.safetensors"
WEIGHT_FILES = (MODEL, HEAD, SELECTED)
RNG = "rng.pt"  # the random generators' state as the phase ended: a run that loads the phase goes on from it
BACKBONE_PREFIX = "backbone."


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state's names, dtypes, shapes and bytes, in name order: which weights a head sat on."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def without_backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}


@dataclass
class PhaseResult:
    """A stored phase: its record, its weights (None where the keep-weights policy dropped them), the weights of
    its selected epoch where that is not its last, for a head-only result the digest of its backbone, and the
    random generators' state as it ended (None in stores written before it was kept)."""

    record: dict
    weights: dict[str, torch.Tensor] | None
    selected: dict[str, torch.Tensor] | None
    backbone_sha256: str | None = None
    rng: dict | None = None


class CorruptFile(Exception):
    """A store file that exists but cannot be what it should be."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def finite(value):
    """The value with every NaN or infinity as None: records stay valid JSON and no NaN reaches a table."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def save_phase(directory: Path, state: dict | None, record: dict, selected: dict | None = None,
               backbone_sha256: str | None = None, rng: dict | None = None) -> None:
    """`backbone_sha256` given: the backbone is that of the job's source, so only the head is kept. No `state`:
    no end weights (the keep-weights policy keeps them not, and nothing reads them); neither: the record alone.
    `rng`: the generators' state as the phase ended (`rng_states`)."""
    if backbone_sha256 is not None:
        record = {**record, "backbone_sha256": backbone_sha256}
    kept = without_backbone if backbone_sha256 is not None else dict
    if state is not None:
        _save_tensors(directory / (HEAD if backbone_sha256 is not None else MODEL), kept(state))
    if selected is not None:
        _save_tensors(directory / SELECTED, kept(selected))
    if rng is not None:
        atomic_write(directory / RNG, lambda tmp: torch.save(rng, tmp))
    write_json(directory / RECORD, record)


def load_selected(directory: Path) -> dict[str, torch.Tensor] | None:
    """The weights of a stored phase's selected epoch, where that is not its last."""
    path = directory / SELECTED
    return load_safetensors(path) if path.exists() else None


def load_phase_record(directory: Path) -> dict | None:
    try:
        return json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return None


def load_phase(directory: Path) -> PhaseResult | None:
    """A stored phase result, or None when that phase has not completed or its files are unreadable (then the
    directory is moved aside and the phase recomputed)."""
    if not (directory / RECORD).exists():
        return None
    try:
        record = json.loads((directory / RECORD).read_text())
        digest = record.get("backbone_sha256")
        weights_file = directory / (HEAD if digest else MODEL)
        weights = load_safetensors(weights_file) if weights_file.exists() else None
        rng = torch.load(directory / RNG, weights_only=True) if (directory / RNG).exists() else None
        return PhaseResult(record, weights, load_selected(directory), digest, rng)
    except Exception as error:  # safetensors raises its own error types for truncated or garbled files
        set_aside(directory, f"phase result unreadable ({error}), recomputing it")
        return None


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file, from its size and header alone (no tensor is read); None if
    nothing: the header parses and its tensors end exactly where the file does."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else None
            if length is None or length > size - 8:
                return f"truncated: {size} bytes, shorter than its header says"
            header = json.loads(handle.read(length))
        ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror})"
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "not a safetensors header"
    expected = 8 + length + max(ends, default=0)
    return None if size == expected else f"truncated or altered: {size} bytes where its header describes {expected}"


def unreadable_phase_files(phases_dir: Path) -> list[str]:
    """`<file>: <why>` for each weights file of a finished phase (one with its record) that would not load; a
    file the keep-weights policy removed is missing on purpose."""
    problems = []
    for directory in sorted(Path(phases_dir).glob("*")):
        if ".corrupt-" in directory.name or not (directory / RECORD).is_file():
            continue  # set aside already, or not finished
        for name in WEIGHT_FILES:
            problem = safetensors_problem(directory / name)
            if problem and problem != "missing":
                problems.append(f"{directory / name}: {problem}")
    return problems
