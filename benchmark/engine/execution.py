"""How a job runs: prepare its model and data, run its phases (each phase's kind says how), calibrate, record."""
from __future__ import annotations

import json
import logging
import platform
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import torch

from lpft_bench import interrupts
from lpft_bench.datamodules import ShiftDataModule, build_datamodule
from lpft_bench.models import Classifier, build_backbone
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.kinds import PhaseContext, cpu_state, phase_kind, rng_states, select_epoch, set_rng_states
from lpft_bench.strategies.linear_probe import extract_features
from lpft_bench.strategies.phases import Phase
from lpft_bench.strategies.posthoc import accuracy, calibration, predict

from .identity import CURRENT, Job, RunContext, feature_key, phase_key
from lpft_bench.loggers import phase_loggers
from .retention import keeps_source_backbone, weights_to_save
from .store import Store
from .store_files import PhaseResult, state_digest

RECORD_SCHEMA = "lpft-bench/record/v1"


def quiet_lightning() -> None:
    """Jobs print nothing but failures: a matrix of hundreds would otherwise drown its own progress bar."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")


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


@dataclass
class PreparedJob:
    """A job's model, data and phases, built and seeded, before anything trains."""

    model: Classifier
    datamodule: ShiftDataModule
    phases: list[Phase]
    hparams: dict
    pretrained: dict[str, torch.Tensor]  # the backbone's parameters before any phase
    # The last phase's selected epoch's weights where that is not the epoch it ended with (set by run_phases).
    selected_state: dict[str, torch.Tensor] | None = None
    pretrained_buffers: dict[str, torch.Tensor] | None = None  # the backbone's buffers before any phase
    # The last phase's final pass (per set: logits, labels on its selected weights) where it made one in this process.
    final_outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None


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
    # Only pretrained weights are what the feature cache holds (scratch starts from a random backbone).
    buffers = {k: v.detach().clone() for k, v in backbone.named_buffers()} if strategy.pretrained else None
    return PreparedJob(model, dm, strategy.phases(job.hparams), hparams, pretrained, pretrained_buffers=buffers)


