"""`lpft-bench bench`: the suite measured against a hand-written loop and the paper's linear probe.

Every number comes from this run, on this machine's CPU, with the default backbone (`digits-resnet`) on the
digits benchmark's data, each side measured the same way and with one thread (on a shared machine, the
threads of one process wait for each other in every parallel region whenever another process holds a core,
which stalls whichever side happens to be running):

1. FT training throughput of a suite job (the gradient phase kind: Lightning driving `AdaptationModule`, with the
   job's callbacks, logger and per-epoch checkpoint) vs a plain PyTorch loop over the same in-memory tensors;
   same model, SGD with momentum 0.9, batch size, fp32. One instrument times both: a step ends when the
   optimiser's step returns. The first epoch is warm-up. 1a is the median step inside an epoch (the loop
   between steps included, epoch ends excluded); 1b is the sustained rate, epoch ends included.
2. An FT epoch fed by the datamodule's DataLoader (as a job is) vs the same batches replayed from memory,
   both driven by the same plain training step: 2a on digits (tensors already), 2b on real images (the digits
   written as JPEG files, read by the `folder` benchmark: ImageFolder, PIL decoding, timm transforms) loaded
   in the training process as a job does by default, 2c the same with two loader workers.
3. The paper's LP (every sweep point re-extracts its features from the images and fits its own logistic
   regression) vs the suite's (the logistic-probe kind on a cold feature cache: features once, then the
   warm-started regularisation path): 3a time for the sweep, 3b ID test accuracy of the chosen head.
4. and 5. Backbone forward passes (images through the backbone), counted from the suite's definitions and
   the benchmarks' set sizes: 4 one FT run evaluating every set vs one run per OOD set; 5 the `paper` suite
   (else `quickstart`) vs the same matrix sharing no phase or feature between jobs, with the paper's LP and
   one run per OOD set. The count model is checked against the passes counted in this run's FT job and LP.

Columns: `ratio` is how many times better ours is than the reference (ours/reference for rates and
accuracies, reference/ours for times and counts); `met` says whether the row's target is met ("" where the
row has none). Timings on a shared machine move with its load: repeats alternate the two sides and the
median of each side is reported.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import lightning as L
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, Dataset

from lpft_bench.models import Classifier, build_backbone, resolve_backbone
from lpft_bench.datamodules import BENCHMARKS, ID_TEST, ID_VAL, ShiftDataModule, benchmark_meaning, build_datamodule
from lpft_bench.datamodules.imagedata import ImageShiftDataModule
from lpft_bench.engine import Job, PreparedJob, RunContext, Trainers, phase_context, phase_key, quiet_lightning
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.storage import atomic_write, canonical_json
from lpft_bench.strategies import Phase, get_strategy
from lpft_bench.strategies.linear_probe import extract_features
from lpft_bench.suites import SUITES

DEFAULT_OUT = Path("results/bench/bench.csv")
BENCHMARK = "digits"
BACKBONE = "digits-resnet"
SEED = 0
THREADS = 1
LOADER_WORKERS = 2  # the job's default is none (`--num-workers 0`); two is what a small machine can spare
COLUMNS = ["id", "measurement", "ours", "reference", "unit", "ratio", "target", "met", "notes"]


@dataclass(frozen=True)
class Scale:
    """How much of each measurement a run does. `tiny` is a smoke run: its numbers say nothing."""

    benchmark_options: dict
    pretrained: bool  # tiny skips the backbone's pretraining (minutes on a CPU): timings do not depend on weights
    ft_epochs: int  # per timed fit; the first epoch is warm-up
    ft_repeats: int
    pipeline_epochs: int  # timed epochs per side, after one warm-up epoch each
    probe_C_stride: int  # the sweep uses every n-th of the paper's 50 values of C


SCALES = {
    "full": Scale({}, pretrained=True, ft_epochs=6, ft_repeats=7, pipeline_epochs=8, probe_C_stride=1),
    "tiny": Scale({"subset": 128}, pretrained=False, ft_epochs=3, ft_repeats=1, pipeline_epochs=1, probe_C_stride=10),
}


@dataclass
class Row:
    """One line of the table; `ratio` and `met` as the module docstring says."""

    id: str
    measurement: str
    ours: float
    reference: float
    unit: str
    ratio: float
    target: str = ""
    met: str = ""
    notes: str = ""


def _judged(met: bool) -> str:
    return "met" if met else "not met"


def _conditions() -> str:
    """How a measurement ran, and what else this machine was doing meanwhile (timings move with it)."""
    return (f"torch threads {torch.get_num_threads()}, machine load average {os.getloadavg()[0]:.1f} over the last "
            f"minute on {os.cpu_count()} cores")


# --- instruments ------------------------------------------------------------------------------------------


class StepClock:
    """When each optimiser step ends and how many images it trained on.

    Both sides of a comparison are timed by this one instrument: the batch size is read as the model's
    training forward starts, the time taken as any optimiser's step returns (Lightning runs the forward and
    backward inside `optimizer.step`, a plain loop before it: either way the step ends at the update).
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.sizes: list[int] = []
        self.ends: list[float] = []

    def __enter__(self) -> "StepClock":
        self._handles = [self.model.register_forward_pre_hook(self._batch_starts),
                         register_optimizer_step_post_hook(self._step_ends)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _batch_starts(self, module: torch.nn.Module, args: tuple) -> None:
        if module.training and torch.is_grad_enabled():  # evaluation forwards are no training steps
            self.sizes.append(len(args[0]))

    def _step_ends(self, optimizer, args, kwargs) -> None:
        self.ends.append(time.perf_counter())

    def rates(self, steps_per_epoch: int) -> tuple[float, float]:
        """(images/s of the median step inside an epoch, sustained images/s), the first epoch left out.

        A step inside an epoch lasts from the previous step's end to its own, so the loop's work between steps
        (fetching the batch, hooks, logging) is part of it; the median keeps a step that another process
        stalled from speaking for the rest. The sustained rate is images over time from the end of the first
        epoch to the last step: epoch ends and stalls included."""
        if len(self.sizes) != len(self.ends) or steps_per_epoch < 2 or len(self.ends) < 2 * steps_per_epoch:
            raise ValueError(f"need at least two epochs of at least two steps each; clocked {len(self.ends)} steps "
                             f"ending and {len(self.sizes)} starting, {steps_per_epoch} per epoch")
        inside = [i for i in range(steps_per_epoch, len(self.ends)) if i % steps_per_epoch]
        step_rate = statistics.median(self.sizes[i] / (self.ends[i] - self.ends[i - 1]) for i in inside)
        sustained = sum(self.sizes[steps_per_epoch:]) / (self.ends[-1] - self.ends[steps_per_epoch - 1])
        return step_rate, sustained


class ForwardCounter:
    """Images through `backbone`, whoever calls it (training, validation, diagnostics, feature extraction)."""

    def __init__(self, backbone: torch.nn.Module):
        self.backbone = backbone
        self.images = 0

    def __enter__(self) -> "ForwardCounter":
        self._handle = self.backbone.register_forward_pre_hook(self._count)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def _count(self, module: torch.nn.Module, args: tuple) -> None:
        self.images += len(args[0])


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch's intra-op threads and every BLAS and OpenMP pool at `count`, restored after."""
    previous = torch.get_num_threads()
    with threadpool_limits(limits=count):
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(DataLoader(dataset, batch_size=len(dataset))))


