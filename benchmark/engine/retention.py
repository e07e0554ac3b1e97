"""Which phase weights a store keeps (`--keep-weights`): a storage knob, never part of a job's identity.

Whatever the policy, a store keeps every record (jobs' and phases') and the weights a pending job of the matrix
will start from (the result its first missing phase reads; for a job whose phases are all stored, its last and
what its last read).
On top of that:
  all       every weights file (the store as it was before policies existed);
  selected  each job's selected weights (its last phase at the selected epoch) and every phase result that a
            later phase of a job in the matrix reads (lp-ft's FT reads lp's probe; a soup reads its ingredients);
  none      only the final weights of the head-probing jobs (hp-ft, lshp-ft, mlp-head, reinit-ft): the report's
            swap matrix exchanges their heads and backbones.
A phase over the job's source backbone (a probe) keeps its head alone whatever the policy (store_files)."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.kinds import phase_kind

from .identity import Job, RunContext, ingredient_jobs, phase_key
from .store import Store
from .store_files import SELECTED

POLICIES = ("all", "selected", "none")
DEFAULT_POLICY = "none"
WEIGHTS, SELECTED_EPOCH, FINAL = "weights", "selected", "final"  # roles of a phase's weights files
WHOLE = frozenset({WEIGHTS, SELECTED_EPOCH})


def keeps_source_backbone(phases: list, index: int) -> bool:
    """Whether the model after phases[:index + 1] still holds the job's source backbone (probes only)."""
    return all(phase_kind(p.trains).keeps_backbone(p) for p in phases[: index + 1])


def report_strategies() -> tuple[str, ...]:
    """The strategies whose final weights the report reads (its head-probing sweeps and swap matrix)."""
    from lpft_bench.analysis.report import HEAD_PROBING_STRATEGIES

    return HEAD_PROBING_STRATEGIES


def _keys(job: Job) -> tuple[list, list[str]]:
    phases = get_strategy(job.strategy).phases(job.hparams)
    return phases, [phase_key(job, phases, i) for i in range(len(phases))]


def _reads(job: Job, phases: list, keys: list[str], index: int) -> list[tuple[Job, int]]:
    """The (job, phase index) results phase `index` of `job` starts from: the phase before it, the one before
    that where the phase interpolates from its start, and a soup's ingredients' final results."""
    reads = [(job, index - 1)] if index > 0 else []
    if index >= 2 and phase_kind(phases[index].trains).needs_previous_start:
        reads.append((job, index - 2))
    if index < len(phases):
        for ingredient in ingredient_jobs(job, phases[index]):
            reads.append((ingredient, len(_keys(ingredient)[0]) - 1))
    return reads


def _pending_reads(job: Job, phase_done: Callable[[str], bool], keep: dict) -> None:
    """What a job not yet done will load: from its first missing phase (a soup's ingredients likewise). A job
    cut after its last phase's record loads that phase, then calibrates it at its selected epoch; where the phase
    wrote its record alone (`weights_written`), the job recomputes it from what it read: both are kept."""
    phases, keys = _keys(job)
    first = next((i for i, key in enumerate(keys) if not phase_done(key)), len(keys))
    if first == len(keys):
        keep[keys[-1]] |= WHOLE
        first -= 1
    for reader, index in _reads(job, phases, keys, first):
        if reader is job:
            keep[keys[index]] |= WHOLE
        else:
            _pending_reads(reader, phase_done, keep)


def computed_phases(job: Job, store: Store) -> list[str]:
    """The keys of the phases a run of `job` computes, by the files the store holds now, as the engine decides
    (`_resume`, then its phase loop): from its first phase without a record, back past every phase whose
    result the next one reads and the store holds no weights of (a record written alone), then each phase it
    cannot load. The caller leaves out a job that is done: a run skips it."""
    phases, keys = _keys(job)
    first = next((i for i, key in enumerate(keys) if not store.phase_done(key)), len(keys))
    while first > 0:
        reads = [first - 1] if first == len(keys) else [i for reader, i in _reads(job, phases, keys, first)
                                                         if reader is job]
        if all(store.phase_loadable(keys[i]) for i in reads):
            break
        first -= 1
    return [key for key in keys[first:] if not store.phase_loadable(key)]


def kept_roles(jobs: Iterable[Job], policy: str, pending: set[str], phase_done: Callable[[str], bool]
               ) -> dict[str, set[str]]:
    """Phase key -> the roles of its weights files to keep (WEIGHTS, SELECTED_EPOCH, or FINAL: the selected
    epoch's weights where the phase has them, else its end weights)."""
    keep: dict[str, set[str]] = defaultdict(set)
    reported = report_strategies() if policy == "none" else ()
    for job in jobs:
        phases, keys = _keys(job)
        if job.id in pending:
            _pending_reads(job, phase_done, keep)
        if policy == "selected" or job.strategy in reported:
            keep[keys[-1]].add(FINAL)
        if policy == "selected":
            _keep_what_phases_read(job, phases, keys, keep)
    return keep


