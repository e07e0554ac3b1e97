"""A job: (benchmark, backbone, strategy, hyperparameters, seed), identified by what it means, run phase by phase."""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from safetensors.torch import load_file, save_file

from lpft_bench.models import BackboneSpec, Classifier, build_backbone, resolve_backbone
from lpft_bench.datamodules import ShiftDataModule, benchmark_meaning, build_datamodule
from lpft_bench.storage import atomic_write, cache_dir, meaning_hash, write_json
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.callbacks import (BatchNormEval, EpochRecorder, FinetuneDiagnostics, FrozenBackboneEval,
                                             FrozenLayerGroups)
from lpft_bench.strategies.linear_probe import ProbeResult, cached_features, fit_logistic_path
from lpft_bench.strategies.module import AdaptationModule, restrict_logits
from lpft_bench.strategies.phases import Phase
from lpft_bench.strategies.posthoc import (average, calibration, evaluate, greedy_soup, interpolate, predict,
                                           reestimate_batchnorm)

RECORD_SCHEMA = "lpft-bench/record/v1"
DONE_MARKER = "done"


@dataclass(frozen=True)
class Job:
    """What is run. Everything here is part of the job's identity; where and how it runs is not."""

    benchmark: str
    strategy: str
    seed: int
    backbone: str = "digits-resnet"
    hparams: dict = field(default_factory=dict)
    benchmark_options: dict = field(default_factory=dict)
    checkpoint: str | None = None

    def backbone_spec(self) -> BackboneSpec:
        return resolve_backbone(self.backbone, self.checkpoint)

    def meaning(self) -> dict:
        strategy = get_strategy(self.strategy)
        return {
            "benchmark": {"name": self.benchmark, "options": benchmark_meaning(self.benchmark, self.benchmark_options)},
            "backbone": self.backbone_spec().meaning(),
            "strategy": self.strategy,
            "hparams": strategy.hparams(self.hparams),
            "phases": [p.describe() for p in strategy.phases(self.hparams)],
            "seed": self.seed,
        }

    @property
    def id(self) -> str:
        return meaning_hash(self.meaning())

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
    tensorboard: bool = False
    compile: bool = False

    def job_dir(self, job: Job) -> Path:
        return Path(self.out) / "jobs" / job.id

    def to_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}

    @classmethod
    def from_dict(cls, data: dict) -> "RunContext":
        return cls(**{**data, "out": Path(data["out"])})


def is_done(job_dir: Path) -> bool:
    return (job_dir / DONE_MARKER).exists()


def _environment(trainer_world_size: int) -> dict:
    import lightning
    import timm

    return {
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "world_size": trainer_world_size,
    }


def _feature_cache_path(job: Job, set_name: str) -> Path:
    """Features depend on the backbone's weights, the benchmark's data and its seeded split: nothing else."""
    key = meaning_hash({
        "backbone": job.backbone_spec().meaning(),
        "benchmark": {"name": job.benchmark, "options": benchmark_meaning(job.benchmark, job.benchmark_options)},
        "seed": job.seed,
        "set": set_name,
    })
    return cache_dir() / "features" / f"{job.benchmark}-{set_name}-{key}.npz"


def head_state(head: torch.nn.Module) -> dict:
    """A fingerprint of the head: its digest proves which head a phase started from."""
    tensors = [t.detach().cpu().contiguous() for t in head.state_dict().values()]
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in tensors)).hexdigest()[:16]
    norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))
    return {"head_sha256": digest, "head_norm": norm}


