"""Stores written under an earlier identity scheme, re-keyed to the current one, never rerun or orphaned.

Identity v1 (every store before 2026-12) described a phase by all its fields but those added later, held the
logistic probe's grid as the 50 floats numpy computed (whose last bits depend on the CPU's SIMD dispatch) and
hashed floats as they came. Version 2 (`identity.CURRENT`) hashes specifications and canonical floats.

A store records its scheme in `store.json`; one without it that holds jobs or phases is v1. Re-keying renames,
under the store's lock: each job directory whose record names its job (or that a job of the matrix being run
maps to under v1), the phase results, resume checkpoints and logs of that job and of its soup ingredients
(found by their v1 keys computed here, and by the keys the job itself wrote into its logs and record, which
also covers stores written on a CPU that rounded the v1 grid otherwise), and `matrix.json`. Records get their
new id and meaning. What cannot be mapped (a record of a job this version cannot build) stays where it is and
is reported: it is outside every matrix, never deleted."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lpft_bench.errors import UsageError
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.phases import Phase

from .identity import CURRENT, IdentityScheme, Job, ingredient_jobs, job_id, job_meaning, phase_key
from .store import STORE_FILE, Store

__all__ = ["CURRENT", "Migration", "STORE_FILE", "V1", "mark_store", "migrate_store", "store_version"]
# The fields a phase had under v1, in order; those after the first records were described only when set.
_V1_FIELDS = ("name", "trains", "epochs", "lr", "optimizer", "momentum", "weight_decay", "batchnorm",
              "label_smoothing", "head_init", "probe_Cs", "also_train", "reinit", "schedule", "validate_every",
              "train_groups", "frozen_groups", "unfreeze_every", "lr_decay", "backbone_lr_ratio", "l2sp_alpha",
              "l2sp_beta", "alphas", "average", "ingredient", "sweep_lrs", "reestimate_bn")
_V1_LATER_FIELDS = _V1_FIELDS[_V1_FIELDS.index("train_groups"):]


def _describe_v1(phase: Phase) -> dict:
    defaults = {f.name: f.default for f in fields(phase)}
    described = {name: getattr(phase, name) for name in _V1_FIELDS}
    described["probe_Cs"] = tuple(phase.probe_Cs)  # the computed floats, as v1 hashed them
    for name in _V1_LATER_FIELDS:
        if described[name] == defaults[name]:
            del described[name]
    return described


def _hash_v1(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()[:16]


V1 = IdentityScheme(1, _describe_v1, _hash_v1)


@dataclass
class Migration:
    """What a re-keying did: job directories and phase results renamed, records it could not map (and why)."""

    from_version: int
    jobs: int = 0
    phases: int = 0
    unmapped: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # old job id -> new

    def summary(self, store: Path) -> str:
        text = (f"lpft-bench: {store}: re-keyed from identity v{self.from_version} to v{CURRENT.version}: "
                f"{self.jobs} job(s), {self.phases} phase result(s)")
        if self.unmapped:
            text += f"; {len(self.unmapped)} record(s) left as they were (outside every matrix): {self.unmapped[0]}"
        return text


def store_version(store: Path) -> int:
    """The identity scheme a store was written under: its `store.json`, else 1 if it holds anything."""
    store = Store(store)
    try:
        marked = store.marked_version()
    except ValueError as error:
        raise UsageError(f"{store.marker_path}: unreadable ({error}); expected {{\"identity\": {CURRENT.version}}}") from error
    if marked is not None:
        return marked
    return 1 if store.holds_results() else CURRENT.version


def mark_store(store: Path) -> None:
    Store(store).mark(CURRENT.version)


def migrate_store(store: Path, jobs: list[Job] = ()) -> Migration | None:
    """Re-key a store written under an earlier scheme (None when it is current); `jobs`: the matrix about to
    run, whose v1 ids also find the directories of jobs that never wrote a record (killed mid-phase)."""
    store = Store(store)
    version = store_version(store.root)
    if version > CURRENT.version:
        raise UsageError(f"{store} was written with identity v{version}, newer than this lpft-bench's "
                         f"v{CURRENT.version}: upgrade lpft-bench to use it")
    if version == CURRENT.version:
        return None
    with store.exclusive():
        if store_version(store.root) == CURRENT.version:  # another runner migrated it while we waited
            return None
        migration = Migration(from_version=version)
        by_old_id = {job_id(job, V1): job for job in jobs}
        for job_dir in store.job_dirs():
            _migrate_job(store, job_dir, by_old_id.get(job_dir.name), migration)
        _migrate_matrix(store, {**{job_id(job, V1): job.id for job in jobs}, **migration.ids})
        store.mark(CURRENT.version, replace=True)
    return migration


def _migrate_job(store: Store, job_dir: Path, job: Job | None, migration: Migration) -> None:
    record = store.read_raw_record(job_dir)
    if record is not None:
        try:
            job = Job.from_dict(record["job"])
            job.meaning()
        except Exception as error:  # a record of a job this version cannot build: kept, reported, never deleted
            migration.unmapped.append(f"{job_dir.name} ({type(error).__name__}: {error})")
            return
    if job is None:
        return
    migration.phases += _migrate_phases(store, job_dir, job, record)
    for ingredient in ingredient_jobs(job, get_strategy(job.strategy).phases(job.hparams)[-1]):
        work_dir = Store.ingredient_dir(job_dir, job_id(ingredient, V1))
        migration.phases += _migrate_phases(store, work_dir, ingredient, None)
        _rename(work_dir, Store.ingredient_dir(job_dir, ingredient.id))
    target = job_dir.with_name(job.id)
    if target != job_dir:
        if target.exists():
            migration.unmapped.append(f"{job_dir.name} (its job has a directory under the new id already)")
            return
        os.rename(job_dir, target)
        migration.jobs += 1
        migration.ids[job_dir.name] = job.id
    if record is not None and record.get("job_id") != job.id:
        store.write_raw_record(target, _rekeyed_record(record, job))


def _rekeyed_record(record: dict, job: Job) -> dict:
    """The record under the job's current id, with its current meaning and the current keys of reused phases."""
    rekeyed = {**record, "job_id": job.id}
    if "meaning" in record:
        rekeyed["meaning"] = job_meaning(job, CURRENT)
    phases = get_strategy(job.strategy).phases(job.hparams)
    if isinstance(record.get("phases"), list):
        rekeyed["phases"] = [{**row, "reused": phase_key(job, phases, index)}
                             if isinstance(row, dict) and row.get("reused") and index < len(phases) else row
                             for index, row in enumerate(record["phases"])]
    return rekeyed


