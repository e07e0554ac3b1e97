"""Steps in weight space (pure functions of stored models, after wise-ft and model soups), evaluated on every set."""
from __future__ import annotations

from lpft_bench.strategies.posthoc import average, evaluate, greedy_soup, interpolate, reestimate_batchnorm

from lpft_bench.strategies.selection import select_epoch

from .base import PhaseContext, PhaseKind, cpu_state, head_state, register_kind

AVERAGES = ("uniform", "greedy")


def _accuracies(context: PhaseContext) -> dict[str, float]:
    dm = context.datamodule
    return {f"acc/{name}": value for name, value in evaluate(context.model, dm.eval_sets, dm.eval_loader,
                                                             context.device).items()}


class Interpolation(PhaseKind):
    """WiSE-FT: (1 - α)·θ0 + α·θ1 for each α in `alphas`, θ0 the model at the start of the previous phase, θ1
    the model it ended with (BatchNorm statistics re-estimated, or interpolated too); α chosen on the
    selection set, and the model left there."""

    name = "weight-interpolation"
    needs_previous_start = True
    fields = ("alphas",)

    def validate(self, phase) -> None:
        if not phase.alphas or not all(0 <= a <= 1 for a in phase.alphas):
            raise ValueError(f"phase {phase.name!r}: trains='weight-interpolation' needs alphas in [0, 1]")

    def run(self, phase, context: PhaseContext) -> dict:
        if context.start_of_previous is None:
            raise ValueError(f"phase {phase.name!r} interpolates from the start of the phase before it: it cannot come first")
        model, dm = context.model.to(context.device), context.datamodule
        end = cpu_state(model)
        train_loader = dm.eval_loader(dm.splits.train_eval)

        def load(alpha: float) -> None:
            model.load_state_dict(interpolate(context.start_of_previous, end, alpha))
            if phase.reestimate_bn:
                reestimate_batchnorm(model, train_loader, context.device)

        rows = []
        for index, alpha in enumerate(phase.alphas):
            load(alpha)
            rows.append({"epoch": index, "alpha": alpha, **_accuracies(context)})
        chosen = select_epoch(rows, dm.selection_set)
        load(chosen["alpha"])
        return {"name": phase.name, "phase": phase.describe(), "epochs": rows, "alpha": chosen["alpha"],
                "end": head_state(model.head)}


class Soup(PhaseKind):
    """A model soup of the runs of strategy `ingredient` at each learning rate of `sweep_lrs` (the soup job's
    benchmark, backbone and seed), `average` "uniform" or "greedy". A soup of one ingredient is that model as
    it is; a soup of several has its BatchNorm statistics re-estimated on the un-augmented training data
    (unless the phase averages them with the weights)."""

    name = "weight-average"
    fields = ("average", "ingredient", "sweep_lrs")

    def validate(self, phase) -> None:
        if phase.average not in AVERAGES or not phase.ingredient or not phase.sweep_lrs:
            raise ValueError(f"phase {phase.name!r}: a weight average needs average in {AVERAGES}, an ingredient "
                             "strategy and its sweep_lrs")

    def ingredients(self, phase, strategy_hparams: dict, defaults_of) -> list[tuple[str, dict]]:
        """The ingredient strategy at each swept learning rate, with those of the soup's hyperparameters it takes."""
        takes = defaults_of(phase.ingredient)
        shared = {k: v for k, v in strategy_hparams.items() if k in takes}
        return [(phase.ingredient, {**shared, "lr": lr}) for lr in phase.sweep_lrs]

    def run(self, phase, context: PhaseContext) -> dict:
        dm = context.datamodule
        ingredients = self.ingredients(phase, context.hparams, context.strategy_defaults)
        trained = [context.train_ingredient(strategy, hparams) for strategy, hparams in ingredients]
        ids, states = [job_id for job_id, _ in trained], [state for _, state in trained]
        model = context.model.to(context.device)
        train_loader = dm.eval_loader(dm.splits.train_eval)
        selection = [s for s in dm.eval_sets if s.name == dm.selection_set]

        def load(members: list[int]) -> None:
            model.load_state_dict(average([states[i] for i in members]))
            if len(members) > 1 and phase.reestimate_bn:
                reestimate_batchnorm(model, train_loader, context.device)

        def selection_accuracy(members: list[int]) -> float:
            load(members)
            return evaluate(model, selection, dm.eval_loader, context.device)[dm.selection_set]

        scores = [selection_accuracy([i]) for i in range(len(states))]
        members = greedy_soup(scores, selection_accuracy)[0] if phase.average == "greedy" else list(range(len(states)))
        load(members)
        return {"name": phase.name, "phase": phase.describe(), "epochs": [{"epoch": 0, **_accuracies(context)}],
                "ingredients": [{"job_id": job_id, "lr": hparams["lr"], f"acc/{dm.selection_set}": score}
                                for job_id, (_, hparams), score in zip(ids, ingredients, scores)],
                "members": [ids[i] for i in members], "end": head_state(model.head)}


register_kind(Interpolation())
register_kind(Soup())