def run_probe_phase(job: Job, phase: Phase, model: Classifier, dm: ShiftDataModule, device: torch.device) -> dict:
    """The paper's LP on the untouched pretrained backbone; loads the chosen head into `model.head`."""
    if not isinstance(model.head, torch.nn.Linear):
        raise ValueError("the logistic-regression probe fits a linear head; use an SGD head-probing phase for MLP heads")
    features = {"train": cached_features(_feature_cache_path(job, "train"), model.backbone, dm.eval_loader(dm.splits.train_eval), device)}
    for eval_set in dm.eval_sets:
        features[eval_set.name] = cached_features(
            _feature_cache_path(job, eval_set.name), model.backbone, dm.eval_loader(eval_set.dataset), device
        )
    selection = dm.selection_set
    probe: ProbeResult = fit_logistic_path(*features["train"], *features[selection], phase.probe_Cs, dm.num_classes)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(probe.weight))
        model.head.bias.copy_(torch.from_numpy(probe.bias))
    row = {"epoch": 0}
    for eval_set in dm.eval_sets:
        x, y = features[eval_set.name]
        logits = restrict_logits(torch.from_numpy(probe.logits(x)), eval_set.class_subset)
        row[f"acc/{eval_set.name}"] = float((logits.argmax(-1).numpy() == y).mean())
    train_x, train_y = features["train"]
    row["train/acc"] = float((probe.logits(train_x).argmax(-1) == train_y).mean())
    return {"name": phase.name, "phase": phase.describe(), "epochs": [row], "end": head_state(model.head),
            "probe": {"C": probe.C, "path": probe.path}}


def reinitialise(backbone: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Fresh PyTorch-default parameters (and BatchNorm statistics) for exactly the named modules."""
    for name in names:
        for module in backbone.get_submodule(name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


def probe_subset(dataset, size: int):
    """A fixed subset (seed 0, same for every job) on which feature metrics are measured."""
    if len(dataset) <= size:
        return dataset
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return torch.utils.data.Subset(dataset, sorted(indices.tolist()))


def run_gradient_phase(phase: Phase, prepared: "PreparedJob", ctx: RunContext, job_dir: Path, phase_key: str) -> tuple[dict, L.Trainer]:
    """One phase = one `Trainer.fit`: freezing and BatchNorm modes are fixed for the whole fit (safe under DDP).

    Lightning checkpoints the phase every epoch; a killed phase resumes from `checkpoint_dir/last.ckpt`."""
    model, dm = prepared.model, prepared.datamodule
    checkpoint_dir = job_dir / "checkpoints" / phase_key
    if phase.head_init == "random":
        reinitialise(model, ("head",))
    reinitialise(model.backbone, phase.reinit)
    recorder = EpochRecorder()
    callbacks = [recorder, ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, save_top_k=0)]
    if phase.batchnorm == "eval":
        callbacks.append(BatchNormEval())
    if phase.trains == "head":
        callbacks.append(FrozenBackboneEval(phase.also_train))
    if phase.trains == "groups" or phase.frozen_groups or phase.unfreeze_every:
        callbacks.append(FrozenLayerGroups(phase))
    diagnostics = None
    if phase.trains in ("all", "groups"):
        size = prepared.hparams.get("probe_size", 512)
        diagnostics = FinetuneDiagnostics(
            train_probe=probe_subset(dm.splits.train_eval, size),
            eval_probes={s.name: probe_subset(s.dataset, size) for s in dm.eval_sets},
            splits={s.name: s.split for s in dm.eval_sets},
            pretrained=prepared.pretrained,
        )
        callbacks.append(diagnostics)
    loggers = [CSVLogger(job_dir, name="logs", version=phase_key)]
    if ctx.tensorboard:
        loggers.append(TensorBoardLogger(job_dir, name="tensorboard", version=phase_key))
    trainer = L.Trainer(
        max_epochs=phase.epochs,
        accelerator=ctx.accelerator,
        devices=ctx.devices,
        num_nodes=ctx.nodes,
        strategy="ddp" if ctx.devices * ctx.nodes > 1 else "auto",
        precision=ctx.precision,
        callbacks=callbacks,
        logger=loggers,
        check_val_every_n_epoch=phase.validate_every,
        use_distributed_sampler=False,  # the datamodule shards: padded for training, unpadded for evaluation
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    module = AdaptationModule(model, phase, dm.eval_sets, dm.num_classes, pretrained=prepared.pretrained)
    # Lightning keeps whatever train/eval modes modules have at fit start; a phase starts from train mode
    # and its callbacks put the frozen parts in eval mode.
    model.train()
    if isinstance(trainer.accelerator, CUDAAccelerator):
        # NHWC is what cuDNN's convolution kernels prefer; parameters keep their names and values.
        model.to(memory_format=torch.channels_last)
    if ctx.compile:
        model.compile()  # in place: state_dict keys (phase store, checkpoints) are unchanged
    start = head_state(model.head)
    last = checkpoint_dir / "last.ckpt"
    trainer.fit(module, datamodule=dm, ckpt_path=last if last.exists() else None, weights_only=True)
    result = {"name": phase.name, "phase": phase.describe(), "start": start, "epochs": recorder.epochs,
              "end": head_state(model.head)}
    if diagnostics is not None:
        result["start"].update(diagnostics.start)
        result.update(diagnostics.end)
    return result, trainer


def select_epoch(phase_record: dict, selection_set: str) -> dict:
    """The epoch (or weight-space candidate) with the best accuracy on the selection set (earliest on ties)."""
    key = f"acc/{selection_set}"
    return max(phase_record["epochs"], key=lambda row: (row[key], -row["epoch"]))


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _accuracies(prepared: "PreparedJob", device: torch.device) -> dict[str, float]:
    dm = prepared.datamodule
    return {f"acc/{name}": value for name, value in evaluate(prepared.model, dm.eval_sets, dm.eval_loader, device).items()}


def run_interpolation_phase(phase: Phase, prepared: "PreparedJob", start: dict[str, torch.Tensor],
                            device: torch.device) -> dict:
    """WiSE-FT: every α's interpolation between `start` and the model as it is (BatchNorm statistics
    re-estimated, or interpolated too), evaluated on every set; the model is left at the α chosen on the
    selection set."""
    model, dm = prepared.model.to(device), prepared.datamodule
    end = _cpu_state(model)
    train_loader = dm.eval_loader(dm.splits.train_eval)

    def load(alpha: float) -> None:
        model.load_state_dict(interpolate(start, end, alpha))
        if phase.reestimate_bn:
            reestimate_batchnorm(model, train_loader, device)

    rows = []
    for index, alpha in enumerate(phase.alphas):
        load(alpha)
        rows.append({"epoch": index, "alpha": alpha, **_accuracies(prepared, device)})
    chosen = select_epoch({"epochs": rows}, dm.selection_set)
    load(chosen["alpha"])
    return {"name": phase.name, "phase": phase.describe(), "epochs": rows, "alpha": chosen["alpha"],
            "end": head_state(model.head)}


def ingredient_jobs(job: Job, phase: Phase) -> list[Job]:
    """The sweep a soup averages: strategy `phase.ingredient` at each learning rate of `phase.sweep_lrs`, with
    the soup job's benchmark, backbone and seed, and those of its hyperparameters the ingredient takes."""
    ingredient = get_strategy(phase.ingredient)
    hparams = get_strategy(job.strategy).hparams(job.hparams)
    shared = {k: v for k, v in hparams.items() if k in ingredient.defaults}
    return [replace(job, strategy=phase.ingredient, hparams={**shared, "lr": lr}) for lr in phase.sweep_lrs]


