"""Writing any file without ever leaving it half-written (atomic writes, set-aside copies, digests); where a
results store keeps what is `engine.store.Store`'s alone."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable

from lpft_bench.faults import fault_point


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _new_temporary(directory: Path, name: str) -> Path:
    """A new, empty, uniquely named file beside `name`, with the mode open() gives under this process's umask
    (a store is read by the user's group too; mkstemp's 0600 would hide it)."""
    for _ in range(100):
        candidate = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {directory / name}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and rename the result into place: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path.parent, path.name)
    try:
        write(tmp)
        fault_point(f"write {path.name}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n"))


def set_aside(path: Path, reason: str) -> Path:
    """Move a corrupt file or directory out of the way (kept for inspection, never deleted) and say so."""
    for n in range(1, 10_000):
        target = path.with_name(f"{path.name}.corrupt-{n}")
        if not target.exists():
            path.rename(target)
            print(f"lpft-bench: {path}: {reason}; moved aside to {target.name}", file=sys.stderr)
            return target
    raise RuntimeError(f"{path}: too many corrupt copies set aside already")
