"""The bench's timed measurements (bench.py's docstring, items 1 to 3): FT throughput of a suite job vs a plain
loop, the datamodule's DataLoader vs batches replayed from memory, the paper's LP vs the suite's."""
from __future__ import annotations

import copy
import os
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from lpft_bench.analysis.bench_counts import SetSizes
from lpft_bench.analysis.bench_instruments import ForwardCounter, StepClock, conditions, tensors
from lpft_bench.analysis.bench_setup import BACKBONE, BENCHMARK, LOADER_WORKERS, SEED, Row, Scale, Setup, judged
from lpft_bench.datamodules import ID_TEST, ShiftDataModule, build_datamodule
from lpft_bench.engine import Job, PreparedJob, RunContext, Trainers, phase_context
from lpft_bench.strategies import Phase, get_strategy
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.strategies.linear_probe import extract_features


# --- 1. FT training throughput -------------------------------------------------------------------------------


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
    context = phase_context(job, prepared, ctx, phase.name, job_dir, Trainers(ctx, job_dir, job))
    with StepClock(model) as clock, ForwardCounter(model.backbone) as counter:
        phase_kind(phase.trains).run(phase, context)
    return clock, counter.images


def _plain_fit(setup: Setup, phase: Phase, batch_size: int) -> StepClock:
    """A hand-written loop: the same model, optimiser and schedule, batches sliced from in-memory tensors."""
    model = copy.deepcopy(setup.model)
    model.head.reset_parameters()  # as the job's phase starts from a fresh head
    images, labels = tensors(setup.datamodule.splits.train)
    optimiser = torch.optim.SGD(model.parameters(), lr=phase.lr, momentum=phase.momentum,
                                weight_decay=phase.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=phase.epochs)
    generator = torch.Generator().manual_seed(SEED)
    model.to(memory_format=torch.channels_last)  # as the suite's gradient phase trains
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


def measure_ft_throughput(setup: Setup, scale: Scale) -> tuple[list[Row], str]:
    phase, hparams = _ft_phase(scale.ft_epochs)
    batch_size = hparams["batch_size"]
    steps_per_epoch = len(setup.datamodule.train_dataloader())
    suite_rates, plain_rates, counted = [], [], 0
    for repeat in range(scale.ft_repeats):
        clock, counted = _suite_fit(setup, phase, hparams, setup.workdir / f"ft-{repeat}")
        suite_rates.append(clock.rates(steps_per_epoch))
        plain_rates.append(_plain_fit(setup, phase, batch_size).rates(steps_per_epoch))
    how_loaded = conditions()
    sizes = SetSizes.of(setup.datamodule)
    predicted = phase_kind(phase.trains).forward_passes(phase, {"train": sizes.train, **sizes.eval_sets},
                                                        hparams["probe_size"], set())
    check = f"FT job: counted {counted:,} backbone passes, count model {predicted:,}"

    (suite_step, suite_sustained), (plain_step, plain_sustained) = (
        [statistics.median(column) for column in zip(*rates)] for rates in (suite_rates, plain_rates))
    spread = [suite[0] / plain[0] for suite, plain in zip(suite_rates, plain_rates)]
    paired = statistics.median(spread)  # each repeat's two fits ran back to back: the machine's drift cancels
    how = (f"median of {scale.ft_repeats} alternating fits per side of {scale.ft_epochs} epochs x {steps_per_epoch} "
           f"steps (batch {batch_size}, SGD momentum 0.9, fp32, CPU), the first "
           f"epoch warm-up; {how_loaded}")
    return [
        Row("1a", "FT step throughput, suite job vs plain loop", suite_step, plain_step, "images/s",
            paired, ">= 0.95", judged(paired >= 0.95),
            f"{how}; the median step inside an epoch, the loop between steps included (suite: Lightning fetching from "
            f"the datamodule's DataLoader, hooks, metric logging; plain: slicing tensors); ratio: the median of the "
            f"per-repeat ratios ({min(spread):.3f} to {max(spread):.3f}; the ratio of the two medians is "
            f"{suite_step / plain_step:.3f})"),
        Row("1b", "FT sustained throughput incl. epoch ends", suite_sustained, plain_sustained, "images/s",
            suite_sustained / plain_sustained, "", "",
            f"context for 1a, from the same fits: timed from the end of the warm-up epoch to the last step, so every "
            f"epoch end counts (the suite's: its per-epoch checkpoint and logs; an epoch here is only "
            f"{steps_per_epoch} steps; a stall from another process counts too)"),
        Row("1c", "Lightning and suite overhead per FT step", 1000 * batch_size * (1 / suite_step - 1 / plain_step),
            1000 * batch_size / plain_step, "ms/step", suite_step / plain_step, "", "",
            "from 1a's medians: ours is the suite's step minus the plain loop's, reference the plain step itself; "
            "ratio: the plain step's share of the suite's (the overhead is 1 - ratio of a suite step): the "
            "Trainer's loop and hooks, the job's callbacks every step (divergence check, trainability, signal "
            "check), the module's per-step metric updates (logged once an epoch), and the DataLoader's sampler "
            "and its batch gathered from the set's tensors"),
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
        images, labels = tensors(dataset)
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
            f"decode once into the cache, {' + '.join(_transform_steps(training))}; the conversion to a tensor "
            f"once per batch)")
    cases = [
        ("2a", "digits (tensors)", setup.datamodule,
         "digits: a TensorDataset in the datamodule's DataLoader (sampler, a batch gathered by index)"),
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
                        ours / reference, ">= 0.9", judged(ours / reference >= 0.9),
                        f"{what}; num_workers={datamodule.num_workers}, {len(loader)} batches an epoch; median of "
                        f"{scale.pipeline_epochs} alternating epochs per side after a warm-up epoch each, both driven "
                        f"by the same plain SGD step; in memory: the batches the loader produced, replayed; "
                        f"{conditions()}"))
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
    context = phase_context(job, prepared, ctx, phase.name, ctx.job_dir(job), Trainers(ctx, ctx.job_dir(job), job))
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
            "s", paper_seconds / suite_seconds, ">= 5", judged(paper_seconds / suite_seconds >= 5),
            f"a sweep of {points} C values on {BENCHMARK} ({len(setup.datamodule.splits.train)} training images), all "
            f"timed, none extrapolated; paper: {paper['extraction_seconds']:.2f} s re-extracting features at every "
            f"point, {paper['fit_seconds']:.2f} s in {points} independent fits; suite: the logistic-probe kind on a cold "
            f"feature cache (every set extracted once, then the warm-started path); torch threads "
            f"{torch.get_num_threads()}, machine load average {suite_load:.1f} after the suite's LP and "
            f"{os.getloadavg()[0]:.1f} after the paper's, over the last minute on {os.cpu_count()} cores"),
        Row("3b", "LP chosen head ID test accuracy, suite vs paper", suite_accuracy, paper_accuracy, "% ID test",
            suite_accuracy / paper_accuracy, "|ours - reference| <= 0.2 points", judged(abs(difference) <= 0.2),
            f"difference {difference:+.2f} points; chosen C: suite {record['probe']['C']:.3g}, "
            f"paper {paper['C']:.3g}" + ("" if scale.pretrained else "; backbone not pretrained at this size")),
    ], check

