"""The SLURM launcher, through submitit: one job array per matrix, submit-and-exit, and workers that guard
themselves.

- The matrix's jobs that are not done, running or already queued go out as one array (`map_array`), at most
  `slurm_array_parallelism` running at once; each job's SLURM id is written to `<job dir>/slurm.json`, so
  `status` can tell queued, running, preempted, done and failed apart after the submitting process has gone.
- The worker takes the job's lock itself: a second submission of the same matrix never runs a job twice
  (its task finds the job done, or held, and returns).
- On preemption or timeout submitit calls `Worker.checkpoint`, which requeues the same call; the requeued task
  resumes the running phase from its last epoch checkpoint."""
from __future__ import annotations

import json
import os
import time

import submitit

from lpft_bench.engine import Job, RunContext, record_failure, run_job
from lpft_bench.engine.retention import worker_context
from lpft_bench.engine.store import Store
from lpft_bench.errors import UsageError
from lpft_bench.storage import write_json

SUBMISSION = "slurm.json"
# Short names for the options people ask for; any other key is passed to submitit as it is.
OPTION_ALIASES = {"time": "timeout_min", "cpus": "cpus_per_task", "mem": "mem_gb", "gpus": "gpus_per_node",
                  "partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
                  "constraint": "slurm_constraint", "array_parallelism": "slurm_array_parallelism"}
QUEUE_ALIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


def parse_options(pairs: list[str]) -> dict:
    """`KEY=VALUE` pairs as submitit parameters (numbers as numbers)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--slurm-option {pair!r}: expected KEY=VALUE, e.g. time=120 or account=my-lab")
        for convert in (int, float):
            try:
                value = convert(value)
                break
            except ValueError:
                pass
        options[OPTION_ALIASES.get(key, key)] = value
    return options


class Worker(submitit.helpers.Checkpointable):
    """What each array task runs: the job, under its lock, unless it is done or another task holds it."""

    def __call__(self, job_dict: dict, ctx_dict: dict) -> str:
        job, ctx = Job.from_dict(job_dict), RunContext.from_dict(ctx_dict)
        store = ctx.store
        if submitit.JobEnvironment().global_rank != 0:  # DDP ranks of a multi-task job: rank zero holds the lock
            run_job(job, ctx)
            return "done"
        with store.job_lock(job.id) as acquired:
            if not acquired:
                return "busy"
            store.repair_job(job.id)
            if store.is_done(job.id):
                return "skipped"
            _set_state(store, job.id, "started")
            try:
                run_job(job, ctx)
            except Exception as error:  # recorded in the store, then reported to submitit as the task's failure
                record_failure(job, ctx, error)
                raise
        return "done"

    def checkpoint(self, job_dict: dict, ctx_dict: dict) -> submitit.helpers.DelayedSubmission:
        """Preempted or timed out: requeue this call; the rerun resumes from the last epoch checkpoint."""
        ctx, job = RunContext.from_dict(ctx_dict), Job.from_dict(job_dict)
        _set_state(ctx.store, job.id, "preempted")
        return super().checkpoint(job_dict, ctx_dict)


def _submission(store: Store, job_id: str) -> dict | None:
    path = store.job_note(job_id, SUBMISSION)
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except ValueError:  # a half-overwritten note is no reason to stop: the store's own state still holds
        return None


def _set_state(store: Store, job_id: str, state: str) -> None:
    note = _submission(store, job_id)
    if note is not None:
        write_json(store.job_note(job_id, SUBMISSION), {**note, "state": state})


def _in_queue(note: dict) -> bool:
    """Whether the submitted SLURM job is still queued or running (locally: its controller process is alive)."""
    if note["cluster"] == "local":
        try:
            os.kill(int(note["job_id"]), 0)
        except (ProcessLookupError, PermissionError, ValueError):
            return False
        return True
    state = submitit.SlurmJob(note["folder"], note["job_id"]).state
    return state.split()[0] in QUEUE_ALIVE or state == "UNKNOWN"


def slurm_state(store: Store, job_id: str, state: str) -> str:
    """Refine the store's state of a job with its submission: a pending job with a live submission is queued
    (or preempted, awaiting its requeue); one whose submission left the queue without a record failed."""
    note = _submission(store, job_id)
    if note is None or state != "pending":
        return state
    if _in_queue(note):
        return "preempted" if note.get("state") == "preempted" else "queued"
    return "failed"


def run_slurm(jobs: list[Job], ctx: RunContext, options: dict, wait: bool, progress) -> list:
    """Submit the jobs that need running as one array; with `wait`, block until every task has ended."""
    options = dict(options)
    cluster = options.pop("cluster", None)
    store = ctx.store
    folder = store.launcher_dir("slurm")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    # One task per GPU on every node: Lightning reads its ranks from SLURM's environment.
    defaults = {"nodes": ctx.nodes, "tasks_per_node": ctx.devices, "timeout_min": 24 * 60,
                "gpus_per_node": ctx.devices if executor.cluster != "local" else 0}
    try:
        executor.update_parameters(**{**defaults, **options})
    except (NameError, ValueError, TypeError) as error:  # submitit names the parameter it does not know
        raise UsageError(f"--slurm-option: {error}") from error
    todo = []
    for job in jobs:
        state = slurm_state(store, job.id, store.job_state(job.id)[0]) if ctx.job_dir(job).exists() else "pending"
        if state in ("done", "running", "queued", "preempted"):
            progress.finished("skipped" if state == "done" else "busy")
        else:
            todo.append(job)
    submitted = executor.map_array(Worker(), [j.to_dict() for j in todo],
                                   [worker_context(j, ctx).to_dict() for j in todo]) if todo else []
    for job, task in zip(todo, submitted):
        write_json(store.job_note(job.id, SUBMISSION), {"job_id": task.job_id, "cluster": executor.cluster,
                                                   "folder": str(folder), "state": "queued", "submitted": time.time()})
    if not wait:
        return submitted
    for job, task in zip(todo, submitted):
        progress.started()
        try:
            task.result()
        except Exception as error:  # a task that died before writing its record (killed, out of memory)
            if store.job_state(job.id)[0] == "pending":
                record_failure(job, ctx, error)
        progress.finished("done" if store.is_done(job.id) else "failed")
    return submitted


def launch_slurm(jobs: list[Job], ctx: RunContext, progress, options: dict) -> None:
    """The `slurm` launcher (lpft_bench.launchers): the matrix as one array; the submitted jobs on `progress`."""
    progress.submitted = run_slurm(jobs, ctx, options.get("slurm") or {}, options.get("wait", True), progress)