def run_soup_phase(job: Job, phase: Phase, prepared: "PreparedJob", ctx: RunContext, device: torch.device,
                   work_dir: Path) -> dict:
    """A model soup of the sweep's fine-tuned models, which come from the phase store (where the sweep's own
    jobs left them) or, when missing, are trained here into it. A soup of one ingredient is that model as
    it is; a soup of several has its BatchNorm statistics re-estimated on the un-augmented training data
    (unless the phase averages them with the weights)."""
    model, dm = prepared.model, prepared.datamodule
    ingredients, states = ingredient_jobs(job, phase), []
    for ingredient in ingredients:
        ingredient_prepared = prepare_job(ingredient, ctx)
        run_phases(ingredient, ingredient_prepared, ctx, work_dir=work_dir / "ingredients" / ingredient.id)
        states.append(_cpu_state(ingredient_prepared.model))
    model.to(device)
    train_loader = dm.eval_loader(dm.splits.train_eval)
    selection = [s for s in dm.eval_sets if s.name == dm.selection_set]

    def load(members: list[int]) -> None:
        model.load_state_dict(average([states[i] for i in members]))
        if len(members) > 1 and phase.reestimate_bn:
            reestimate_batchnorm(model, train_loader, device)

    def selection_accuracy(members: list[int]) -> float:
        load(members)
        return evaluate(model, selection, dm.eval_loader, device)[dm.selection_set]

    scores = [selection_accuracy([i]) for i in range(len(states))]
    members = greedy_soup(scores, selection_accuracy)[0] if phase.average == "greedy" else list(range(len(states)))
    load(members)
    return {"name": phase.name, "phase": phase.describe(), "epochs": [{"epoch": 0, **_accuracies(prepared, device)}],
            "ingredients": [{"job_id": j.id, "lr": j.hparams["lr"], f"acc/{dm.selection_set}": score}
                            for j, score in zip(ingredients, scores)],
            "members": [ingredients[i].id for i in members], "end": head_state(model.head)}


