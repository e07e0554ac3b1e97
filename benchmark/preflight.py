"""What `run` checks after the matrix is built and before any job starts: that every image of the experiment's
folders decodes (all bad files named at once), and that the store's file system has room for what the run keeps."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from torchvision.datasets.folder import IMG_EXTENSIONS

from lpft_bench.datamodules import benchmark_class
from lpft_bench.datamodules.imagecheck import REMEDY, format_verdicts
from lpft_bench.datamodules.imagedata import ImageShiftDataModule
from lpft_bench.datamodules.folder import training_classes
from lpft_bench.datamodules.walk import image_files, walk_folder
from lpft_bench.engine import Job, Store
from lpft_bench.engine.retention import (DEFAULT_POLICY, FINAL, SELECTED_EPOCH, WEIGHTS, computed_phases,
                                         kept_roles, predicted_files, weights_to_save, weights_written,
                                         with_ingredients)
from lpft_bench.errors import UsageError
from lpft_bench.paths import display_path
from lpft_bench.meaning import canonical_json
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.kinds import phase_kind

# A job's record, logs and progress notes (measured: a one-epoch folder LP job's directory holds 16 kB; epochs
# of metrics and a worker log make it grow, hence the margin).
JOB_OVERHEAD_BYTES = 1 << 20
# A resume checkpoint holds the weights and the optimiser's state (AdamW: two moments): three copies at most.
CHECKPOINT_COPIES = 3
HEAD_CLASSES = 1000  # no benchmark here has more classes (ImageNet's)
MLP_HIDDEN = 256  # models.heads.Classifier's MLP head


class NotEnoughSpace(UsageError):
    """The store's file system cannot hold what the run would keep."""


def checked_benchmarks(plans: Iterable[tuple[str, str, dict]]) -> list[tuple[str, str, dict]]:
    """(label, benchmark, options) of the benchmarks whose images can be checked, each setting once."""
    chosen: dict[str, tuple[str, str, dict]] = {}
    for label, benchmark, options in plans:
        if hasattr(benchmark_class(benchmark), "check_images"):
            chosen.setdefault(f"{benchmark}\0{canonical_json(options)}", (label, benchmark, options))
    return list(chosen.values())


def unreadable_images(plans: Iterable[tuple[str, str, dict]], progress: bool = True) -> tuple[str | None, bool]:
    """The report of every file that cannot be read as an image, and whether it must stop the run (a benchmark
    with `skip_unreadable: true` leaves its bad files out instead)."""
    reports, blocking = [], False
    for label, benchmark, options in checked_benchmarks(plans):
        report = format_verdicts(f"{label} ({benchmark})", benchmark_class(benchmark).check_images(options, progress))
        if report is None:
            continue
        skipped = bool(options.get("skip_unreadable"))
        blocking |= not skipped
        reports.append(report + ("\n  (skip_unreadable: true, so these are left out)" if skipped else ""))
    if not reports:
        return None, False
    return "\n".join(reports) + ("\n" + REMEDY if blocking else ""), blocking


def check_experiment_images(config: str, labels: list[str] | None) -> int:
    """`lpft-bench data check --config FILE [--benchmarks LABEL ...]`: exit 2 when an image cannot be read."""
    from lpft_bench.experiments import load_experiment

    plans = load_experiment(config).benchmarks
    unknown = sorted(set(labels or ()) - set(plans))
    if unknown:
        raise UsageError(f"--benchmarks {' '.join(unknown)}: not in {display_path(config)}; its benchmarks: {', '.join(plans)}")
    chosen = [(label, plan.benchmark or label, plan.options) for label, plan in plans.items() if not labels or label in labels]
    checked = [label for label, _, _ in checked_benchmarks(chosen)]
    if not checked:
        raise UsageError(f"{display_path(config)} has no folder benchmark{' among ' + ' '.join(labels) if labels else ''}: "
                         "nothing to decode (`lpft-bench data check` without --config checks the canonical datasets)")
    report, blocking = unreadable_images(chosen)
    print(report or f"every image of {', '.join(checked)} decodes")
    return 2 if blocking else 0


