"""A results store, every path in it, and how each file gets there without ever being half-written.

<out>/jobs/<job id>/        record.json (then the `done` marker), lock, logs/, checkpoints/<phase key>/
<out>/phases/<phase key>/   model.safetensors then record.json: the model state after a prefix of phases
<out>/features/             eval-mode backbone features, keyed by what they depend on (identity.feature_key)

A file that cannot be read (a record overwritten with garbage, a phase result or checkpoint truncated by a full
disk) is that job's problem alone: it is named, moved aside as `<name>.corrupt-<n>` (never deleted) and its
result recomputed."""
from __future__ import annotations

import fcntl
import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from lpft_bench.checks import inside
from lpft_bench.faults import fault_point
from lpft_bench.paths import load_safetensors
from lpft_bench.storage import atomic_write, set_aside, write_json

DONE_MARKER = "done"
LOCK_ATTEMPTS = 20


def phase_dir(out: Path, key: str) -> Path:
    return inside(out, Path(out) / "phases" / key)


def features_path(out: Path, benchmark: str, set_name: str, key: str) -> Path:
    return inside(out, Path(out) / "features" / f"{benchmark}-{set_name}-{key}.npz")


RECORD = "record.json"
SELECTED = "selected.safetensors"
DONE_RECORD_KEYS = ("job", "eval_sets", "selection", "final")


class CorruptFile(Exception):
    """A store file that exists but cannot be what it should be."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def load_record(job_dir: Path) -> dict | None:
    """The job's record, None when it has none; CorruptFile when it is unreadable or no record of this job."""
    path = job_dir / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CorruptFile(path, f"unreadable ({error})") from error
    if not isinstance(record, dict) or record.get("job_id") != job_dir.name:
        raise CorruptFile(path, "not the record of this job")
    if record.get("status") not in ("done", "failed"):
        raise CorruptFile(path, f"unknown status {record.get('status')!r}")
    missing = [key for key in DONE_RECORD_KEYS if key not in record] if record["status"] == "done" else []
    if missing:
        raise CorruptFile(path, f"a done record without {', '.join(missing)}")
    return record


def job_state(job_dir: Path) -> tuple[str, str]:
    """(state, detail): done, corrupt (detail: why), running, failed or pending, reading and changing nothing."""
    try:
        record = load_record(job_dir)
    except CorruptFile as error:
        return "corrupt", str(error)
    if (job_dir / DONE_MARKER).exists() and (record or {}).get("status") != "done":
        return "corrupt", f"{job_dir / DONE_MARKER}: a done marker without a done record"
    if record is not None and record["status"] == "done" and (job_dir / DONE_MARKER).exists():
        return "done", ""
    if is_locked(job_dir):
        return "running", ""
    if record is not None and record["status"] == "failed":
        return "failed", record.get("error", "")
    return "pending", ""


def is_done(job_dir: Path) -> bool:
    return job_state(job_dir)[0] == "done"


def repair_job(job_dir: Path) -> None:
    """Set aside what would block the job (called under its lock): an unreadable record, a stray done marker."""
    try:
        record = load_record(job_dir)
    except CorruptFile as error:
        set_aside(error.path, f"{error.reason}, the job reruns")
        record = None
    marker = job_dir / DONE_MARKER
    if marker.exists() and (record or {}).get("status") != "done":
        marker.unlink()  # an empty file: nothing to keep
        print(f"lpft-bench: {marker}: a done marker without a done record, removed; the job reruns", file=sys.stderr)


def _finite(value):
    """The value with every NaN or infinity as None: records stay valid JSON and no NaN reaches a table."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_record(job_dir: Path, record: dict) -> None:
    """The record, then the `done` marker: a job with the marker has its whole record."""
    write_json(job_dir / RECORD, _finite(record))
    if record.get("status") == "done":
        fault_point(f"done {job_dir.name}")
        (job_dir / DONE_MARKER).touch()


def save_phase(directory: Path, model: nn.Module, record: dict, selected: dict | None = None) -> None:
    """The model after a phase (and, where selection picks an earlier epoch, that epoch's weights), then its
    record: a phase directory with a record is complete."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    if selected is not None:
        atomic_write(directory / SELECTED, lambda tmp: save_file(selected, str(tmp)))
    write_json(directory / RECORD, _finite(record))


def load_selected(directory: Path) -> dict[str, torch.Tensor] | None:
    """The weights of a stored phase's selected epoch, where that is not its last."""
    path = directory / SELECTED
    return load_safetensors(path) if path.exists() else None


def load_phase(directory: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """A stored phase result (record, model state), or None when that phase has not completed or its files are
    unreadable (then the directory is moved aside and the phase recomputed)."""
    if not (directory / RECORD).exists():
        return None
    try:
        return json.loads((directory / RECORD).read_text()), load_safetensors(directory / "model.safetensors")
    except Exception as error:  # safetensors raises its own error types for truncated or garbled files
        set_aside(directory, f"phase result unreadable ({error}), recomputing it")
        return None


def cached_features(path: Path, extract: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Features from the cache at `path` (keyed by everything that determines them); on a miss, `extract()`
    computes them (the engine's business: the store never runs a model) and they are written atomically."""
    if path.exists():
        try:
            with np.load(path) as data:
                return data["features"], data["labels"]
        except Exception as error:  # numpy and zipfile raise several error types for a truncated archive
            set_aside(path, f"feature cache unreadable ({error}), re-extracting")
    features, labels = extract()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a path
            np.savez(handle, features=features, labels=labels)

    atomic_write(path, write)
    return features, labels


@contextmanager
def job_lock(job_dir: Path, attempts: int = LOCK_ATTEMPTS) -> Iterator[bool]:
    """An exclusive, non-blocking lock on the job: yields False when another runner holds it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    with open(job_dir / "lock", "w") as handle:
        for attempt in range(attempts):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 == attempts:
                    yield False
                    return
                time.sleep(0.01)  # `is_locked` probes hold it for microseconds: only a runner holds it longer
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(job_dir: Path) -> bool:
    """Whether a runner holds the job's lock, probed through a read-only handle: `status` works on a store
    this user cannot write."""
    try:
        handle = open(job_dir / "lock")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


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


def unreadable_phase_files(out: Path) -> list[str]:
    """`<file>: <why>` for each weights file of a finished phase (one with its record) that would not load."""
    problems = []
    for directory in sorted(Path(out).glob("phases/*")):
        if ".corrupt-" in directory.name or not (directory / RECORD).is_file():
            continue  # set aside already, or not finished
        for name in ("model.safetensors", SELECTED):
            problem = safetensors_problem(directory / name)
            if problem and not (name == SELECTED and problem == "missing"):
                problems.append(f"{directory / name}: {problem}")
    return problems