# --- the count model of backbone forward passes -----------------------------------------------------------


@dataclass(frozen=True)
class SetSizes:
    """Images in a benchmark's training set and in each evaluation set, and the set that selects."""

    train: int
    eval_sets: dict[str, int]
    splits: dict[str, str]
    selection: str

    @classmethod
    def of(cls, datamodule: ShiftDataModule) -> "SetSizes":
        return cls(len(datamodule.splits.train), {s.name: len(s.dataset) for s in datamodule.eval_sets},
                   {s.name: s.split for s in datamodule.eval_sets}, datamodule.selection_set)

    def runs_per_ood_set(self) -> dict[str, "SetSizes"]:
        """One run per OOD set, each evaluating the ID sets and that OOD set."""
        ood = [name for name, split in self.splits.items() if split == "ood"]
        if not ood:
            return {"": self}
        return {name: replace(self, eval_sets={n: size for n, size in self.eval_sets.items()
                                               if self.splits[n] == "id" or n == name}) for name in ood}


def countable(job: Job) -> bool:
    """Whether the phase kinds count every phase of the job (weight-space phases they do not)."""
    return all(phase_kind(p.trains).forward_passes(p, {"train": 1}, 1, set()) is not None
               for p in get_strategy(job.strategy).phases(job.hparams))