def _migrate_phases(store: Store, job_dir: Path, job: Job, record: dict | None) -> int:
    """Rename the job's phase results, and its checkpoints and logs, from their v1 keys to the current ones."""
    phases = get_strategy(job.strategy).phases(job.hparams)
    renamed = 0
    for index in range(len(phases)):
        new_key = phase_key(job, phases, index)
        old_keys = {phase_key(job, phases, index, V1)} | _keys_written(job_dir, record, index)
        for old_key in old_keys - {new_key}:
            renamed += _rename(store.phase_dir(old_key), store.phase_dir(new_key))
            for folder in (Store.checkpoint_dir, Store.log_dir):
                _rename(folder(job_dir, old_key), folder(job_dir, new_key))
    return renamed


def _keys_written(job_dir: Path, record: dict | None, index: int) -> set[str]:
    """The keys the job itself used for phase `index`: its log folders and the phases its record reused."""
    keys = {p.name for folder in (Store.log_dir, Store.checkpoint_dir) for p in folder(job_dir, "").glob(f"{index}-*")}
    phases = (record or {}).get("phases") or []
    if index < len(phases) and isinstance(phases[index], dict) and phases[index].get("reused"):
        keys.add(phases[index]["reused"])
    return keys


def _rename(old: Path, new: Path) -> int:
    if old.is_dir() and not new.exists():
        os.rename(old, new)
        return 1
    return 0


def _migrate_matrix(store: Store, new_ids: dict[str, str]) -> None:
    try:
        ids = store.read_matrix()
    except ValueError:
        return  # unreadable: the next run writes it anew
    if ids is not None:
        store.write_matrix([new_ids.get(i, i) for i in ids])