def quiet_lightning() -> None:
    """Jobs print nothing but failures: a matrix of hundreds would otherwise drown its own progress bar."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")


@dataclass
class PreparedJob:
    """A job's model, data and phases, built and seeded, before anything trains."""

    model: Classifier
    datamodule: ShiftDataModule
    phases: list[Phase]
    hparams: dict
    pretrained: dict[str, torch.Tensor]  # the backbone's parameters before any phase


def prepare_job(job: Job, ctx: RunContext) -> PreparedJob:
    strategy = get_strategy(job.strategy)
    hparams = strategy.hparams(job.hparams)
    L.seed_everything(job.seed, workers=True, verbose=False)
    backbone, data_config = build_backbone(job.backbone_spec(), pretrained=strategy.pretrained)
    dm = build_datamodule(
        job.benchmark,
        data_config=data_config,
        data_root=ctx.data_root,
        batch_size=hparams.get("batch_size", 64),
        num_workers=ctx.num_workers,
        seed=job.seed,
        **job.benchmark_options,
    )
    dm.setup("fit")
    model = Classifier(backbone, dm.num_classes, head=hparams.get("head", "linear"))
    pretrained = {k: v.detach().clone() for k, v in backbone.named_parameters()}
    return PreparedJob(model, dm, strategy.phases(job.hparams), hparams, pretrained)