def job_plans(jobs: Iterable[Job]) -> list[tuple[str, str, dict]]:
    return [(job.label("benchmark"), job.benchmark, job.benchmark_options) for job in jobs]


def _network(job: Job, cache: dict) -> tuple[int, int]:
    """(bytes of the job's network state, float32; its feature width), built on the meta device: no memory."""
    from lpft_bench.models.backbones import build_backbone, feature_dim

    key = repr(job.backbone_spec())
    if key not in cache:
        with torch.device("meta"):
            model, _ = build_backbone(job.backbone_spec(), pretrained=False)
        cache[key] = sum(t.numel() * t.element_size() for t in model.state_dict().values()), feature_dim(model)
    return cache[key]


def _set_images(job: Job, cache: dict) -> dict[str, int]:
    """Images per set where known without reading one: a folder's image files, a canonical dataset's reference
    count (none for the in-memory digits, whose features are kilobytes)."""
    key = (job.benchmark, canonical_json(job.benchmark_options))
    if key not in cache:
        benchmark = benchmark_class(job.benchmark)
        if hasattr(benchmark, "set_folders"):
            counts = {name: len(image_files(walk_folder(directory), IMG_EXTENSIONS))
                      for name, directory in benchmark.set_folders(job.benchmark_options).items()}
        elif issubclass(benchmark, ImageShiftDataModule):
            counts = {spec.name: spec.expected or 0 for spec in benchmark().sets}
        else:
            counts = {}
        subset = job.benchmark_options.get("subset")
        cache[key] = {name: min(n, subset) if subset else n for name, n in counts.items()}
    return cache[key]


@dataclass
class DiskPlan:
    """What a run writes and keeps, in bytes. `written`: what the pending jobs put in the store before the
    keep-weights policy prunes (phase weights, features, records); `peak`: the largest resume checkpoint at a
    time; `transient`: every byte written on the way (each epoch's resume checkpoint and selected weights
    included); `retained_weights`: the phase weights the store keeps under the policy once the matrix is done."""

    written: int = 0
    peak: int = 0
    transient: int = 0
    retained_weights: int = 0
    features: int = 0
    records: int = 0


def _classes(job: Job) -> int:
    """A folder benchmark's training classes (its class folders); HEAD_CLASSES, an upper bound, for the others."""
    benchmark = benchmark_class(job.benchmark)
    if hasattr(benchmark, "set_folders"):
        train = benchmark.set_folders(job.benchmark_options).get("train")
        if train is not None and train.is_dir():
            return len(training_classes(train))
    return HEAD_CLASSES


def _head_bytes(job: Job, width: int) -> int:
    """A head's float32 weights (no image is read)."""
    hparams, classes = get_strategy(job.strategy).hparams(job.hparams), _classes(job)
    if hparams.get("head") == "mlp":
        return 4 * ((width + 1) * MLP_HIDDEN + (MLP_HIDDEN + 1) * classes)
    return 4 * (width + 1) * classes


