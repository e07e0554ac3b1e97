"""From the command line to a matrix of jobs: a suite or an experiment file, filtered and overridden, checked
before anything trains (every job's identity and phases are built here, so bad input fails now, in one line)."""
from __future__ import annotations

from dataclasses import replace

import yaml

from lpft_bench import checks
from lpft_bench.engine import Job
from lpft_bench.errors import NotPretrainedYet, UsageError
from lpft_bench.experiments import load_experiment, read_yaml
from lpft_bench.strategies import get_strategy
from lpft_bench.suites import SUITES, Suite, all_papers_suite, get_suite, strategy_of

DEFAULT_SUITE = "quickstart"


def parse_assignments(texts: list[str] | None, flag: str) -> dict:
    """KEY=VALUE pairs, each VALUE read as YAML (1e-3 is a number, [1, 2] a list, true a boolean)."""
    parsed = {}
    for text in texts or []:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} expects KEY=VALUE, got {text!r}")
        try:
            parsed[key] = read_yaml(value)
        except yaml.YAMLError as error:
            raise UsageError(f"{flag} {key}: {value!r} is not a value ({error.problem})") from error
    return parsed


def choose_suite(suite: str | None, paper: bool, config: str | None, benchmarks: list[str] | None) -> Suite:
    """An experiment file, every paper's suite (--all), the named suite, or the first suite holding every asked
    benchmark (`--benchmarks living17` finds the paper suite), else the default."""
    if config:
        if suite or paper:
            raise UsageError("--config runs its own matrix: drop --suite/--all")
        return load_experiment(config)
    if paper and suite:
        raise UsageError(f"--all runs every paper's suite and --suite {suite} one: give one of them")
    if paper:
        return all_papers_suite()
    if suite:
        return get_suite(suite)
    if benchmarks:
        for candidate in (DEFAULT_SUITE, "paper", *SUITES):
            if set(benchmarks) <= set(SUITES[candidate].benchmarks):
                return SUITES[candidate]
    return get_suite(DEFAULT_SUITE)


def _with_backbone(suite: Suite, backbone: str | None, checkpoint: str | None, backbone_options: dict) -> Suite:
    if backbone is None and checkpoint is None and not backbone_options:
        return suite
    plans = {label: replace(plan, backbone=backbone or plan.backbone, backbone_label=None,
                            checkpoint=checkpoint if checkpoint is not None else plan.checkpoint,
                            backbone_options={**plan.backbone_options, **backbone_options})
             for label, plan in suite.benchmarks.items()}
    return replace(suite, benchmarks=plans)


def _with_benchmark_options(suite: Suite, options: dict) -> Suite:
    if not options:
        return suite
    return replace(suite, benchmarks={label: replace(plan, options={**plan.options, **options})
                                      for label, plan in suite.benchmarks.items()})


def _check_overrides(suite: Suite, strategies: list[str] | None, overrides: dict) -> None:
    checks.check_grid(overrides, "--set")
    chosen = {label: strategy_of(label, grid)[0] for label, grid in suite.strategies.items()
              if not strategies or label in strategies}
    takes = {label: set(get_strategy(name).takes) for label, name in chosen.items()}
    for key in overrides:
        if not any(key in hparams for hparams in takes.values()):
            who = "; ".join(f"{label}: {', '.join(sorted(h))}" for label, h in takes.items())
            raise UsageError(f"--set {key}: no chosen strategy takes it ({who})")


def check_suite(suite: Suite) -> None:
    """Every name that becomes a path is a name; every benchmark's and backbone's options fit their schema
    (after the command line's overrides)."""
    checks.check_name(suite.name, "suite name")
    for label in suite.strategies:
        checks.check_name(label, "strategy label")
    for label, plan in suite.benchmarks.items():
        checks.check_name(label, "benchmark label")
        benchmark = plan.benchmark or label
        checks.check_benchmark_options(benchmark, plan.options, f"benchmark {label} options")
        checks.check_backbone_options(plan.backbone_options, f"benchmark {label} backbone {plan.backbone}")
        if benchmark == "folder":
            checks.check_folder_classes(plan.options, f"benchmark {label}")


def _check_job_inputs(job: Job, checked: set) -> None:
    """Hyperparameters in bounds, and each weights file opened once, before the job's identity is built."""
    from lpft_bench.models.backbones import check_weights

    for key, value in job.hparams.items():
        checks.check_hparam(key, value, _where(job))
    spec = job.backbone_spec()
    weights_key = (spec.timm_name, repr(spec.timm_kwargs), spec.weights)
    if weights_key not in checked:
        check_weights(spec)
        checked.add(weights_key)


def _where(job: Job) -> str:
    return f"job {job.label('benchmark')} / {job.label('strategy')}"


def check_jobs(jobs: list[Job], unpretrained_ok: bool = False) -> None:
    """Build every job's identity and phases now: what the user got wrong is reported before anything trains.
    `unpretrained_ok` (a dry run): a job whose backbone is not pretrained here yet has no id to check."""
    shown: dict[str, dict] = {}
    checked: set = set()
    for job in jobs:
        _check_job_inputs(job, checked)
        try:
            job.id  # noqa: B018 - resolves the backbone, fingerprints the data, builds and validates the phases
        except NotPretrainedYet:
            if unpretrained_ok:
                continue
            raise
        except UsageError:
            raise
        except (KeyError, ValueError, FileNotFoundError) as error:  # from the user's hyperparameters or paths
            raise UsageError(f"job {job.label('benchmark')} / {job.label('strategy')} {job.hparams}: "
                             f"{error.args[0] if error.args else error}") from error
        # After the identity, which has checked the data: a batch size given is at most the training set.
        size_key = (job.benchmark, repr(sorted(job.benchmark_options.items())), job.hparams.get("batch_size"))
        if size_key not in checked:
            checks.check_batch_size(job.benchmark, job.benchmark_options, job.hparams, _where(job))
            checked.add(size_key)
        # One job shown under two labels would run once and appear under only the first: say so instead.
        if shown.setdefault(job.id, job.labels) != job.labels:
            raise UsageError(f"{job.label('benchmark')} / {job.label('strategy')} seed {job.seed} is the same job as "
                             f"{shown[job.id]}: two labels for one setting; keep one of them")


def matrix_jobs(suite: Suite, benchmarks=None, strategies=None, seeds=None, sets: dict | None = None,
                backbone: str | None = None, checkpoint: str | None = None, backbone_options: dict | None = None,
                benchmark_options: dict | None = None, unpretrained_ok: bool = False) -> list[Job]:
    """The suite's jobs, filtered by labels and seeds, with hyperparameter, backbone and benchmark overrides."""
    sets = sets or {}
    _check_overrides(suite, strategies, sets)
    suite = _with_benchmark_options(_with_backbone(suite, backbone, checkpoint, backbone_options or {}),
                                    benchmark_options or {})
    check_suite(suite)
    jobs = suite.expand(benchmarks=benchmarks, strategies=strategies, seeds=seeds, overrides=sets)
    check_jobs(jobs, unpretrained_ok)
    return jobs
