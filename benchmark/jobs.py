"""A job: (benchmark, backbone, strategy, hyperparameters, seed), identified by what it means, run phase by phase."""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lpft_bench.backbones import BackboneSpec, Classifier, build_backbone, resolve_backbone
from lpft_bench.datamodules import ShiftDataModule, build_datamodule
from lpft_bench.storage import cache_dir, meaning_hash, write_json
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.callbacks import BatchNormEval, EpochRecorder, FrozenBackboneEval
from lpft_bench.strategies.linear_probe import ProbeResult, cached_features, fit_logistic_path
from lpft_bench.strategies.module import AdaptationModule, restrict_logits
from lpft_bench.strategies.phases import Phase

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
            "benchmark": {"name": self.benchmark, "options": self.benchmark_options},
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
    num_workers: int = 0
    precision: str | None = None
    tensorboard: bool = False

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
        "benchmark": {"name": job.benchmark, "options": job.benchmark_options},
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


def run_gradient_phase(phase: Phase, model: Classifier, dm: ShiftDataModule, ctx: RunContext, job_dir: Path) -> tuple[dict, L.Trainer]:
    """One phase = one `Trainer.fit`: freezing and BatchNorm modes are fixed for the whole fit (safe under DDP)."""
    if phase.head_init == "random":
        for layer in model.head.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    recorder = EpochRecorder()
    callbacks = [recorder]
    if phase.batchnorm == "eval":
        callbacks.append(BatchNormEval())
    if phase.trains == "head":
        callbacks.append(FrozenBackboneEval())
    loggers = [CSVLogger(job_dir, name="logs", version=phase.name)]
    if ctx.tensorboard:
        loggers.append(TensorBoardLogger(job_dir, name="tensorboard", version=phase.name))
    trainer = L.Trainer(
        max_epochs=phase.epochs,
        accelerator=ctx.accelerator,
        devices=ctx.devices,
        strategy="ddp" if ctx.devices > 1 else "auto",
        precision=ctx.precision,
        callbacks=callbacks,
        logger=loggers,
        use_distributed_sampler=False,  # the datamodule shards: padded for training, unpadded for evaluation
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    module = AdaptationModule(model, phase, dm.eval_sets, dm.num_classes)
    start = head_state(model.head)
    trainer.fit(module, datamodule=dm)
    return {"name": phase.name, "phase": phase.describe(), "start": start, "epochs": recorder.epochs,
            "end": head_state(model.head)}, trainer


def select_epoch(phase_record: dict, selection_set: str) -> dict:
    """The epoch with the best accuracy on the selection set (earliest on ties)."""
    key = f"acc/{selection_set}"
    return max(phase_record["epochs"], key=lambda row: (row[key], -row["epoch"]))


def _quiet_lightning() -> None:
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
    return PreparedJob(model, dm, strategy.phases(job.hparams))


def run_phases(job: Job, prepared: PreparedJob, ctx: RunContext) -> tuple[list[dict], int, bool]:
    """Run the phases in order on the prepared model; returns their records, the world size and rank-zero-ness."""
    model, dm = prepared.model, prepared.datamodule
    device = torch.device("cuda" if ctx.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")
    records, world_size, is_rank_zero = [], 1, True
    for phase in prepared.phases:
        if phase.trains == "logistic-probe":
            model.to(device)
            records.append(run_probe_phase(job, phase, model, dm, device))
        else:
            result, trainer = run_gradient_phase(phase, model, dm, ctx, ctx.job_dir(job))
            records.append(result)
            world_size, is_rank_zero = trainer.world_size, trainer.is_global_zero
    return records, world_size, is_rank_zero


def run_job(job: Job, ctx: RunContext) -> dict:
    """Run every phase of the job and write its record (atomically, then the `done` marker)."""
    _quiet_lightning()
    started = time.time()
    prepared = prepare_job(job, ctx)
    dm = prepared.datamodule
    phases, world_size, is_rank_zero = run_phases(job, prepared, ctx)
    selection_set = dm.selection_set
    selected = select_epoch(phases[-1], selection_set)
    record = {
        "schema": RECORD_SCHEMA,
        "job_id": job.id,
        "job": job.to_dict(),
        "meaning": job.meaning(),
        "status": "done",
        "eval_sets": {s.name: {"split": s.split, "size": len(s.dataset)} for s in dm.eval_sets},
        "selection": {"set": selection_set, "phase": phases[-1]["name"], "epoch": selected["epoch"]},
        "final": {s.name: selected[f"acc/{s.name}"] for s in dm.eval_sets},
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
        "error": "".join(traceback.format_exception(error)),
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
