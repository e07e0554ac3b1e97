"""The matrix a store is run with, the job records outside it, and `lpft-bench prune`, which removes them.

A store keeps every job it ever ran. When the data or the experiment changes, jobs get new ids and the old
records stay: they are results of another matrix, so `run`, `status` and the tables count only the current
matrix's jobs and report the others once, as records outside this matrix. `prune` removes those job records
(their phase results and features stay: they are keyed by what they depend on and shared).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from lpft_bench.paths import display_path
from lpft_bench.errors import UsageError

MATRIX_FILE = "matrix.json"


def matrix_ids(store: Path) -> list[str] | None:
    """The job ids of the matrix the store was last run with; None when it never recorded one."""
    path = Path(store) / MATRIX_FILE
    if not path.is_file():
        return None
    try:
        return list(json.loads(path.read_text())["jobs"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{display_path(path)} is unreadable ({error}); rerun `lpft-bench run` to rewrite it") from error


def outside_records(store: Path, matrix: list[str] | None) -> list[str]:
    """Ids of the job directories holding a record that is not of the matrix (none when no matrix is known)."""
    jobs = Path(store) / "jobs"
    if matrix is None or not jobs.is_dir():
        return []
    wanted = set(matrix)
    return sorted(p.name for p in jobs.iterdir() if p.name not in wanted and (p / "record.json").exists())


def outside_line(count: int) -> str | None:
    if not count:
        return None
    return f"{count} record(s) outside this matrix (`lpft-bench prune` removes them)"


def prune(store: Path, matrix: list[str] | None, dry_run: bool = False) -> list[str]:
    """Remove the job directories outside the matrix, except those a runner holds right now; return their ids."""
    from lpft_bench.engine.store import is_locked

    if matrix is None:
        raise UsageError(f"{display_path(store)} records no matrix ({MATRIX_FILE}); pass the one to keep "
                         "(--config FILE or --suite NAME, with the same filters as `run`)")
    removed = []
    for job_id in outside_records(store, matrix):
        job_dir = Path(store) / "jobs" / job_id
        if is_locked(job_dir):  # another runner's job, of another matrix: never pulled from under it
            continue
        if not dry_run:
            shutil.rmtree(job_dir)
        removed.append(job_id)
    return removed


def main_prune(args, suite_jobs) -> int:
    """`lpft-bench prune`: the matrix from the command line when given, else the store's own."""
    store = Path(args.out) if args.out else None
    jobs = None
    if args.suite or args.all or args.config:
        suite, jobs = suite_jobs(args)
        store = store or Path("results") / suite.name
    if store is None:
        raise UsageError("prune needs the store: --out DIR (or --config FILE / --suite NAME for its default store)")
    if not (store / "jobs").is_dir():
        raise UsageError(f"no results store at {display_path(store)}: expected {display_path(store / 'jobs')}/<job id>/")
    removed = prune(store, [job.id for job in jobs] if jobs is not None else matrix_ids(store), args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{display_path(store)}: {verb} {len(removed)} job record(s) outside this matrix"
          + (f": {', '.join(removed)}" if removed else ""))
    return 0