def disk_plan(jobs: list[Job], out: Path, policy: str = DEFAULT_POLICY) -> DiskPlan:
    """Each phase a pending job computes (`computed_phases`: also a stored one whose weights the store does not
    hold and a later phase reads) writes its weights as the policy says (its head alone over the source
    backbone), and a phase of several epochs may keep its selected epoch's too; shared prefixes (lp-ft's probe)
    count once. A logistic probe caches every set's features (float32 rows of the backbone's width), once per
    backbone, data, set and seed. Records and logs: JOB_OVERHEAD_BYTES. Sizes come from the networks' parameter counts, built
    on the meta device: nothing is downloaded."""
    networks: dict = {}
    images: dict = {}
    plan, seen, sizes = DiskPlan(), set(), {}
    store = Store(out)
    written = weights_written(jobs, policy)
    computed = {key for job in jobs if not store.is_done(job.id)
                for each in with_ingredients([job]) for key in computed_phases(each, store)}
    for job in with_ingredients(jobs):
        weights, width = _network(job, networks)
        if not store.is_done(job.id):
            plan.records += JOB_OVERHEAD_BYTES
        phases = get_strategy(job.strategy).phases(job.hparams)
        for key, index, head_only, epochs in predicted_files(job):
            phase = phases[index]
            if key in sizes:
                continue
            kept = _head_bytes(job, width) if head_only else weights
            sizes[key] = (kept, kept if epochs > 1 else 0)
            if key not in computed:
                continue
            # the engine's own rule, on sizes in place of tensors
            end, selected = weights_to_save(written, key, index + 1 == len(phases), kept, sizes[key][1] or None)
            plan.written += (end or 0) + (selected or 0)
            plan.transient += end or 0
            if phase_kind(phase.trains).by_gradient:  # each epoch overwrites the checkpoint, maybe the selected weights
                plan.transient += epochs * (CHECKPOINT_COPIES * weights + kept)
                plan.peak = max(plan.peak, CHECKPOINT_COPIES * weights)
            if not phase_kind(phase.trains).caches_features:
                continue
            for set_name, count in _set_images(job, images).items():
                features = (repr(job.backbone_spec()), canonical_json(job.benchmark_meaning()), set_name,
                            job.seed if set_name == "train" else None)
                if features not in seen:
                    seen.add(features)
                    plan.features += count * (4 * width + 8)  # float32 features and an int64 label per image
    plan.written += plan.features + plan.records
    plan.transient += plan.features + plan.records
    keep = kept_roles(jobs, policy, set(), lambda key: True) if policy != "all" else {}
    for key, (kept, selected) in sizes.items():
        roles = keep.get(key, set()) if policy != "all" else {WEIGHTS, SELECTED_EPOCH}
        if FINAL in roles:
            roles = roles | {SELECTED_EPOCH if selected else WEIGHTS}
        plan.retained_weights += kept * (WEIGHTS in roles) + selected * (SELECTED_EPOCH in roles)
    return plan


def estimate_bytes(jobs: list[Job], out: Path, policy: str = DEFAULT_POLICY) -> tuple[int, int]:
    """(bytes the pending jobs write into the store, bytes of the largest resume checkpoint written meanwhile)."""
    plan = disk_plan(jobs, out, policy)
    return plan.written, plan.peak


def plan_lines(jobs: list[Job], out: Path, policy: str) -> list[str]:
    """What `run --dry-run` says about disk: retained weights under the policy, and the writes on the way."""
    plan = disk_plan(jobs, out, policy)
    return [f"disk, --keep-weights {policy}: {_gb(plan.retained_weights)} of phase weights kept once the matrix is "
            f"done (+ {_gb(plan.features)} of cached features, {_gb(plan.records)} of records and logs); "
            f"{_gb(plan.written)} written into the store before pruning; resume checkpoints of {_gb(plan.peak)} at "
            f"most; {_gb(plan.transient)} of transient writes in all if one were written every epoch "
            "(--checkpoint-every-minutes 0), a fraction of that at the default of one per ten minutes of training"]


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def check_free_space(jobs: list[Job], out: Path, policy: str = DEFAULT_POLICY) -> None:
    """NotEnoughSpace, in one line, when the store's file system has less free space than the run needs."""
    existing = next(p for p in (Path(out), *Path(out).absolute().parents) if p.exists())
    kept, peak = estimate_bytes(jobs, Path(out), policy)
    free = shutil.disk_usage(existing).free
    if kept + peak > free:
        raise NotEnoughSpace(
            f"this run needs about {_gb(kept + peak)} in {display_path(out)} ({_gb(kept)} of phase results and "
            f"records, a {_gb(peak)} resume checkpoint at a time) and {_gb(free)} is free there; free space, run "
            "fewer jobs (--benchmarks, --strategies, --seeds), remove records outside this matrix (`lpft-bench "
            "prune`), store elsewhere (--out), or pass --force to run anyway")
