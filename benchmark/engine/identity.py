"""What a job is: (benchmark, backbone, strategy, hyperparameters, seed), identified by the hash of its meaning;
and the keys of the model states its phases produce. Where and how it runs (`RunContext`) never counts.

Ids are computed under an `IdentityScheme` (how a phase is described, how a meaning is hashed). `CURRENT` is
the only one a run uses; earlier schemes are kept in `migrations` solely to re-key stores written under them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from lpft_bench.datamodules import benchmark_class, benchmark_meaning
from lpft_bench.meaning import meaning_hash  # identity's hash; re-exported here, where every id is made
from lpft_bench.models import BackboneSpec, resolve_backbone
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.strategies.phases import Phase

from .store import Store

__all__ = ["CURRENT", "IdentityScheme", "Job", "RunContext", "feature_key", "ingredient_jobs", "job_id",
           "job_meaning", "meaning_hash", "phase_key", "phase_settings"]


@dataclass(frozen=True)
class IdentityScheme:
    """Version 2: phases described by their non-default fields, grids by their specification, floats
    canonicalised before hashing (`lpft_bench.meaning`): the same ids on every CPU."""

    version: int
    describe_phase: Callable[[Phase], dict]
    hash: Callable[[Any], str]


CURRENT = IdentityScheme(2, Phase.describe, meaning_hash)


@dataclass(frozen=True)
class Job:
    """What is run. Its identity is what its result depends on: the benchmark's data (a folder by its content),
    the backbone's weights and data config, the strategy, hyperparameters and seed; never a machine path,
    and never `labels` (the names a suite or experiment file shows it under)."""

    benchmark: str
    strategy: str
    seed: int
    backbone: str = "digits-resnet"
    hparams: dict = field(default_factory=dict)
    benchmark_options: dict = field(default_factory=dict)
    checkpoint: str | None = None
    backbone_options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)

    def backbone_spec(self) -> BackboneSpec:
        return resolve_backbone(self.backbone, self.checkpoint, self.backbone_options)

    def label(self, axis: str) -> str:
        """The name this job is shown under on `axis` ("benchmark", "strategy" or "backbone")."""
        return self.labels.get(axis) or getattr(self, axis)

    def benchmark_meaning(self) -> dict:
        return self._benchmark_meaning

    @cached_property
    def _benchmark_meaning(self) -> dict:  # computed once: a folder's fingerprint walks its files
        return {"name": self.benchmark, "options": benchmark_meaning(self.benchmark, self.benchmark_options)}

    def meaning(self) -> dict:
        return self._meaning

    @property
    def mode(self) -> str:
        """The benchmark's mode (paper or clean): given, else the benchmark's default."""
        return self.benchmark_options.get("mode") or benchmark_class(self.benchmark).modes[0]

    @cached_property
    def _meaning(self) -> dict:
        return job_meaning(self, CURRENT)

    @property
    def id(self) -> str:
        return CURRENT.hash(self.meaning())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        return cls(**data)


@dataclass(frozen=True)
class RunContext:
    """Where and how jobs run: machine paths and devices, never part of a job's identity."""

    out: Path
    data_root: str | None = None
    accelerator: str = "auto"
    devices: int = 1
    nodes: int = 1
    num_workers: int = 0
    precision: str | None = None
    logger: str = "csv"  # engine.loggers: csv (always written), tensorboard, wandb or mlflow
    compile: bool = False
    eval_every_epoch: bool = False  # recording: every set's accuracy after every epoch, not only the selection set's
    checkpoint_every_minutes: float = 0  # resume checkpoints at most this often (0: every epoch; the CLI's default: 10)
    # Which weights a phase that ends its run writes, by phase key (retention.weights_written under the
    # keep-weights policy); None: all of them.
    weights_written: dict[str, str] | None = None

    @property
    def store(self) -> Store:
        return Store(self.out)

    def job_dir(self, job: Job) -> Path:
        return self.store.job_dir(job.id)

    def to_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}

    @classmethod
    def from_dict(cls, data: dict) -> "RunContext":
        return cls(**{**data, "out": Path(data["out"])})


