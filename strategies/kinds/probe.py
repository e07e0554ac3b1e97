"""The paper's linear probe: a closed-form phase on cached eval-mode features of the untouched backbone."""
from __future__ import annotations

from functools import partial

import torch

from lpft_bench.strategies.callbacks import head_outputs
from lpft_bench.strategies.linear_probe import PROBE_SETTINGS, fit_logistic_path
from lpft_bench.strategies.module import restrict_logits
from lpft_bench.strategies.oracle import ORACLE_SEED, oracle_probe

from .base import PhaseContext, PhaseKind, head_state, register_kind


def training_features(context: PhaseContext, view: str):
    """The probe's training features: the evaluation transform's view, or (the authors' extraction) one view
    of each image through the training transform, drawn from the job's seed, so LP varies across seeds
    exactly where the benchmark augments."""
    dm = context.datamodule
    if view == "eval-transform":
        return context.features("train", dm.splits.train_eval)
    with torch.random.fork_rng(devices=[]):  # the transforms draw on the CPU generator; the job's RNG is untouched
        torch.manual_seed(dm.seed)
        # Cached as its own view, keyed on the seed: never mistaken for the evaluation view or another seed's.
        return context.features("train", dm.splits.train, view="train-transform", random_view=True)


class LogisticProbe(PhaseKind):
    """L2 logistic regression over the `probe_Cs` path, C chosen on the selection set; loads the chosen head."""

    name = "logistic-probe"
    fields = ("probe_Cs",)
    depends_on_training = False  # closed form on cached features: no batches, no diagnostics
    caches_features = True

    def validate(self, phase) -> None:
        if not phase.probe_Cs:
            raise ValueError(f"phase {phase.name!r}: a logistic probe needs its regularisation path probe_Cs")

    def keeps_backbone(self, phase) -> bool:
        return True

    def settings(self, phase, mode: str) -> dict:
        return {"probe": PROBE_SETTINGS[mode].describe()}

    def forward_passes(self, phase, sizes: dict[str, int], probe_size: int, extracted: set[str]) -> int:
        """Each set's features once, whatever the number of C values."""
        passes = sum(n for name, n in sizes.items() if name not in extracted)
        extracted.update(sizes)
        return passes

    def run(self, phase, context: PhaseContext) -> dict:
        model, dm = context.model, context.datamodule
        if not isinstance(model.head, torch.nn.Linear):
            raise ValueError("the logistic-regression probe fits a linear head; use an SGD head-probing phase for MLP heads")
        model.to(context.device)
        settings = PROBE_SETTINGS[dm.mode]
        features = {"train": training_features(context, settings.features_view)}
        for eval_set in dm.eval_sets:
            features[eval_set.name] = context.features(eval_set.name, eval_set.dataset)
        probe = fit_logistic_path(*features["train"], *features[dm.selection_set], phase.probe_Cs, dm.num_classes,
                                  settings)
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(probe.weight))
            model.head.bias.copy_(torch.from_numpy(probe.bias))
        # Where this is the job's last phase, its final outputs (calibration's): the chosen head on the cached
        # features in the batches of a pass, the logits a pass over the images would give, without that pass.
        context.final_outputs = {s.name: (head_outputs(model.head, torch.from_numpy(features[s.name][0]), context.device),
                                          torch.from_numpy(features[s.name][1])) for s in dm.eval_sets}
        row = {"epoch": 0}
        for eval_set in dm.eval_sets:
            x, y = features[eval_set.name]
            logits = restrict_logits(torch.from_numpy(probe.logits(x)), eval_set.class_subset)
            row[f"acc/{eval_set.name}"] = float((logits.argmax(-1).numpy() == y).mean())
        train_x, train_y = features["train"]
        row["train/acc"] = float((probe.logits(train_x).argmax(-1) == train_y).mean())
        # The features' ceiling on each OOD set: which regime the benchmark is in (strategies.oracle).
        # Everything it depends on beyond the set's features (which also fix the set's labels and groups).
        spec = {"oracle": {"Cs": phase.probe_Cs, "num_classes": dm.num_classes, "probe": settings.describe(),
                           "seed": ORACLE_SEED}}
        oracle = {s.name: context.feature_result(s.name, spec, partial(oracle_probe, *features[s.name], phase.probe_Cs,
                                                                        dm.num_classes, s.groups, settings))
                  for s in dm.eval_sets if s.split == "ood"}
        oracle = {name: result for name, result in oracle.items() if result is not None}
        return {"name": phase.name, "phase": phase.describe(), "epochs": [row], "end": head_state(model.head),
                "probe": {"C": probe.C, "path": probe.path}, "oracle": oracle}


register_kind(LogisticProbe())
