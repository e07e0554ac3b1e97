"""Where things live on disk, and how they get there without ever being half-written."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from lpft_bench.faults import fault_point


def _shared_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


SHARED_FILE_MODE = _shared_file_mode()  # what open() would give a new file under this process's umask


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and rename the result into place: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, SHARED_FILE_MODE)  # mkstemp makes 0600; a store is read by the user's group too
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
