"""Runs a matrix of jobs into a store: skips done jobs, retries failed ones, never runs one job twice at once."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from lpft_bench.jobs import Job, RunContext, is_done, record_failure, run_job

LAUNCHERS = ("inline", "local")


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


@dataclass
class MatrixResult:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    busy: int = 0


def _launch(job: Job, ctx: RunContext, launcher: str) -> bool:
    """Run one job; True on success. Jobs on several devices always get their own process (DDP re-executes it)."""
    if launcher == "inline" and ctx.devices == 1:
        try:
            run_job(job, ctx)
            return True
        except Exception as error:  # recorded in the store; the matrix goes on
            record_failure(job, ctx, error)
            return False
    command = [sys.executable, "-m", "lpft_bench.jobs", json.dumps(job.to_dict()), json.dumps(ctx.to_dict())]
    log = ctx.job_dir(job) / "worker.log"
    with open(log, "w") as stream:
        completed = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return completed.returncode == 0 and is_done(ctx.job_dir(job))


def run_matrix(jobs: list[Job], ctx: RunContext, launcher: str = "inline", progress: bool = True) -> MatrixResult:
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; expected one of {LAUNCHERS}")
    result = MatrixResult()
    bar = tqdm(total=len(jobs), desc="matrix", unit="job", disable=not progress, dynamic_ncols=True)
    for job in jobs:
        job_dir = ctx.job_dir(job)
        bar.set_postfix_str(f"done={result.done + result.skipped} failed={result.failed} running={job.strategy}/{job.seed}")
        if is_done(job_dir):
            result.skipped += 1
        else:
            with job_lock(job_dir) as acquired:
                if not acquired:
                    result.busy += 1
                elif is_done(job_dir):  # finished by another runner between our check and the lock
                    result.skipped += 1
                elif _launch(job, ctx, launcher):
                    result.done += 1
                else:
                    result.failed += 1
        bar.update(1)
    bar.set_postfix_str(f"done={result.done + result.skipped} failed={result.failed}")
    bar.close()
    return result