def paper_probe_forward_passes(phase: Phase, sizes: SetSizes) -> int:
    """The paper's LP re-extracts training and selection features at every C, and the other sets once."""
    others = sum(n for name, n in sizes.eval_sets.items() if name != sizes.selection)
    return len(phase.probe_Cs) * (sizes.train + sizes.eval_sets[sizes.selection]) + others


def matrix_forward_passes(jobs: Iterable[Job], sizes_of: dict[str, SetSizes], reuse: bool, paper_probe: bool,
                          one_pass: bool) -> int:
    """Backbone forward passes of a matrix of jobs run in order.

    reuse: what the suite shares between jobs: a phase whose prefix another job already ran is loaded, not
    rerun (`jobs.phase_key`: lp-ft takes the lp job's probe), and features are extracted once per backbone,
    benchmark, seed and set. paper_probe: a logistic probe re-extracts its features at every C.
    one_pass: every set is evaluated in the job's one run, else there is one run per OOD set (each a
    benchmark of its own, sharing nothing with the others)."""
    ran: set[str] = set()
    cached: dict[str, set[str]] = {}
    total = 0
    for job in jobs:
        strategy = get_strategy(job.strategy)
        phases = strategy.phases(job.hparams)
        probe_size = strategy.hparams(job.hparams).get("probe_size", 512)
        sizes = sizes_of[job.benchmark]
        features = canonical_json([job.backbone, job.checkpoint, job.benchmark,
                                   benchmark_meaning(job.benchmark, job.benchmark_options), job.seed])
        for run_name, run in ({"": sizes} if one_pass else sizes.runs_per_ood_set()).items():
            for index, phase in enumerate(phases):
                key = f"{run_name}/{phase_key(job, phases, index)}"
                if reuse and key in ran:
                    continue
                ran.add(key)
                kind = phase_kind(phase.trains)
                if paper_probe and kind.name == "logistic-probe":
                    total += paper_probe_forward_passes(phase, run)
                else:
                    extracted = cached.setdefault(f"{run_name}/{features}", set()) if reuse else set()
                    total += kind.forward_passes(phase, {"train": run.train, **run.eval_sets}, probe_size, extracted)
    return total


def _has_reference_counts(benchmark: str) -> bool:
    return issubclass(BENCHMARKS[benchmark], ImageShiftDataModule) and BENCHMARKS[benchmark].canonical


def expected_sizes(benchmark: str, options: dict) -> SetSizes | None:
    """Set sizes without the data: the reference counts of a canonical image benchmark (None where one is
    not given), the built sets of any other (digits is built in a second)."""
    datamodule = BENCHMARKS[benchmark](**options)
    if not _has_reference_counts(benchmark):
        datamodule.setup("fit")
        return SetSizes.of(datamodule)
    specs = [s for s in datamodule.sets if s.split != "ood" or s.name in datamodule.ood_sets]
    if any(s.expected is None for s in specs):
        return None
    train = next(s.expected for s in specs if s.split == "train")
    eval_sets = {s.name: s.expected for s in specs if s.split != "train"}
    splits = {s.name: s.split for s in specs if s.split != "train"}
    if datamodule.mode == "clean":  # as ImageShiftDataModule.build_splits holds id_val out of training
        held_out = max(1, round(train * datamodule.val_fraction))
        train -= held_out
        eval_sets, splits = {ID_VAL: held_out, **eval_sets}, {ID_VAL: "id", **splits}
    if datamodule.subset is not None:
        train = min(train, datamodule.subset)
        eval_sets = {name: min(n, datamodule.subset) for name, n in eval_sets.items()}
    return SetSizes(train, eval_sets, splits, ID_VAL if ID_VAL in eval_sets else ID_TEST)


