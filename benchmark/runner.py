"""Runs a matrix of jobs into a store: skips done jobs, retries failed ones, never runs one job twice at once.

Launchers:
- inline: jobs one after another in this process (no per-job import cost: the default for one device);
- local:  one subprocess per job, serially;
- pool:   `slots` subprocesses at a time, each with its own devices through CUDA_VISIBLE_DEVICES;
- slurm:  one submitit job per matrix job (`cluster="local"` runs submitit's local executor), DDP over
          `devices` GPUs per node and `nodes` nodes inside each.
A job running on several devices always gets its own process: Lightning's DDP re-executes its command.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

from tqdm.auto import tqdm

from lpft_bench.engine import Job, RunContext, is_done, load_record, record_failure, run_job
from lpft_bench.engine.store import is_locked, job_lock

LAUNCHERS = ("inline", "local", "pool", "slurm")


@dataclass
class Progress:
    """Matrix counters shared by the launcher threads, shown on the progress bar."""

    total: int
    show: bool = True
    done: int = 0
    skipped: int = 0
    failed: int = 0
    busy: int = 0
    running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.bar = tqdm(total=self.total, desc="matrix", unit="job", disable=not self.show, dynamic_ncols=True)

    def _refresh(self) -> None:
        self.bar.set_postfix_str(f"done={self.done + self.skipped} running={self.running} failed={self.failed}")

    def started(self) -> None:
        with self._lock:
            self.running += 1
            self._refresh()

    def finished(self, outcome: str) -> None:
        with self._lock:
            if outcome != "skipped" and outcome != "busy":
                self.running -= 1
            setattr(self, outcome, getattr(self, outcome) + 1)
            self.bar.update(1)
            self._refresh()

    def close(self) -> None:
        self.bar.close()


def worker_command(job: Job, ctx: RunContext) -> list[str]:
    return [sys.executable, "-m", "lpft_bench.engine.execution", json.dumps(job.to_dict()), json.dumps(ctx.to_dict())]


def _run_subprocess(job: Job, ctx: RunContext, devices: str | None = None) -> bool:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    with open(ctx.job_dir(job) / "worker.log", "w") as log:
        completed = subprocess.run(worker_command(job, ctx), stdout=log, stderr=subprocess.STDOUT, env=env)
    return completed.returncode == 0 and is_done(ctx.job_dir(job))


def _run_inline(job: Job, ctx: RunContext) -> bool:
    try:
        run_job(job, ctx)
        return True
    except Exception as error:  # recorded in the store; the matrix goes on
        record_failure(job, ctx, error)
        return False


def _attempt(job: Job, ctx: RunContext, progress: Progress, launch) -> None:
    """Run `job` under its lock unless it is done or held by another runner."""
    job_dir = ctx.job_dir(job)
    if is_done(job_dir):
        progress.finished("skipped")
        return
    with job_lock(job_dir) as acquired:
        if not acquired:
            progress.finished("busy")
        elif is_done(job_dir):  # finished by another runner between our check and the lock
            progress.finished("skipped")
        else:
            progress.started()
            progress.finished("done" if launch(job) else "failed")


def _gpu_slots(slots: int, devices_per_job: int) -> Queue:
    """Each slot owns `devices_per_job` consecutive device ids (ignored on CPU-only machines)."""
    queue: Queue = Queue()
    for slot in range(slots):
        queue.put(",".join(str(slot * devices_per_job + d) for d in range(devices_per_job)))
    return queue


def _slurm_entry(job_dict: dict, ctx_dict: dict) -> bool:
    """What each submitit task runs (importable, so submitit can pickle a reference to it)."""
    from lpft_bench.engine import main

    return main([json.dumps(job_dict), json.dumps(ctx_dict)]) == 0


def _run_slurm(jobs: list[Job], ctx: RunContext, progress: Progress, slurm: dict) -> None:
    import submitit

    options = dict(slurm)
    cluster = options.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=Path(ctx.out) / "slurm", cluster=cluster)
    # One task per GPU on every node: Lightning reads its ranks from SLURM's environment.
    executor.update_parameters(nodes=ctx.nodes, tasks_per_node=ctx.devices, gpus_per_node=ctx.devices if cluster != "local" else 0,
                               timeout_min=options.pop("timeout_min", 24 * 60), **options)
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), 64))) as pool:
        def launch(job: Job) -> bool:
            submitted = executor.submit(_slurm_entry, job.to_dict(), ctx.to_dict())
            try:
                submitted.result()
            except Exception as error:  # a task that died before writing its record
                if not is_done(ctx.job_dir(job)) and load_record(ctx.job_dir(job)) is None:
                    record_failure(job, ctx, error)
            return is_done(ctx.job_dir(job))

        list(pool.map(lambda job: _attempt(job, ctx, progress, launch), jobs))


def run_matrix(jobs: list[Job], ctx: RunContext, launcher: str = "inline", slots: int = 1,
               slurm: dict | None = None, progress: bool = True) -> Progress:
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; expected one of {LAUNCHERS}")
    counters = Progress(total=len(jobs), show=progress)
    try:
        if launcher == "slurm":
            _run_slurm(jobs, ctx, counters, slurm or {})
        elif launcher == "pool":
            devices = _gpu_slots(slots, ctx.devices)

            def launch(job: Job) -> bool:
                slot = devices.get()
                try:
                    return _run_subprocess(job, ctx, slot)
                finally:
                    devices.put(slot)

            with ThreadPoolExecutor(max_workers=slots) as pool:
                list(pool.map(lambda job: _attempt(job, ctx, counters, launch), jobs))
        else:
            in_process = launcher == "inline" and ctx.devices * ctx.nodes == 1
            for job in jobs:
                _attempt(job, ctx, counters, (lambda j: _run_inline(j, ctx)) if in_process else (lambda j: _run_subprocess(j, ctx)))
    finally:
        counters.close()
    return counters


def store_status(store: Path, jobs: list[Job] | None = None) -> dict[str, int]:
    """Counts of a store's jobs by state, without running anything; `jobs` adds those not started yet."""
    job_dirs = {p.name: p for p in (Path(store) / "jobs").glob("*") if p.is_dir()}
    wanted = [job.id for job in jobs] if jobs is not None else list(job_dirs)
    counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for job_id in wanted:
        job_dir = job_dirs.get(job_id)
        if job_dir is None:
            counts["pending"] += 1
        elif is_done(job_dir):
            counts["done"] += 1
        elif is_locked(job_dir):
            counts["running"] += 1
        elif (load_record(job_dir) or {}).get("status") == "failed":
            counts["failed"] += 1
        else:
            counts["pending"] += 1
    counts["total"] = len(wanted)
    return counts