def job_meaning(job: Job, scheme: IdentityScheme) -> dict:
    strategy = get_strategy(job.strategy)
    phases = strategy.phases(job.hparams)
    meaning = {
        "benchmark": job.benchmark_meaning(),
        "backbone": job.backbone_spec().meaning(),
        "strategy": job.strategy,
        "hparams": strategy.hparams(job.hparams),
        "phases": [scheme.describe_phase(p) for p in phases],
        "seed": job.seed,
    }
    settings = phase_settings(phases, job.mode)
    if settings:  # only where a phase has some: every other job keeps its identity
        meaning["phase_settings"] = settings
    return meaning


def job_id(job: Job, scheme: IdentityScheme = CURRENT) -> str:
    return job.id if scheme is CURRENT else scheme.hash(job_meaning(job, scheme))


def phase_settings(phases: list[Phase], mode: str) -> dict:
    """Each phase's kind settings (the logistic probe's standardisation, solver and tie rule), by position."""
    settings = {str(i): phase_kind(p.trains).settings(p, mode) for i, p in enumerate(phases)}
    return {i: s for i, s in settings.items() if s}


def ingredient_jobs(job: Job, phase: Phase) -> list[Job]:
    """The jobs whose results a phase of `job` depends on (a soup's sweep), with the job's benchmark, backbone
    and seed."""
    hparams = get_strategy(job.strategy).hparams(job.hparams)
    return [replace(job, strategy=strategy, hparams=ingredient_hparams)
            for strategy, ingredient_hparams in phase_kind(phase.trains).ingredients(phase, hparams, lambda name: get_strategy(name).defaults)]


def phase_key(job: Job, phases: list[Phase], index: int, scheme: IdentityScheme = CURRENT) -> str:
    """Identity of the model state after phases[:index + 1]: jobs sharing that prefix share its result
    (lp-ft reuses the lp job's probe, hp-ft jobs that differ only in their FT learning rate share one HP)."""
    prefix = phases[: index + 1]
    hparams = get_strategy(job.strategy).hparams(job.hparams)
    depends_on_training = any(phase_kind(p.trains).depends_on_training for p in prefix)
    described = [scheme.describe_phase(p) for p in prefix]
    pinned = prefix[-1].seed
    if pinned is not None:  # the phase the job of that seed runs: its key, so both share one result
        described[-1].pop("seed", None)  # (identity v1 had no seed field)
    meaning = {
        "benchmark": job.benchmark_meaning(),
        "backbone": job.backbone_spec().meaning(),
        "pretrained": get_strategy(job.strategy).pretrained,
        "seed": job.seed if pinned is None else pinned,
        "training": {k: hparams.get(k) for k in ("batch_size", "head", "probe_size")} if depends_on_training else {},
        "phases": described,
    }
    settings = phase_settings(prefix, job.mode)
    if settings:
        meaning["phase_settings"] = settings
    ingredients = ingredient_jobs(job, prefix[-1])
    if ingredients:
        meaning["ingredients"] = [job_id(ingredient, scheme) for ingredient in ingredients]
    return f"{index}-{prefix[-1].name}-{scheme.hash(meaning)}"


def feature_key(job: Job, set_name: str, view: str = "eval", random_view: bool = False,
                scheme: IdentityScheme = CURRENT) -> str:
    """Features depend on the backbone (weights and data config), the benchmark's data, the set, the view of
    its images and, only where the images or the view depend on it, the seed: nothing else."""
    seeded = random_view or set_name in benchmark_class(job.benchmark).seeded_sets(job.benchmark_options)
    meaning = {"backbone": job.backbone_spec().meaning(), "benchmark": job.benchmark_meaning(), "set": set_name,
               "seed": job.seed if seeded else None}
    if view != "eval":
        meaning["view"] = view
    return scheme.hash(meaning)