# --- what is measured on -----------------------------------------------------------------------------------


@dataclass
class Setup:
    """The model and data every timed measurement starts from."""

    model: Classifier
    datamodule: ShiftDataModule
    data_config: dict
    workdir: Path


def _setup(scale: Scale, workdir: Path) -> Setup:
    L.seed_everything(SEED, workers=True, verbose=False)
    backbone, data_config = build_backbone(resolve_backbone(BACKBONE), pretrained=scale.pretrained)
    batch_size = get_strategy("ft").hparams()["batch_size"]
    datamodule = build_datamodule(BENCHMARK, data_config=data_config, batch_size=batch_size, seed=SEED,
                                  **scale.benchmark_options)
    datamodule.setup("fit")
    return Setup(Classifier(backbone, datamodule.num_classes), datamodule, data_config, workdir)


def _ft_phase(epochs: int) -> tuple[Phase, dict]:
    """The ft strategy's phase, validated only after its last step so that no evaluation falls among the timed steps."""
    strategy = get_strategy("ft")
    hparams = strategy.hparams({"epochs": epochs})
    (phase,) = strategy.phases(hparams)
    return replace(phase, validate_every=epochs), hparams


def _suite_fit(setup: Setup, phase: Phase, hparams: dict, job_dir: Path) -> tuple[StepClock, int]:
    model = copy.deepcopy(setup.model)
    pretrained = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    prepared = PreparedJob(model, setup.datamodule, [phase], hparams, pretrained)
    ctx = RunContext(out=setup.workdir, accelerator="cpu")
    job = Job(BENCHMARK, "ft", SEED, backbone=BACKBONE)
    context = phase_context(job, prepared, ctx, phase.name, job_dir, Trainers(ctx, job_dir))
    with StepClock(model) as clock, ForwardCounter(model.backbone) as counter:
        phase_kind(phase.trains).run(phase, context)
    return clock, counter.images


