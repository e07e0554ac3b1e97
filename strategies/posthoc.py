"""What is done to trained weights without training: WiSE-FT interpolation, model soups, BatchNorm
re-estimation, and temperature scaling with its calibration error."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multiclass_calibration_error

from lpft_bench.datamodules import EvalSet

from .module import restrict_logits

ECE_BINS = 15


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every example, in eval mode; the model's train/eval modes are restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    for module, mode in modes.items():
        module.training = mode
    return torch.cat(logits), torch.cat(labels)


@torch.no_grad()
def forward_outputs(model: nn.Module, loader: DataLoader, device: torch.device):
    """Backbone features, logits and labels of every example, in eval mode (the model's modes restored after): one
    pass that feeds accuracy, calibration and feature change alike."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    features, logits, labels = [], [], []
    for x, y in loader:
        z = model.backbone(x.to(device))
        features.append(z.float().cpu())
        logits.append(model.head(z).float().cpu())
        labels.append(y)
    for module, mode in modes.items():
        module.training = mode
    return torch.cat(features), torch.cat(logits), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor, class_subset: Sequence[int] | None = None) -> float:
    """The validation loop's accuracy: top-1 over all examples, argmax restricted to the set's classes."""
    return float((restrict_logits(logits, class_subset).argmax(-1) == labels).float().mean())


def evaluate(model: nn.Module, eval_sets: Sequence[EvalSet], loader: Callable, device: torch.device) -> dict[str, float]:
    """Accuracy on each evaluation set (`loader(dataset)` gives its unsharded loader)."""
    return {s.name: accuracy(*predict(model, loader(s.dataset), device), s.class_subset) for s in eval_sets}


def interpolate(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 − α)·start + α·end for floating-point tensors, written so that α = 0 and α = 1 give the end points
    bitwise; integer buffers (BatchNorm's batch counts) come from the nearer end point."""
    nearer = start if alpha < 0.5 else end
    return {name: (1 - alpha) * start[name] + alpha * value if value.is_floating_point() else nearer[name].clone()
            for name, value in end.items()}


def average(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of floating-point tensors; integer buffers from the first state."""
    return {name: torch.stack([s[name] for s in states]).mean(0) if value.is_floating_point() else value.clone()
            for name, value in states[0].items()}


def reestimate_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device) -> None:
    """BatchNorm running statistics recomputed from scratch on `loader` (interpolated or averaged weights
    do not match interpolated or averaged statistics); a model without BatchNorm is left as it is."""
    update_bn(loader, model, device)


def greedy_soup(scores: Sequence[float], soup_score: Callable[[list[int]], float]) -> tuple[list[int], float]:
    """Wortsman et al.'s greedy soup: ingredients in decreasing order of their own held-out score, each kept
    only if the soup with it scores at least as well as without. It starts from the best ingredient alone,
    so it never scores below it. Returns the members' indices and the soup's score."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    members, best = [order[0]], scores[order[0]]
    for candidate in order[1:]:
        score = soup_score(members + [candidate])
        if score >= best:
            members, best = members + [candidate], score
    return members, best


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.double() / temperature, labels)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017), by L-BFGS on log T
    from T = 1. T = 1 is kept unless the fit strictly lowers the NLL, so it never raises it."""
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_temperature], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = _nll(logits, labels, log_temperature.exp())
        loss.backward()
        return loss

    optimiser.step(closure)
    temperature = float(log_temperature.detach().exp())
    if not _nll(logits, labels, temperature) < _nll(logits, labels, 1.0):
        return 1.0
    return temperature


def calibration(outputs: dict[str, tuple[torch.Tensor, torch.Tensor]], eval_sets: Sequence[EvalSet],
                fit_set: str, num_classes: int) -> dict:
    """Temperature scaling fitted on `fit_set` (ID validation), and per evaluation set the accuracy, NLL
    and expected calibration error (15 equal-width bins, L1) before and after it."""
    restricted = {s.name: (restrict_logits(outputs[s.name][0], s.class_subset), outputs[s.name][1]) for s in eval_sets}
    temperature = fit_temperature(*restricted[fit_set])
    sets = {}
    for s in eval_sets:
        logits, labels = restricted[s.name]
        row = {"split": s.split}
        for suffix, t in (("", 1.0), ("_calibrated", temperature)):
            probabilities = (logits.double() / t).softmax(-1)
            row[f"acc{suffix}"] = accuracy(logits / t, labels)
            row[f"nll{suffix}"] = float(_nll(logits, labels, t))
            row[f"ece{suffix}"] = float(multiclass_calibration_error(probabilities, labels, num_classes,
                                                                     n_bins=ECE_BINS, norm="l1"))
        sets[s.name] = row
    return {"method": "temperature scaling", "fit_on": fit_set, "temperature": temperature, "ece_bins": ECE_BINS,
            "sets": sets}