def device_of(ctx: RunContext) -> torch.device:
    return torch.device("cuda" if ctx.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")


class Trainers:
    """Builds each gradient phase's Trainer on the run's devices, and remembers the last one's world."""

    def __init__(self, ctx: RunContext, job_dir: Path, job: Job):
        self.ctx, self.job_dir, self.job = ctx, job_dir, job
        self.world_size, self.is_rank_zero = 1, True

    def __call__(self, phase_key: str, **kwargs) -> L.Trainer:
        ctx = self.ctx
        loggers = phase_loggers(ctx.logger, self.job_dir, phase_key, self.job.id, self.job.meaning())
        trainer = L.Trainer(
            accelerator=ctx.accelerator,
            devices=ctx.devices,
            num_nodes=ctx.nodes,
            strategy="ddp" if ctx.devices * ctx.nodes > 1 else "auto",
            precision=ctx.precision,
            logger=loggers,
            use_distributed_sampler=False,  # the datamodule shards: padded for training, unpadded for evaluation
            num_sanity_val_steps=0,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1,
            **kwargs,
        )
        self.world_size, self.is_rank_zero = trainer.world_size, trainer.is_global_zero
        return trainer


def _train_ingredient(job: Job, ctx: RunContext, work_dir: Path, strategy: str, hparams: dict):
    """Another job's final model (a soup's ingredient), from the phase store or trained into it."""
    from dataclasses import replace

    ingredient = replace(job, strategy=strategy, hparams=hparams)
    prepared = prepare_job(ingredient, ctx)
    run_phases(ingredient, prepared, ctx, work_dir=Store.ingredient_dir(work_dir, ingredient.id))
    return ingredient.id, cpu_state(prepared.model)


def _run_pinned(job: Job, prefix: list[Phase], ctx: RunContext, job_dir: Path):
    """The last phase of `prefix` as the job of its pinned seed runs it (its phase key is that job's, so it lands
    in the store for every replication): its record, end state and selected state."""
    from dataclasses import replace

    pinned = replace(job, seed=prefix[-1].seed)
    prepared = prepare_job(pinned, ctx)
    prepared.phases = prefix
    records, _, _ = run_phases(pinned, prepared, ctx, work_dir=Store.pinned_dir(job_dir, pinned.seed))
    return records[-1], cpu_state(prepared.model), prepared.selected_state


def _features(job: Job, ctx: RunContext, prepared: PreparedJob, set_name: str, dataset, view: str = "eval",
              random_view: bool = False, cached_only: bool = False):
    """`view`: the name of the transform `dataset` applies; `random_view`: whether it is random (seeded);
    `cached_only`: None rather than an extraction where the cache has none."""
    path = ctx.store.features_path(job.benchmark, set_name, feature_key(job, set_name, view, random_view))
    if cached_only and not path.exists():
        return None
    device = device_of(ctx)
    return ctx.store.cached_features(path, lambda: extract_features(prepared.model.backbone,
                                                           prepared.datamodule.eval_loader(dataset), device))


def _feature_result(job: Job, ctx: RunContext, set_name: str, spec: dict, compute):
    """A result of the set's eval-view features alone and `spec`, cached beside them: where the set does not
    depend on the seed (digits' OOD sets), one oracle fit serves every seed's probe."""
    key = CURRENT.hash({"features": feature_key(job, set_name), **spec})
    return ctx.store.cached_result(ctx.store.feature_result_path(job.benchmark, set_name, key), compute)


def _pretrained_features(job: Job, ctx: RunContext, prepared: PreparedJob, set_name: str, dataset,
                         cached_only: bool = False):
    """The set's cached eval-view features where the backbone is still exactly the pretrained one (never for a job
    that starts from random weights: its features are not the cache's), else None (`cached_only`: also where
    the cache has none yet)."""
    if prepared.pretrained_buffers is None:
        return None
    backbone = prepared.model.backbone
    untouched = all(torch.equal(value.detach().cpu(), prepared.pretrained[name])
                    for name, value in backbone.named_parameters()) and \
        all(torch.equal(value.cpu(), prepared.pretrained_buffers[name]) for name, value in backbone.named_buffers())
    return _features(job, ctx, prepared, set_name, dataset, cached_only=cached_only) if untouched else None


def phase_context(job: Job, prepared: PreparedJob, ctx: RunContext, key: str, job_dir: Path, trainers: "Trainers",
                  start_of_previous: dict | None = None) -> PhaseContext:
    """What a phase kind gets to run phase `key` of `job`."""
    return PhaseContext(
        model=prepared.model, datamodule=prepared.datamodule, hparams=prepared.hparams, pretrained=prepared.pretrained,
        device=device_of(ctx), files=Store.phase_files(job_dir, key), phase_key=key, make_trainer=partial(trainers, key),
        features=partial(_features, job, ctx, prepared), train_ingredient=partial(_train_ingredient, job, ctx, job_dir),
        start_of_previous=start_of_previous, compile=ctx.compile,
        pretrained_features=partial(_pretrained_features, job, ctx, prepared),
        feature_result=partial(_feature_result, job, ctx),
        eval_every_epoch=ctx.eval_every_epoch, checkpoint_every_minutes=ctx.checkpoint_every_minutes,
        fresh_backbone=lambda: build_backbone(job.backbone_spec(), pretrained=False)[0],
        strategy_defaults=lambda name: get_strategy(name).defaults,
    )


def run_phases(job: Job, prepared: PreparedJob, ctx: RunContext, work_dir: Path | None = None) -> tuple[list[dict], int, bool]:
    """Run the phases in order. A phase whose result is in the store (this job's earlier, interrupted run,
    or another job with the same phase prefix) is loaded, not rerun. Checkpoints and logs go to `work_dir`
    (default: the job's directory).

    Returns the phase records, the world size and whether this process is rank zero."""
    model, phases = prepared.model, prepared.phases
    job_dir = work_dir or ctx.job_dir(job)
    trainers = Trainers(ctx, job_dir, job)
    store = ctx.store
    keys = [phase_key(job, phases, index) for index in range(len(phases))]
    first, start_of_previous = _resume(store, prepared, keys)
    records = [{**store.load_phase_record(key), "reused": key} for key in keys[:first]]
    if first:
        _after_phase(prepared, first - 1)
    for index in range(first, len(phases)):
        phase, key = phases[index], keys[index]
        interrupts.check()  # between phases: everything before is in the phase store
        keeps_start = index + 1 < len(phases) and phase_kind(phases[index + 1].trains).needs_previous_start
        start = cpu_state(model) if keeps_start else None
        prepared.final_outputs = None
        stored = store.load_phase(key)
        if stored is not None and _load(stored, model):
            records.append({**stored.record, "reused": key})
            prepared.selected_state = _full(stored.selected, model)
            if stored.rng is not None:  # the generators as the phase left them: what follows draws as if it ran here
                set_rng_states(stored.rng)
        elif phase.seed is not None and phase.seed != job.seed:
            record, state, prepared.selected_state = _run_pinned(job, phases[: index + 1], ctx, job_dir)
            records.append({**record, "reused": key})
            model.load_state_dict(state)
        else:
            source = state_digest(model.backbone.state_dict()) if keeps_source_backbone(phases, index) else None
            context = phase_context(job, prepared, ctx, key, job_dir, trainers, start_of_previous)
            record = phase_kind(phase.trains).run(phase, context)
            records.append(record)
            prepared.selected_state, prepared.final_outputs = context.selected_state, context.final_outputs
            if trainers.is_rank_zero:
                # A phase that left the source backbone as it found it keeps its head alone, naming that backbone.
                unchanged = source is not None and state_digest(model.backbone.state_dict()) == source
                state, selected = weights_to_save(ctx.weights_written, key, index + 1 == len(phases),
                                                  model.state_dict(), context.selected_state)
                store.save_phase(key, state, record, selected, source if unchanged else None, rng_states())
                Store.remove_checkpoints(job_dir, key)
        _after_phase(prepared, index)
        start_of_previous = start
    return records, trainers.world_size, trainers.is_rank_zero


def _after_phase(prepared: PreparedJob, index: int) -> None:
    """The next phase starts from a head-probing phase's selected epoch, where that is not its last."""
    kind = phase_kind(prepared.phases[index].trains)
    if index + 1 < len(prepared.phases) and kind.by_gradient and not kind.trains_backbone \
            and prepared.selected_state is not None:
        prepared.model.load_state_dict(prepared.selected_state)
        prepared.selected_state = None


def _full(state: dict | None, model) -> dict | None:
    """A stored state over the model's own: a head-only state takes the (verified) backbone the model holds."""
    return None if state is None else {**model.state_dict(), **state}


def _load(stored: PhaseResult, model) -> bool:
    """Load a stored phase's weights into the model; False where it has none (the keep-weights policy dropped
    them) or where it is a head whose backbone digest is not that of the backbone the model holds."""
    if stored.weights is None:
        return False
    if stored.backbone_sha256 and state_digest(model.backbone.state_dict()) != stored.backbone_sha256:
        print(f"lpft-bench: phase {stored.record.get('name')}: its head sat on another backbone than this job's "
              "source (digest differs); recomputing the phase", file=sys.stderr)
        return False
    model.load_state_dict(_full(stored.weights, model))
    return True


def _resume(store: Store, prepared: PreparedJob, keys: list[str]) -> tuple[int, dict | None]:
    """(index of the first phase to run, the start of the phase before it where that phase needs it), the
    model loaded with the last stored result it can start from: phases before it are taken from the store,
    by their records, without loading their weights."""
    model, phases = prepared.model, prepared.phases
    first = next((i for i, key in enumerate(keys) if store.load_phase_record(key) is None), len(keys))
    initial = cpu_state(model) if first else None  # a failed load leaves nothing behind: the model starts over
    while first > 0:
        reads = [first - 1]
        if first < len(phases) and first >= 2 and phase_kind(phases[first].trains).needs_previous_start:
            reads.insert(0, first - 2)
        results = [store.load_phase(keys[i]) for i in reads]
        start_of_previous = None
        if all(result is not None and result.weights is not None for result in results):
            if len(results) == 2 and _load(results[0], model):
                start_of_previous = cpu_state(model)
            if (len(results) == 1 or start_of_previous is not None) and _load(results[-1], model):
                prepared.selected_state = _full(results[-1].selected, model)
                if results[-1].rng is not None:
                    set_rng_states(results[-1].rng)
                return first, start_of_previous
        model.load_state_dict(initial)
        first -= 1  # weights dropped or unusable: one phase earlier
    return 0, None


def final_outputs(prepared: PreparedJob, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Logits and labels of every evaluation set on the model whose accuracy the job reports (its selected epoch;
    WiSE-FT's chosen α, a soup): the last phase's final pass where it made one, else one forward per set now."""
    if prepared.final_outputs is not None:
        return prepared.final_outputs
    model, dm = prepared.model.to(device), prepared.datamodule
    if prepared.selected_state is not None:  # the last phase selected an earlier epoch than it ended with
        model.load_state_dict(prepared.selected_state)
    return {s.name: predict(model, dm.eval_loader(s.dataset), device) for s in dm.eval_sets}


def calibrate(prepared: PreparedJob, device: torch.device, outputs: dict | None = None) -> dict:
    """Temperature scaling of the reported model, fitted on the selection set: accuracy, NLL and ECE per
    evaluation set before and after."""
    dm = prepared.datamodule
    outputs = outputs if outputs is not None else final_outputs(prepared, device)
    return calibration(outputs, dm.eval_sets, dm.selection_set, dm.num_classes)


def final_accuracies(selected: dict, outputs: dict, eval_sets) -> dict[str, float]:
    """Each set's accuracy at the selected epoch: the epoch's own row where it evaluated the set (the selection
    set; every set of a closed-form probe, a weight-space step or `eval_every_epoch`), else the final pass."""
    return {s.name: selected[f"acc/{s.name}"] if f"acc/{s.name}" in selected
            else accuracy(*outputs[s.name], s.class_subset) for s in eval_sets}


def run_job(job: Job, ctx: RunContext) -> dict:
    """Run every phase of the job and write its record (atomically, then the `done` marker)."""
    quiet_lightning()
    started = time.time()
    prepared = prepare_job(job, ctx)
    dm = prepared.datamodule
    phases, world_size, is_rank_zero = run_phases(job, prepared, ctx)
    # A diverged job is done, not failed: its diverged epochs are never selected, and with none left it has no
    # final accuracies (so no table row) and no calibration of a non-finite model.
    diverged = [phase["name"] for phase in phases if "diverged_epoch" in phase]
    selected = select_epoch(phases[-1]["epochs"], dm.selection_set) or {}
    selection = {"set": dm.selection_set, "phase": phases[-1]["name"], "epoch": selected.get("epoch")}
    if "alpha" in selected:
        selection["alpha"] = selected["alpha"]
    outputs = final_outputs(prepared, device_of(ctx)) if selected else None
    outcome = {"diverged": diverged} if diverged else {"calibration": calibrate(prepared, device_of(ctx), outputs)}
    record = {
        "schema": RECORD_SCHEMA,
        "job_id": job.id,
        "job": job.to_dict(),
        "meaning": job.meaning(),
        "status": "done",
        "eval_sets": {s.name: {"split": s.split, "size": len(s.dataset)} for s in dm.eval_sets},
        "selection": selection,
        "final": final_accuracies(selected, outputs, dm.eval_sets) if selected else {},
        "phases": phases,
        # A benchmark told to leave unreadable images out (folder's skip_unreadable) names them, by set.
        **({"skipped_files": dm.skipped_files} if getattr(dm, "skipped_files", None) else {}),
        "environment": _environment(world_size),
        **outcome,
        "seconds": round(time.time() - started, 2),
    }
    if is_rank_zero:
        ctx.store.write_record(job.id, record)
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
    ctx.store.write_record(job.id, record)
    return record


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: `python -m lpft_bench.engine.execution JOB_JSON CONTEXT_JSON` (DDP re-executes it)."""
    args = argv if argv is not None else sys.argv[1:]
    job = Job.from_dict(json.loads(args[0]))
    ctx = RunContext.from_dict(json.loads(args[1]))
    try:
        with interrupts.stop_on_signals():
            run_job(job, ctx)
    except interrupts.Interrupted as stop:  # not a failure: the rerun resumes from the last epoch checkpoint
        print(f"job {job.id} interrupted by {stop}", file=sys.stderr)
        return stop.exit_code
    except Exception as error:  # the runner reads the failure from the store and moves on
        record_failure(job, ctx, error)
        print(f"job {job.id} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
