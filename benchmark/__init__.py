"""lpft-bench: adapting a pretrained model under distribution shift (LP, FT, LP-FT, head probing and after).

The few objects a notebook needs, imported on first use (importing the package configures nothing):

    import lpft_bench
    record = lpft_bench.run_job(lpft_bench.Job("digits", "lp-ft", seed=0), lpft_bench.RunContext(out="results/nb"))
    print(lpft_bench.run_suite("examples/my-shift.yaml", out="results/my-shift"))   # a suite name or a file
    print(lpft_bench.collect("results/my-shift"))
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path

_EXPORTS = {
    "Job": "lpft_bench.engine",
    "RunContext": "lpft_bench.engine",
    "run_job": "lpft_bench.engine",
    "collect": "lpft_bench.analysis.tables",
    "load_experiment": "lpft_bench.experiments",
    "get_suite": "lpft_bench.suites",
    "UsageError": "lpft_bench.errors",
}
__all__ = [*_EXPORTS, "run_suite"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lpft_bench' has no attribute {name!r}")


def run_suite(suite: str | Path, out: str | Path, launcher: str = "inline", **context) -> str:
    """Run a registered suite (by name) or an experiment file into the store `out`, then return its tables.
    `context`: RunContext's options (data_root, accelerator, devices, num_workers, precision, ...)."""
    from lpft_bench.analysis.tables import collect
    from lpft_bench.engine import RunContext
    from lpft_bench.errors import UsageError
    from lpft_bench.matrix import choose_suite, matrix_jobs
    from lpft_bench.preflight import job_plans, unreadable_images
    from lpft_bench.runner import run_matrix

    is_file = Path(suite).suffix in (".yaml", ".yml", ".toml")
    chosen = choose_suite(None if is_file else str(suite), False, str(suite) if is_file else None, None)
    jobs = matrix_jobs(chosen)
    report, blocking = unreadable_images(job_plans(jobs), progress=False)
    if blocking:  # as `lpft-bench run`: every unreadable image named at once, before the first job
        raise UsageError(report)
    run_matrix(jobs, RunContext(out=Path(out), **context), launcher=launcher)
    return collect(Path(out), matrix=[job.id for job in jobs])
