"""SIGINT and SIGTERM as requests to stop at a safe point, never in the middle of a write.

Inside `stop_on_signals()` a signal only records the request (and forwards it to the worker processes
registered with `forward_to`); the work stops where it checks: after a training batch (`StopOnSignal`), between
phases and between jobs (`check`). What was written stays whole (records and checkpoints are atomic), the running
phase keeps its last epoch checkpoint, and `Interrupted` carries the signal up to the command, which exits
128 + signal. A second SIGINT stops at once."""
from __future__ import annotations

import signal
import subprocess
from contextlib import contextmanager
from typing import Iterator

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lpft_bench.faults import fault_point

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: list[int] = []
_workers: set[subprocess.Popen] = set()


class Interrupted(BaseException):
    """Not an Exception: a job that is interrupted has not failed, and nothing records it as failed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _request(signum: int, frame) -> None:
    if _requested and signum == signal.SIGINT:
        raise KeyboardInterrupt
    _requested.append(signum)
    for worker in list(_workers):
        if worker.poll() is None:
            worker.send_signal(signum)


def check() -> None:
    """Raise `Interrupted` if a stop was requested: call it only where stopping leaves nothing half-done."""
    if _requested:
        raise Interrupted(_requested[0])


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM request a stop at the next safe point; Lightning's SIGTERM exit (status 0) becomes one."""
    previous = {signum: signal.signal(signum, _request) for signum in SIGNALS}
    _requested.clear()
    try:
        yield
    except SIGTERMException as error:  # Lightning stopped a fit on SIGTERM itself, at a point of its choosing
        raise Interrupted(signal.SIGTERM) from error
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def forward_to(worker: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """While the block runs, a requested stop is passed on to `worker` too."""
    _workers.add(worker)
    try:
        if _requested:
            worker.send_signal(_requested[0])
        yield worker
    finally:
        _workers.discard(worker)


class StopOnSignal(Callback):
    """Stops a fit after the batch during which a stop was requested; the resume point is the last epoch checkpoint.
    Each training batch's end is also a fault point, "batch <phase key> <epoch> <batch>"."""

    def __init__(self, phase_key: str):
        self.phase_key = phase_key

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        fault_point(f"batch {self.phase_key} {trainer.current_epoch} {batch_idx}")
        check()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        check()
