"""What a phase kind is (`PhaseKind`), what it gets to run (`PhaseContext`), and the registry of kinds by the name a
`Phase.trains` holds. Kinds receive a `PhaseContext` and never see a job, so they never import the engine."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from lpft_bench.registry import Registry

if TYPE_CHECKING:
    import lightning as L

    from lpft_bench.datamodules import ShiftDataModule
    from lpft_bench.strategies.phases import Phase


@dataclass(frozen=True)
class PhaseFiles:
    """Where a running phase keeps its resume checkpoint, the folder for its selected epoch's weights beside it,
    and its progress note (paths the store gives: kinds never build one)."""

    checkpoint: Path
    selected_dir: Path
    progress: Path


@dataclass
class PhaseContext:
    """What a phase kind may use. Built by the engine for each phase.

    features(set_name, dataset, view="eval", random_view=False): that set's eval-mode backbone features and
    labels, from the store's cache (`view` names the transform `dataset` applies, `random_view` says it is
    seeded, so the cache keys on the seed).
    make_trainer(**trainer_kwargs): a Lightning Trainer on this run's devices; the engine reads its world size.
    train_ingredient(strategy, hparams): another job's final model state (same benchmark, backbone, seed),
    from the phase store or trained into it (model soups).
    start_of_previous: the model state at the start of the previous phase (kinds that `needs_previous_start`).
    fresh_backbone(): the job's backbone architecture newly built and initialised by timm (re-initialisation).
    strategy_defaults(name): a strategy's default hyperparameters (a soup's ingredients take those they share)."""

    model: torch.nn.Module
    datamodule: "ShiftDataModule"
    hparams: dict
    pretrained: dict[str, torch.Tensor]
    device: torch.device
    files: PhaseFiles
    phase_key: str
    make_trainer: Callable[..., "L.Trainer"]
    features: Callable[[str, object], "tuple[np.ndarray, np.ndarray]"]
    train_ingredient: Callable[[str, dict], dict[str, torch.Tensor]]
    start_of_previous: dict[str, torch.Tensor] | None = None
    # Set by a kind whose selected epoch is not its last: that epoch's weights, which the job is calibrated at.
    selected_state: dict[str, torch.Tensor] | None = None
    fresh_backbone: Callable[[], torch.nn.Module] | None = None
    strategy_defaults: Callable[[str], dict] | None = None
    compile: bool = False
    # pretrained_features(set_name, dataset, cached_only=False): as `features`, but None unless the model's backbone
    # is still exactly the pretrained one (parameters and buffers): then the probe's features are its z_0.
    pretrained_features: Callable[..., "tuple[np.ndarray, np.ndarray] | None"] = \
        lambda name, dataset, cached_only=False: None
    # feature_result(set_name, spec, compute): `compute()`, a result of that set's eval-view features and `spec`
    # alone, from the store's cache beside those features.
    feature_result: Callable[[str, dict, Callable[[], "dict | None"]], "dict | None"] = \
        lambda name, spec, compute: compute()
    eval_every_epoch: bool = False  # every set after every epoch (per-epoch curves), not only the selection set
    checkpoint_every_minutes: float = 0  # 0: a resume checkpoint at every epoch's end
    # Set by a kind that has every set's outputs on the weights it selected (a final pass; the probe: its head on
    # the cached features): per set (logits, labels).
    final_outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None


class PhaseKind:
    """A kind of phase. Subclasses set the flags and implement `run`; `validate` checks a phase's fields."""

    name: str = ""
    by_gradient: bool = False  # one `Trainer.fit` per phase
    depends_on_training: bool = True  # its result depends on batch size, head type and probe size
    trains_backbone: bool = False  # backbone parameters get gradients: feature-change diagnostics apply
    needs_previous_start: bool = False  # the engine keeps the model state from before the previous phase
    caches_features: bool = False  # stores every set's backbone features in the store (counted by the disk estimate)
    fields: tuple[str, ...] = ()  # `Phase` fields that only phases of this kind may set

    def validate(self, phase: "Phase") -> None:
        """Raise ValueError naming the field when `phase` is not a valid phase of this kind."""

    def keeps_backbone(self, phase: "Phase") -> bool:
        """Whether the phase leaves every backbone weight and statistic as it found them (then the store keeps
        its head alone, verified by the backbone's digest when it is saved)."""
        return False

    def settings(self, phase: "Phase", mode: str) -> dict:
        """What else the phase's result depends on beyond its fields, given the benchmark's mode (paper or
        clean): part of the job's identity and its phase keys, so a changed setting never reuses a stale result."""
        return {}

    def ingredients(self, phase: "Phase", strategy_hparams: dict,
                    defaults_of: Callable[[str], dict]) -> list[tuple[str, dict]]:
        """Other jobs (strategy, hyperparameters) whose results this phase's result depends on; `defaults_of`:
        a strategy's default hyperparameters, by name (the strategy registry, which imports the kinds)."""
        return []

    def forward_passes(self, phase: "Phase", sizes: dict[str, int], probe_size: int,
                       extracted: set[str]) -> int | None:
        """Backbone forward passes of one run of the phase; `sizes`: "train" and each evaluation set's size;
        `extracted`: the sets whose features are already cached (updated). None: not counted."""
        return None

    def run(self, phase: "Phase", context: PhaseContext) -> dict:
        """Run the phase on `context.model` (left as the phase ends) and return its record."""
        raise NotImplementedError


PHASE_KINDS: Registry[PhaseKind] = Registry("phase kind")
register_kind = PHASE_KINDS.register
phase_kind = PHASE_KINDS.get


def head_state(head: torch.nn.Module) -> dict:
    """A fingerprint of the head: its digest proves which head a phase started from."""
    tensors = [t.detach().cpu().contiguous() for t in head.state_dict().values()]
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in tensors)).hexdigest()[:16]
    norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))
    return {"head_sha256": digest, "head_norm": norm}


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def rng_states() -> dict:
    """Every generator training may draw from (augmentations, dropout), in types `torch.load(weights_only=True)`
    reads back."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """The generators as `rng_states` saw them."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):  # a rerun may see fewer GPUs
            torch.cuda.set_rng_state(state, device)