def _save_phase(phase_dir: Path, model: Classifier, record: dict) -> None:
    """The model after a phase, then its record: a phase directory with a record is complete."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(phase_dir / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    write_json(phase_dir / "record.json", record)


def phase_key(job: Job, phases: list[Phase], index: int) -> str:
    """Identity of the model state after phases[:index + 1]: jobs sharing that prefix share its result
    (lp-ft reuses the lp job's probe, hp-ft jobs that differ only in their FT learning rate share one HP)."""
    prefix = phases[: index + 1]
    hparams = get_strategy(job.strategy).hparams(job.hparams)
    trained_by_gradient = any(p.trains != "logistic-probe" for p in prefix)
    meaning = {
        "benchmark": {"name": job.benchmark, "options": benchmark_meaning(job.benchmark, job.benchmark_options)},
        "backbone": job.backbone_spec().meaning(),
        "pretrained": get_strategy(job.strategy).pretrained,
        "seed": job.seed,
        "training": {k: hparams.get(k) for k in ("batch_size", "head", "probe_size")} if trained_by_gradient else {},
        "phases": [p.describe() for p in prefix],
    }
    if prefix[-1].trains == "weight-average":
        meaning["ingredients"] = [ingredient.id for ingredient in ingredient_jobs(job, prefix[-1])]
    return f"{index}-{prefix[-1].name}-{meaning_hash(meaning)}"


def _device(ctx: RunContext) -> torch.device:
    return torch.device("cuda" if ctx.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")


def run_phases(job: Job, prepared: PreparedJob, ctx: RunContext, work_dir: Path | None = None) -> tuple[list[dict], int, bool]:
    """Run the phases in order. A phase whose result is in the store (this job's earlier, interrupted run,
    or another job with the same phase prefix) is loaded, not rerun. Checkpoints and logs go to `work_dir`
    (default: the job's directory).

    Returns the phase records, the world size and whether this process is rank zero."""
    model, dm, phases = prepared.model, prepared.datamodule, prepared.phases
    job_dir = work_dir or ctx.job_dir(job)
    device = _device(ctx)
    records, world_size, is_rank_zero = [], 1, True
    start_of_previous = None
    for index, phase in enumerate(phases):
        start = _cpu_state(model) if index + 1 < len(phases) and phases[index + 1].trains == "weight-interpolation" else None
        key = phase_key(job, phases, index)
        phase_dir = Path(ctx.out) / "phases" / key
        if (phase_dir / "record.json").exists():
            records.append({**json.loads((phase_dir / "record.json").read_text()), "reused": key})
            model.load_state_dict(load_file(str(phase_dir / "model.safetensors")))
            start_of_previous = start
            continue
        if phase.trains == "logistic-probe":
            model.to(device)
            record = run_probe_phase(job, phase, model, dm, device)
        elif phase.trains == "weight-interpolation":
            if start_of_previous is None:
                raise ValueError(f"phase {phase.name!r} interpolates from the start of the phase before it: it cannot come first")
            record = run_interpolation_phase(phase, prepared, start_of_previous, device)
        elif phase.trains == "weight-average":
            record = run_soup_phase(job, phase, prepared, ctx, device, job_dir)
        else:
            record, trainer = run_gradient_phase(phase, prepared, ctx, job_dir, key)
            world_size, is_rank_zero = trainer.world_size, trainer.is_global_zero
        records.append(record)
        if is_rank_zero:
            _save_phase(phase_dir, model, record)
            shutil.rmtree(job_dir / "checkpoints" / key, ignore_errors=True)
        start_of_previous = start
    return records, world_size, is_rank_zero


def calibrate(prepared: PreparedJob, device: torch.device) -> dict:
    """Temperature scaling of the model the job ends with (its last epoch; WiSE-FT's chosen α, a soup),
    fitted on the selection set: accuracy, NLL and ECE per evaluation set before and after."""
    model, dm = prepared.model.to(device), prepared.datamodule
    outputs = {s.name: predict(model, dm.eval_loader(s.dataset), device) for s in dm.eval_sets}
    return calibration(outputs, dm.eval_sets, dm.selection_set, dm.num_classes)


def run_job(job: Job, ctx: RunContext) -> dict:
    """Run every phase of the job and write its record (atomically, then the `done` marker)."""
    quiet_lightning()
    started = time.time()
    prepared = prepare_job(job, ctx)
    dm = prepared.datamodule
    phases, world_size, is_rank_zero = run_phases(job, prepared, ctx)
    selection_set = dm.selection_set
    selected = select_epoch(phases[-1], selection_set)
    selection = {"set": selection_set, "phase": phases[-1]["name"], "epoch": selected["epoch"]}
    if "alpha" in selected:
        selection["alpha"] = selected["alpha"]
    record = {
        "schema": RECORD_SCHEMA,
        "job_id": job.id,
        "job": job.to_dict(),
        "meaning": job.meaning(),
        "status": "done",
        "eval_sets": {s.name: {"split": s.split, "size": len(s.dataset)} for s in dm.eval_sets},
        "selection": selection,
        "final": {s.name: selected[f"acc/{s.name}"] for s in dm.eval_sets},
        "calibration": calibrate(prepared, _device(ctx)),
        "phases": phases,
        "environment": _environment(world_size),
        "seconds": round(time.time() - started, 2),
    }
    if is_rank_zero:
        write_json(ctx.job_dir(job) / "record.json", record)
        (ctx.job_dir(job) / DONE_MARKER).touch()
    return record


def record_failure(job: Job, ctx: RunContext, error: BaseException) -> dict:
    """A failed job keeps its error in the store (no `done` marker: a rerun retries it)."""
    record = {
        "schema": RECORD_SCHEMA,
        "job_id": job.id,
        "job": job.to_dict(),
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
    }
    write_json(ctx.job_dir(job) / "record.json", record)
    return record


def load_record(job_dir: Path) -> dict | None:
    path = job_dir / "record.json"
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: `python -m lpft_bench.jobs JOB_JSON CONTEXT_JSON` (DDP re-executes this command)."""
    import sys

    args = argv if argv is not None else sys.argv[1:]
    job = Job.from_dict(json.loads(args[0]))
    ctx = RunContext.from_dict(json.loads(args[1]))
    try:
        run_job(job, ctx)
    except Exception as error:  # the runner reads the failure from the store and moves on
        record_failure(job, ctx, error)
        print(f"job {job.id} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
