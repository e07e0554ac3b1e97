"""Deterministic fault points for tests: the process signals itself at a named point instead of being killed
at a wall-clock moment that a loaded machine may never reach in time.

`LPFT_BENCH_FAULT="SIGKILL@3"` sends SIGKILL at the third fault point this process passes;
`"SIGTERM@2:batch 1-ft"` sends SIGTERM at the second point whose name starts with "batch 1-ft". With
`LPFT_BENCH_FAULT_LOG=FILE` every firing is appended there first (spec, tab, point) and a spec fires only once
per log, so a requeued or rerun process with the same environment runs on past it. Unset, a point costs one
environment lookup."""
from __future__ import annotations

import os
import signal
from pathlib import Path

FAULT_ENV, LOG_ENV = "LPFT_BENCH_FAULT", "LPFT_BENCH_FAULT_LOG"
_passed: dict[str, int] = {}


def _parse(spec: str) -> tuple[signal.Signals, int, str]:
    name, _, rest = spec.partition("@")
    count, _, prefix = rest.partition(":")
    return signal.Signals[name], int(count), prefix


def _already_fired(spec: str, log: str | None) -> bool:
    return bool(log) and Path(log).exists() and any(
        line.split("\t")[0] == spec for line in Path(log).read_text().splitlines())


def fault_point(name: str) -> None:
    """Mark a point (e.g. "write record.json", "epoch 1-ft-<hash> 0"); fire the configured fault if it is this one."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    signum, count, prefix = _parse(spec)
    if not name.startswith(prefix):
        return
    _passed[spec] = _passed.get(spec, 0) + 1
    log = os.environ.get(LOG_ENV)
    if _passed[spec] != count or _already_fired(spec, log):
        return
    if log:
        with open(log, "a") as handle:
            handle.write(f"{spec}\t{name}\n")
            handle.flush()
            os.fsync(handle.fileno())
    os.kill(os.getpid(), signum)