def _keep_what_phases_read(job: Job, phases: list, keys: list[str], keep: dict) -> None:
    for index in range(len(phases)):
        for reader, read in _reads(job, phases, keys, index):
            reader_keys = keys if reader is job else _keys(reader)[1]
            keep[reader_keys[read]] |= WHOLE


def weights_written(jobs: Iterable[Job], policy: str) -> dict[str, str] | None:
    """Phase key -> which weights a run of the matrix `jobs` under `policy` writes where that phase ends its run:
    WEIGHTS (every weights file: a phase of the matrix or a soup starts from it) or FINAL (those the policy
    keeps: the selected epoch's where the phase has them, else its end weights). A phase not named writes its
    record alone: the job's final pass and calibration use the weights in memory, and a job interrupted before
    its record recomputes that phase. None under `all`: every weights file of every phase."""
    if policy == "all":
        return None
    jobs = with_ingredients(jobs)
    keep = kept_roles(jobs, policy, set(), lambda key: True)
    ending = Counter(_keys(job)[1][-1] for job in jobs)
    for job in jobs:
        phases, keys = _keys(job)
        _keep_what_phases_read(job, phases, keys, keep)
        if ending[keys[-1]] > 1:  # ids that differ by a setting their phases ignore: one runs it, the rest load it
            keep[keys[-1]] |= WHOLE
    return {key: WEIGHTS if roles & WHOLE else FINAL for key, roles in sorted(keep.items()) if roles}


def worker_context(job: Job, ctx: RunContext) -> RunContext:
    """The context a process running `job` gets: only the `weights_written` entries its phases (and its soups'
    ingredients') consult, so a worker's arguments stay small however large the matrix (one argument holds at most
    128 KiB on Linux)."""
    if ctx.weights_written is None:
        return ctx
    keys = {key for each in with_ingredients([job]) for key in _keys(each)[1]}
    return replace(ctx, weights_written={key: role for key, role in ctx.weights_written.items() if key in keys})


def weights_to_save(written: dict[str, str] | None, key: str, ends_run: bool, state, selected):
    """(end weights, selected epoch's weights or None) that the phase `key` saves, by `weights_written` (each of
    them or None); a phase that a later phase of its own run reads saves both. `disk_plan` passes sizes."""
    role = WEIGHTS if written is None or not ends_run else written.get(key)
    if role == FINAL:
        return (None, selected) if selected is not None else (state, None)
    return (state, selected) if role == WEIGHTS else (None, None)


def _role(path: Path) -> str:
    return SELECTED_EPOCH if path.name == SELECTED else WEIGHTS


def droppable(store: Store, jobs: list[Job], policy: str) -> list[Path]:
    """The weights files of the store's finished phases that `policy` does not keep for the matrix `jobs`."""
    if policy == "all":
        return []
    pending = {job.id for job in jobs if not store.is_done(job.id)}
    keep = kept_roles(jobs, policy, pending, store.phase_done)
    dropped = []
    for key in store.stored_phase_keys():
        roles, files = keep.get(key, set()), store.phase_weight_files(key)
        if FINAL in roles:
            has_selected = any(_role(path) == SELECTED_EPOCH for path in files)
            roles = roles | {SELECTED_EPOCH if has_selected else WEIGHTS}
        dropped += [path for path in files if _role(path) not in roles]
    return dropped


def apply_policy(store: Store, jobs: list[Job], policy: str, dry_run: bool = False) -> tuple[list[Path], int] | None:
    """Remove (or, dry, list) the weights `policy` does not keep: (files, bytes). None when a runner holds a
    job of the store right now (its pending phases are not this matrix's to judge): nothing is removed."""
    if any(store.is_locked(job_id) for job_id in store.job_ids()):
        return None
    files = droppable(store, jobs, policy)
    size = sum(path.stat().st_size for path in files)
    if not dry_run:
        for path in files:
            path.unlink(missing_ok=True)
    return files, size


def predicted_files(job: Job) -> list[tuple[str, int, bool, int]]:
    """(phase key, phase index, stores its head alone, epochs) of each phase of the job, for estimates."""
    phases, keys = _keys(job)
    return [(keys[i], i, keeps_source_backbone(phases, i), phases[i].epochs) for i in range(len(phases))]


def with_ingredients(jobs: Iterable[Job]) -> list[Job]:
    """The jobs and the soup ingredients they train (each once), in order."""
    seen: dict[str, Job] = {}
    for job in jobs:
        for phase in get_strategy(job.strategy).phases(job.hparams):
            for ingredient in ingredient_jobs(job, phase):
                seen.setdefault(ingredient.id, ingredient)
        seen.setdefault(job.id, job)
    return list(seen.values())
