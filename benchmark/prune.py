"""The matrix a store is run with, the job records outside it, and `lpft-bench prune`, which removes them and the
phase weights the keep-weights policy (engine.retention) no longer keeps.

A store keeps every job it ever ran. When the data or the experiment changes, jobs get new ids and the old
records stay: they are results of another matrix, so `run`, `status` and the tables count only the current
matrix's jobs and report the others once, as records outside this matrix. `prune` removes those job records
(their phase results and features stay: they are keyed by what they depend on and shared).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from lpft_bench.paths import display_path
from lpft_bench.errors import UsageError


def _store(store: Path):
    from lpft_bench.engine.store import Store  # the engine package is heavy; `collect` and `status` stay light

    return Store(store)


def matrix_ids(store: Path) -> list[str] | None:
    """The job ids of the matrix the store was last run with; None when it never recorded one."""
    store = _store(store)
    try:
        return store.read_matrix()
    except ValueError as error:
        raise UsageError(f"{display_path(store.matrix_path)} is unreadable ({error}); rerun `lpft-bench run` to "
                         "rewrite it") from error


def outside_records(store: Path, matrix: list[str] | None) -> list[str]:
    """Ids of the job directories holding a record that is not of the matrix (none when no matrix is known)."""
    store = _store(store)
    if matrix is None or not store.jobs_dir.is_dir():
        return []
    wanted = set(matrix)
    return [job_id for job_id in store.job_ids() if job_id not in wanted and store.has_record(job_id)]


def outside_line(count: int) -> str | None:
    if not count:
        return None
    return f"{count} record(s) outside this matrix (`lpft-bench prune` removes them)"


def prune(store: Path, matrix: list[str] | None, dry_run: bool = False) -> list[str]:
    """Remove the job directories outside the matrix, except those a runner holds right now; return their ids."""
    if matrix is None:
        raise UsageError(f"{display_path(store)} records no matrix ({display_path(_store(store).matrix_path)}); pass the one to keep "
                         "(--config FILE or --suite NAME, with the same filters as `run`)")
    removed, the_store = [], _store(store)
    for job_id in outside_records(store, matrix):
        if the_store.is_locked(job_id):  # another runner's job, of another matrix: never pulled from under it
            continue
        if not dry_run:
            shutil.rmtree(the_store.job_dir(job_id))
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
    if not _store(store).jobs_dir.is_dir():
        raise UsageError(f"no results store at {display_path(store)}: expected "
                         f"{display_path(_store(store).jobs_dir)}/<job id>/")
    matrix = [job.id for job in jobs] if jobs is not None else matrix_ids(store)
    removed = prune(store, matrix, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{display_path(store)}: {verb} {len(removed)} job record(s) outside this matrix"
          + (f": {', '.join(removed)}" if removed else ""))
    jobs = jobs if jobs is not None else _recorded_jobs(store, matrix)
    if jobs is None:
        print(f"{display_path(store)}: weights kept: jobs of its matrix have not run yet, and only their "
              "definitions say what they will read; pass the matrix (--config FILE or --suite NAME)")
        return 0
    from lpft_bench.engine.retention import apply_policy

    outcome = apply_policy(_store(store), jobs, args.keep_weights, args.dry_run)
    if outcome is None:
        print(f"{display_path(store)}: weights kept: another runner holds one of its jobs right now")
        return 0
    files, size = outcome
    print(f"{display_path(store)}: --keep-weights {args.keep_weights}: {verb} {len(files)} phase weights file(s), "
          f"{size / 1e6:.1f} MB; every record stays")
    return 0


def _recorded_jobs(store: Path, matrix: list[str]):
    """The matrix's jobs as their records define them; None when one has no readable record (not run yet)."""
    from lpft_bench.engine import Job
    from lpft_bench.engine.store_files import CorruptFile

    jobs = []
    for job_id in matrix:
        try:
            record = _store(store).load_record(job_id)
        except CorruptFile:
            return None
        if record is None or not isinstance(record.get("job"), dict):
            return None
        jobs.append(Job.from_dict(record["job"]))
    return jobs
