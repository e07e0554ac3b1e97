"""A results store, every path in it, and how each file gets there without ever being half-written.

<out>/jobs/<job id>/        record.json (then the `done` marker), lock, logs/, checkpoints/<phase key>/
<out>/phases/<phase key>/   model.safetensors then record.json: the model state after a prefix of phases
<out>/features/             eval-mode backbone features, keyed by what they depend on (identity.feature_key)"""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from lpft_bench.storage import atomic_write, write_json
from lpft_bench.strategies.linear_probe import extract_features

DONE_MARKER = "done"


def phase_dir(out: Path, key: str) -> Path:
    return Path(out) / "phases" / key


def features_path(out: Path, benchmark: str, set_name: str, key: str) -> Path:
    return Path(out) / "features" / f"{benchmark}-{set_name}-{key}.npz"


def is_done(job_dir: Path) -> bool:
    return (job_dir / DONE_MARKER).exists()


def load_record(job_dir: Path) -> dict | None:
    path = job_dir / "record.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_record(job_dir: Path, record: dict) -> None:
    """The record, then the `done` marker: a job with the marker has its whole record."""
    write_json(job_dir / "record.json", record)
    if record.get("status") == "done":
        (job_dir / DONE_MARKER).touch()


def save_phase(directory: Path, model: nn.Module, record: dict) -> None:
    """The model after a phase, then its record: a phase directory with a record is complete."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    write_json(directory / "record.json", record)


def load_phase(directory: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """A stored phase result (record, model state), or None when that phase has not completed."""
    if not (directory / "record.json").exists():
        return None
    return json.loads((directory / "record.json").read_text()), load_file(str(directory / "model.safetensors"))


def cached_features(path: Path, backbone: nn.Module, loader: DataLoader, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Features from the cache at `path` (keyed by everything that determines them), extracting them on a miss."""
    if path.exists():
        with np.load(path) as data:
            return data["features"], data["labels"]
    features, labels = extract_features(backbone, loader, device)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a path
            np.savez(handle, features=features, labels=labels)

    atomic_write(path, write)
    return features, labels


@contextmanager
def job_lock(job_dir: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on the job: yields False when another runner holds it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    with open(job_dir / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(job_dir: Path) -> bool:
    if not (job_dir / "lock").exists():
        return False
    with job_lock(job_dir) as acquired:
        return not acquired
