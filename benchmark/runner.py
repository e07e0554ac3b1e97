"""Runs a matrix of jobs into a store: skips done jobs, retries failed ones, never runs one job twice at once.

Launchers (registered in `lpft_bench.launchers`): inline, local and pool here; slurm in `lpft_bench.slurm`
(`cluster="local"` runs submitit's local executor; DDP over `devices` GPUs per node and `nodes` nodes inside
each job; submit-and-exit unless `wait`). The pool divides an inherited CUDA_VISIBLE_DEVICES, never replaces it.
A job running on several devices always gets its own process: Lightning's DDP re-executes its command.
Inside `interrupts.stop_on_signals()` SIGINT/SIGTERM stop the matrix between jobs or at the next safe point of
the running one, and are passed on to worker processes.
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

from lpft_bench import interrupts
from lpft_bench.engine import Job, RunContext, record_failure, run_job
from lpft_bench.engine.identity import CURRENT
from lpft_bench.engine.migrations import mark_store, migrate_store, store_version
from lpft_bench.engine.retention import worker_context
from lpft_bench.engine.store import Store
from lpft_bench.errors import UsageError
from lpft_bench.launchers import LAUNCHERS


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
    submitted: list = field(default_factory=list)  # slurm: the submitit jobs sent to the queue
    current: dict = field(default_factory=dict)  # job directory -> its label, for the jobs running now
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        # In a log (CI, SLURM, `> file`) a redrawn bar is a line every refresh: there, a line a minute at most.
        self.interactive = interactive = sys.stderr.isatty()
        self.bar = tqdm(total=self.total, desc="matrix", unit="job", disable=not self.show, dynamic_ncols=True,
                        mininterval=0.1 if interactive else 60)
        self._closed = threading.Event()
        if self.show and interactive:  # the running job's epoch, read from its progress note, whichever process runs it
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._closed.wait(2.0):
            with self._lock:
                self._refresh()

    def _now(self) -> str:
        for job_dir, label in list(self.current.items())[:1]:
            try:
                note = json.loads(Store.progress_path(job_dir).read_text())
            except (OSError, ValueError):
                return f" | {label}"
            accuracy = "" if note.get("acc") is None else f" val {note['acc']}%"
            return f" | {label} {note['phase']} {note['epoch']}/{note['epochs']}{accuracy}"
        return ""

    def _refresh(self) -> None:
        self.bar.set_postfix_str(f"done={self.done + self.skipped} running={self.running} failed={self.failed}"
                                 + self._now(), refresh=self.interactive)

    def started(self, job: Job | None = None, job_dir: Path | None = None) -> None:
        with self._lock:
            self.running += 1
            if job is not None:
                self.current[job_dir] = f"{job.label('benchmark')}/{job.label('strategy')} seed {job.seed}"
            self._refresh()

    def finished(self, outcome: str) -> None:
        with self._lock:
            if outcome != "skipped" and outcome != "busy":
                self.running -= 1
            setattr(self, outcome, getattr(self, outcome) + 1)
            self.bar.update(1)
            self._refresh()

    def close(self) -> None:
        self._closed.set()
        self.bar.close()


def worker_command(job: Job, ctx: RunContext) -> list[str]:
    context = worker_context(job, ctx).to_dict()
    return [sys.executable, "-m", "lpft_bench.engine.execution", json.dumps(job.to_dict()), json.dumps(context)]


def _run_subprocess(job: Job, ctx: RunContext, devices: str | None = None) -> bool:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    with open(ctx.store.worker_log(job.id), "w") as log:
        worker = subprocess.Popen(worker_command(job, ctx), stdout=log, stderr=subprocess.STDOUT, env=env)
        with interrupts.forward_to(worker):
            returncode = worker.wait()
    return returncode == 0 and ctx.store.is_done(job.id)


def _run_inline(job: Job, ctx: RunContext) -> bool:
    try:
        run_job(job, ctx)
        return True
    except Exception as error:  # recorded in the store; the matrix goes on
        record_failure(job, ctx, error)
        return False


def _attempt(job: Job, ctx: RunContext, progress: Progress, launch) -> None:
    """Run `job` under its lock unless it is done or held by another runner; first set aside whatever would
    block it (an unreadable record, a done marker without a record)."""
    interrupts.check()
    store, job_dir = ctx.store, ctx.job_dir(job)
    if store.is_done(job.id):
        progress.finished("skipped")
        return
    with store.job_lock(job.id) as acquired:
        if not acquired:
            progress.finished("busy")
            return
        store.repair_job(job.id)
        if store.is_done(job.id):  # finished by another runner between our check and the lock
            progress.finished("skipped")
        else:
            progress.started(job, job_dir)
            try:
                outcome = "done" if launch(job) else "failed"
            finally:
                progress.current.pop(job_dir, None)
            progress.finished(outcome)


def _gpu_slots(slots: int, devices_per_job: int) -> Queue:
    """Each slot owns `devices_per_job` of the devices this process may use: those an inherited
    CUDA_VISIBLE_DEVICES names (ids or UUIDs), else 0, 1, ... (ignored on CPU-only machines)."""
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        visible = [d.strip() for d in inherited.split(",") if d.strip()]
        if len(visible) < slots * devices_per_job:
            raise UsageError(f"--slots {slots} x --devices {devices_per_job} needs {slots * devices_per_job} devices; "
                             f"CUDA_VISIBLE_DEVICES={inherited!r} gives this run {len(visible)}")
    else:
        visible = [str(d) for d in range(slots * devices_per_job)]
    queue: Queue = Queue()
    for slot in range(slots):
        queue.put(",".join(visible[slot * devices_per_job:(slot + 1) * devices_per_job]))
    return queue


def write_matrix(ctx: RunContext, jobs: list[Job]) -> None:
    """The matrix a store was asked for, so `status`, `collect` and `prune` know its jobs (those not yet started,
    and the records outside it) without being told the suite."""
    ctx.store.write_matrix([job.id for job in jobs])


def _in_order(jobs: list[Job], ctx: RunContext, counters: Progress, subprocesses: bool) -> None:
    in_process = not subprocesses and ctx.devices * ctx.nodes == 1  # DDP re-executes its command: a process
    for job in jobs:
        _attempt(job, ctx, counters, (lambda j: _run_inline(j, ctx)) if in_process else (lambda j: _run_subprocess(j, ctx)))


def launch_inline(jobs: list[Job], ctx: RunContext, counters: Progress, options: dict) -> None:
    _in_order(jobs, ctx, counters, subprocesses=False)


def launch_local(jobs: list[Job], ctx: RunContext, counters: Progress, options: dict) -> None:
    _in_order(jobs, ctx, counters, subprocesses=True)


def launch_pool(jobs: list[Job], ctx: RunContext, counters: Progress, options: dict) -> None:
    slots = options.get("slots", 1)
    devices = _gpu_slots(slots, ctx.devices) if ctx.accelerator != "cpu" else None

    def launch(job: Job) -> bool:
        if devices is None:
            return _run_subprocess(job, ctx)
        slot = devices.get()
        try:
            return _run_subprocess(job, ctx, slot)
        finally:
            devices.put(slot)

    with ThreadPoolExecutor(max_workers=slots) as pool:
        list(pool.map(lambda job: _attempt(job, ctx, counters, launch), jobs))


def run_matrix(jobs: list[Job], ctx: RunContext, launcher: str = "inline", slots: int = 1,
               slurm: dict | None = None, progress: bool = True, wait: bool = True) -> Progress:
    """Run (or, with the slurm launcher and not `wait`, submit) the jobs that are not done yet."""
    launch = LAUNCHERS.get(launcher).load()
    migration = migrate_store(ctx.out, jobs)  # a store of an earlier identity scheme: re-keyed, never rerun
    if migration is not None:
        print(migration.summary(ctx.out), file=sys.stderr)
    mark_store(ctx.out)
    write_matrix(ctx, jobs)
    counters = Progress(total=len(jobs), show=progress)
    try:
        launch(jobs, ctx, counters, {"slots": slots, "slurm": slurm, "wait": wait})
    finally:
        counters.close()
    return counters


def failure_causes(jobs: list[Job], ctx: RunContext) -> list[tuple[str, int]]:
    """Each distinct error of the failed jobs (its first line, as their records keep it) with how many jobs it
    hit, the most frequent first."""
    from collections import Counter

    causes: Counter = Counter()
    for job in jobs:
        state, detail = ctx.store.job_state(job.id)
        if state == "failed":
            causes[(detail or "no error recorded").splitlines()[0]] += 1
    return causes.most_common()


STATES = ("done", "running", "queued", "preempted", "failed", "corrupt", "pending")


def store_status(store: Path, jobs: list[Job] | None = None) -> dict:
    """Counts of a store's jobs by state, without running or changing anything. The jobs counted: `jobs`, else
    the matrix the store was last run with (`matrix.json`), else every job in it; `corrupt` lists why, `outside`
    counts the records of jobs outside that matrix (superseded data or configuration: never this run's failures)."""
    from lpft_bench.prune import matrix_ids, outside_records
    from lpft_bench.slurm import slurm_state

    store = Store(store)
    if not store.exists():
        raise UsageError(f"no results store at {store.root}: expected {store.jobs_dir}/<job id>/, "
                         "as `lpft-bench run --out DIR` writes")
    if store_version(store.root) != CURRENT.version:
        if not os.access(store.root, os.W_OK):
            raise UsageError(f"{store.root} was written with identity v{store_version(store.root)}: its job ids are "
                             "not this version's; `lpft-bench run` (or `status`) on a writable copy re-keys it")
        migration = migrate_store(store.root, jobs or [])
        if migration is not None:
            print(migration.summary(store.root), file=sys.stderr)
    present = set(store.job_ids())
    matrix = [job.id for job in jobs] if jobs is not None else matrix_ids(store.root)
    wanted = list(dict.fromkeys(matrix)) if matrix is not None else sorted(present)
    counts: dict = {state: 0 for state in STATES}
    counts["problems"] = []
    for job_id in wanted:
        state, detail = store.job_state(job_id) if job_id in present else ("pending", "")
        if job_id in present:
            state = slurm_state(store, job_id, state)
        counts[state] += 1
        if state == "corrupt":
            counts["problems"].append(detail)
    counts["total"] = len(wanted)
    counts["outside"] = len(outside_records(store.root, matrix))
    return counts