def _plain_fit(setup: Setup, phase: Phase, batch_size: int) -> StepClock:
    """A hand-written loop: the same model, optimiser and schedule, batches sliced from in-memory tensors."""
    model = copy.deepcopy(setup.model)
    model.head.reset_parameters()  # as the job's phase starts from a fresh head
    images, labels = _tensors(setup.datamodule.splits.train)
    optimiser = torch.optim.SGD(model.parameters(), lr=phase.lr, momentum=phase.momentum,
                                weight_decay=phase.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=phase.epochs)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    with StepClock(model) as clock:
        for _ in range(phase.epochs):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(model(images[batch]), labels[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            schedule.step()
    return clock


# --- 1. FT training throughput -------------------------------------------------------------------------------


def measure_ft_throughput(setup: Setup, scale: Scale) -> tuple[list[Row], str]:
    phase, hparams = _ft_phase(scale.ft_epochs)
    batch_size = hparams["batch_size"]
    steps_per_epoch = len(setup.datamodule.train_dataloader())
    suite_rates, plain_rates, counted = [], [], 0
    for repeat in range(scale.ft_repeats):
        clock, counted = _suite_fit(setup, phase, hparams, setup.workdir / f"ft-{repeat}")
        suite_rates.append(clock.rates(steps_per_epoch))
        plain_rates.append(_plain_fit(setup, phase, batch_size).rates(steps_per_epoch))
    conditions = _conditions()
    sizes = SetSizes.of(setup.datamodule)
    predicted = phase_kind(phase.trains).forward_passes(phase, {"train": sizes.train, **sizes.eval_sets},
                                                        hparams["probe_size"], set())
    check = f"FT job: counted {counted:,} backbone passes, count model {predicted:,}"

    (suite_step, suite_sustained), (plain_step, plain_sustained) = (
        [statistics.median(column) for column in zip(*rates)] for rates in (suite_rates, plain_rates))
    spread = [suite[0] / plain[0] for suite, plain in zip(suite_rates, plain_rates)]
    how = (f"median of {scale.ft_repeats} alternating fits per side of {scale.ft_epochs} epochs x {steps_per_epoch} "
           f"steps (batch {batch_size}, SGD momentum 0.9, fp32, CPU), the first "
           f"epoch warm-up; {conditions}")
    return [
        Row("1a", "FT step throughput, suite job vs plain loop", suite_step, plain_step, "images/s",
            suite_step / plain_step, ">= 0.95", _judged(suite_step / plain_step >= 0.95),
            f"{how}; the median step inside an epoch, the loop between steps included (suite: Lightning fetching from "
            f"the datamodule's DataLoader, hooks, metric logging; plain: slicing tensors); ratio per repeat "
            f"{min(spread):.2f} to {max(spread):.2f}"),
        Row("1b", "FT sustained throughput incl. epoch ends", suite_sustained, plain_sustained, "images/s",
            suite_sustained / plain_sustained, "", "",
            f"context for 1a, from the same fits: timed from the end of the warm-up epoch to the last step, so every "
            f"epoch end counts (the suite's: its per-epoch checkpoint and logs; an epoch here is only "
            f"{steps_per_epoch} steps; a stall from another process counts too)"),
    ], check


# --- 2. the data pipeline --------------------------------------------------------------------------------------


def _epoch_rates(model: torch.nn.Module, loader: DataLoader, epochs: int, lr: float) -> tuple[float, float]:
    """(images/s of epochs fed by `loader`, images/s of the same batches replayed from memory), alternating."""
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()

    def epoch(batches) -> tuple[float, list]:
        started, seen = time.perf_counter(), []
        for images, labels in batches:
            loss = F.cross_entropy(model(images), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            seen.append((images, labels))
        return time.perf_counter() - started, seen

    _, replay = epoch(loader)  # warm-up, one epoch of each
    epoch(replay)
    loader_seconds, memory_seconds = [], []
    for _ in range(epochs):
        seconds, replay = epoch(loader)
        loader_seconds.append(seconds)
        memory_seconds.append(epoch(replay)[0])
    images = sum(len(labels) for _, labels in replay)
    return images / statistics.median(loader_seconds), images / statistics.median(memory_seconds)


def write_digits_as_jpeg(datamodule: ShiftDataModule, root: Path) -> dict[str, str]:
    """The digits benchmark's training set, ID test set and strongest OOD set as JPEG files in ImageFolder
    layout (`<set>/<digit>/<n>.jpg`); returns the `folder` benchmark's options that read them."""
    mean, std = float(datamodule.mean), float(datamodule.std)
    eval_sets = {s.name: s.dataset for s in datamodule.eval_sets}
    folders = {"train": datamodule.splits.train, "id_eval": eval_sets[ID_TEST],
               "rotated-strong": eval_sets["rotated-strong"]}
    for folder, dataset in folders.items():
        images, labels = _tensors(dataset)
        pixels = ((images[:, 0] * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        for index, (image, label) in enumerate(zip(pixels, labels.tolist())):
            path = root / folder / str(label) / f"{index:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, quality=90)
    return {"root": str(root), "train": "train", "id_eval": "id_eval", "ood": {"rotated-strong": "rotated-strong"}}


def measure_data_pipeline(setup: Setup, scale: Scale) -> list[Row]:
    options = write_digits_as_jpeg(setup.datamodule, setup.workdir / "digits-jpeg")
    jpeg_folders = {}
    for workers in (setup.datamodule.num_workers, LOADER_WORKERS):
        jpeg_folders[workers] = build_datamodule("folder", data_config=setup.data_config, seed=SEED,
                                                 batch_size=setup.datamodule.batch_size, num_workers=workers, **options)
        jpeg_folders[workers].setup("fit")
    training, _ = jpeg_folders[LOADER_WORKERS].image_transforms()
    jpeg = (f"real images: the digits written as 32x32 JPEG files, read by the folder benchmark (ImageFolder, PIL "
            f"decode, {' + '.join(_transform_steps(training))})")
    cases = [
        ("2a", "digits (tensors)", setup.datamodule,
         "digits: a TensorDataset in the datamodule's DataLoader (sampler, per-item indexing, collate)"),
        ("2b", "real images (JPEG)", jpeg_folders[setup.datamodule.num_workers], jpeg),
        ("2c", f"real images (JPEG), {LOADER_WORKERS} loader workers", jpeg_folders[LOADER_WORKERS],
         f"as 2b with `lpft-bench run --num-workers {LOADER_WORKERS}`"),
    ]
    lr = get_strategy("ft").hparams()["lr"]
    rows = []
    for row_id, name, datamodule, what in cases:
        loader = datamodule.train_dataloader()
        ours, reference = _epoch_rates(copy.deepcopy(setup.model), loader, scale.pipeline_epochs, lr)
        rows.append(Row(row_id, f"FT epoch, datamodule DataLoader vs in-memory: {name}", ours, reference, "images/s",
                        ours / reference, ">= 0.9", _judged(ours / reference >= 0.9),
                        f"{what}; num_workers={datamodule.num_workers}, {len(loader)} batches an epoch; median of "
                        f"{scale.pipeline_epochs} alternating epochs per side after a warm-up epoch each, both driven "
                        f"by the same plain SGD step; in memory: the batches the loader produced, replayed; "
                        f"{_conditions()}"))
    return rows


def _transform_steps(transform) -> list[str]:
    if hasattr(transform, "transforms"):  # Compose, nested where the luminance conversion wraps timm's transform
        return [name for step in transform.transforms for name in _transform_steps(step)]
    return [type(transform).__name__]


# --- 3. the linear probe ----------------------------------------------------------------------------------------


def paper_probe(backbone: torch.nn.Module, datamodule: ShiftDataModule, Cs: tuple[float, ...]) -> dict:
    """Kumar et al.'s LP as a sweep of independent points: each C extracts the training and selection
    features from the images and fits its own logistic regression on standardised features; the chosen head
    (best selection accuracy, ties to the smaller C) then meets each other evaluation set once."""
    selection = next(s for s in datamodule.eval_sets if s.name == datamodule.selection_set)
    extraction_seconds = fit_seconds = 0.0
    best = None
    for C in sorted(Cs):
        started = time.perf_counter()
        train_x, train_y = extract_features(backbone, datamodule.eval_loader(datamodule.splits.train_eval))
        val_x, val_y = extract_features(backbone, datamodule.eval_loader(selection.dataset))
        extraction_seconds += time.perf_counter() - started
        started = time.perf_counter()
        scaler = StandardScaler().fit(train_x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(train_x), train_y)
        accuracy = float((classifier.predict(scaler.transform(val_x)) == val_y).mean())
        fit_seconds += time.perf_counter() - started
        if best is None or accuracy > best[0]:
            best = (accuracy, C, scaler, classifier)
    _, C, scaler, classifier = best
    accuracies = {}
    for eval_set in datamodule.eval_sets:
        if eval_set.name != selection.name:
            x, y = extract_features(backbone, datamodule.eval_loader(eval_set.dataset))
            accuracies[eval_set.name] = float((classifier.predict(scaler.transform(x)) == y).mean())
    return {"C": C, "accuracies": accuracies, "extraction_seconds": extraction_seconds, "fit_seconds": fit_seconds}


def measure_linear_probe(setup: Setup, scale: Scale) -> tuple[list[Row], str]:
    (phase,) = get_strategy("lp").phases()
    phase = replace(phase, probe_Cs=phase.probe_Cs[:: scale.probe_C_stride])
    # The job names the feature files, in a store of their own: a cold cache.
    job = Job(BENCHMARK, "lp", SEED, backbone=BACKBONE, benchmark_options=scale.benchmark_options)
    model = copy.deepcopy(setup.model)
    ctx = RunContext(out=setup.workdir / "lp-store", accelerator="cpu")
    prepared = PreparedJob(model, setup.datamodule, [phase], get_strategy("lp").hparams(), {})
    context = phase_context(job, prepared, ctx, phase.name, ctx.job_dir(job), Trainers(ctx, ctx.job_dir(job)))
    with ForwardCounter(model.backbone) as counter:
        started = time.perf_counter()
        record = phase_kind(phase.trains).run(phase, context)
        suite_seconds = time.perf_counter() - started
    suite_load = os.getloadavg()[0]
    sizes = SetSizes.of(setup.datamodule)
    predicted = phase_kind(phase.trains).forward_passes(phase, {"train": sizes.train, **sizes.eval_sets}, 0, set())
    check = f"cold LP: counted {counter.images:,} backbone passes, count model {predicted:,}"

    started = time.perf_counter()
    paper = paper_probe(copy.deepcopy(setup.model).backbone, setup.datamodule, phase.probe_Cs)
    paper_seconds = time.perf_counter() - started

    suite_accuracy = 100 * record["epochs"][0][f"acc/{ID_TEST}"]
    paper_accuracy = 100 * paper["accuracies"][ID_TEST]
    difference = suite_accuracy - paper_accuracy
    points = len(phase.probe_Cs)
    return [
        Row("3a", "LP sweep time, suite (features once) vs paper (features per point)", suite_seconds, paper_seconds,
            "s", paper_seconds / suite_seconds, ">= 5", _judged(paper_seconds / suite_seconds >= 5),
            f"a sweep of {points} C values on {BENCHMARK} ({len(setup.datamodule.splits.train)} training images), all "
            f"timed, none extrapolated; paper: {paper['extraction_seconds']:.2f} s re-extracting features at every "
            f"point, {paper['fit_seconds']:.2f} s in {points} independent fits; suite: the logistic-probe kind on a cold "
            f"feature cache (every set extracted once, then the warm-started path); torch threads "
            f"{torch.get_num_threads()}, machine load average {suite_load:.1f} after the suite's LP and "
            f"{os.getloadavg()[0]:.1f} after the paper's, over the last minute on {os.cpu_count()} cores"),
        Row("3b", "LP chosen head ID test accuracy, suite vs paper", suite_accuracy, paper_accuracy, "% ID test",
            suite_accuracy / paper_accuracy, "|ours - reference| <= 0.2 points", _judged(abs(difference) <= 0.2),
            f"difference {difference:+.2f} points; chosen C: suite {record['probe']['C']:.3g}, "
            f"paper {paper['C']:.3g}" + ("" if scale.pretrained else "; backbone not pretrained at this size")),
    ], check


# --- 4. and 5. forward passes ---------------------------------------------------------------------------------


def measure_one_pass_evaluation(check: str) -> Row:
    job = SUITES["quickstart"].expand(benchmarks=[BENCHMARK], strategies=["ft"], seeds=[SEED])[0]
    sizes = {BENCHMARK: expected_sizes(BENCHMARK, job.benchmark_options)}
    ours = matrix_forward_passes([job], sizes, reuse=True, paper_probe=False, one_pass=True)
    reference = matrix_forward_passes([job], sizes, reuse=True, paper_probe=False, one_pass=False)
    (phase,) = get_strategy(job.strategy).phases(job.hparams)
    evaluated = ", ".join(f"{name} {n}" for name, n in sizes[BENCHMARK].eval_sets.items())
    return Row("4", "forward passes, one FT run evaluating every set vs one run per OOD set", ours, reference,
               "backbone passes", reference / ours, "", "",
               f"saves {reference - ours:,} passes ({1 - ours / reference:.0%}); the quickstart suite's {BENCHMARK} ft "
               f"job: {phase.epochs} epochs x {sizes[BENCHMARK].train} training images, each epoch evaluating "
               f"{evaluated}, plus the FT diagnostics; a training image counts once, as an evaluated one; {check}")


def measure_matrix(check: str) -> Row:
    suite = SUITES["paper"] if "paper" in SUITES else SUITES["quickstart"]
    which = f"the {suite.name!r} suite" + ("" if suite.name == "paper" else " (no 'paper' suite is defined)")
    sizes = {name: expected_sizes(name, plan.options) for name, plan in suite.benchmarks.items()}
    unknown = [name for name, known in sizes.items() if known is None]
    counted = [name for name in suite.benchmarks if name not in unknown]
    expanded = suite.expand(benchmarks=counted)
    jobs = [job for job in expanded if countable(job)]
    uncounted = sorted({job.strategy for job in expanded} - {job.strategy for job in jobs})

    def passes(reuse: bool = True, paper_probe: bool = False, one_pass: bool = True) -> int:
        return matrix_forward_passes(jobs, sizes, reuse, paper_probe, one_pass)

    ours, reference = passes(), passes(reuse=False, paper_probe=True, one_pass=False)
    left_out = f" ({', '.join(unknown)} left out: their data sources give no image count)" if unknown else ""
    if uncounted:
        left_out += f" (strategies {', '.join(uncounted)} left out: the count model has no weight-space phases)"
    built = [name for name in counted if not _has_reference_counts(name)]
    sources = "the data sources' expected counts" + (f" ({', '.join(built)}: as built)" if built else "")
    return Row("5", "forward passes of a suite's matrix, suite vs naive", ours, reference, "backbone passes",
               reference / ours, "", "",
               f"{which}, {len(jobs)} jobs on {', '.join(counted)}{left_out}, set sizes from {sources}; naive: no "
               f"phase or feature shared between jobs, the paper's LP (features re-extracted at each C), one run per "
               f"OOD set; saves {reference - ours:,} passes; alone, no sharing would cost "
               f"{passes(reuse=False) - ours:+,}, the paper's LP {passes(paper_probe=True) - ours:+,}, one run per "
               f"OOD set {passes(one_pass=False) - ours:+,}; {check}")


# --- the run ------------------------------------------------------------------------------------------------------


def run_bench(out_csv: Path = DEFAULT_OUT, size: str = "full") -> pd.DataFrame:
    """Measure everything (module docstring), write the table to `out_csv` and return it."""
    if size not in SCALES:
        raise ValueError(f"size must be one of {', '.join(SCALES)}, not {size!r}")
    scale = SCALES[size]
    quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="lpft-bench-") as workdir, _threads(THREADS):
        _progress("setup: data and the default backbone" + (" (pretrained once, then cached)" * scale.pretrained))
        setup = _setup(scale, Path(workdir))
        _progress("1/5 FT throughput: suite job vs plain loop")
        throughput, ft_check = measure_ft_throughput(setup, scale)
        _progress("2/5 data pipeline vs in-memory")
        pipeline = measure_data_pipeline(setup, scale)
        _progress("3/5 linear probe: suite vs paper")
        probe, probe_check = measure_linear_probe(setup, scale)
    _progress("4/5 and 5/5 forward passes")
    check = f"count model checked against this run: {ft_check}; {probe_check}"
    rows = [*throughput, *pipeline, *probe, measure_one_pass_evaluation(check), measure_matrix(check)]
    frame = pd.DataFrame([vars(row) for row in rows], columns=COLUMNS)
    atomic_write(out_csv, lambda tmp: frame.to_csv(tmp, index=False))
    return frame


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_bench(frame: pd.DataFrame) -> str:
    """The table, then each row's notes."""
    frame = frame.fillna("")  # a table read back from CSV has NaN where a row has no target
    header = ("", "measurement", "ours", "reference", "unit", "ratio", "target", "met")
    table = [header] + [(r.id, r.measurement, _number(r.ours), _number(r.reference), r.unit, f"{r.ratio:.3g}",
                         r.target, r.met) for r in frame.itertuples()]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lines.append("\nratio: how many times better ours is (ours/reference for rates and accuracy, reference/ours "
                 "for times and counts)")
    lines += [f"{r.id}: {r.notes}" for r in frame.itertuples()]
    return "\n".join(lines)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV to write (default: {DEFAULT_OUT})")
    parser.add_argument("--tiny", action="store_true",
                        help="a smoke run of a few seconds: small data, short sweeps, numbers meaningless")


def main_bench(args: argparse.Namespace) -> int:
    frame = run_bench(args.out, "tiny" if args.tiny else "full")
    print(format_bench(frame))
    print(f"\nwritten to {args.out}")
    return 0
