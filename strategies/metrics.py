"""The quantities both papers reason about: energy at the start of FT, feature change, parameter distance."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def average_initial_energy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Ren et al.'s AIE: the mean over samples of ||e_y - softmax(f(x))||_2."""
    one_hot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return float((one_hot - logits.softmax(-1)).norm(dim=-1).mean())


def feature_change(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """Means over samples of ||z_T - z_0||, <z_T, z_0>, cos(z_T, z_0), ||z_T|| and ||z_0|| (rows are samples)."""
    before, after = before.double(), after.double()
    return {
        "distance": float((after - before).norm(dim=-1).mean()),
        "dot": float((after * before).sum(-1).mean()),
        "cosine": float(F.cosine_similarity(after, before, dim=-1).mean()),
        "norm": float(after.norm(dim=-1).mean()),
        "norm_before": float(before.norm(dim=-1).mean()),
    }


def parameter_distance(reference: dict[str, torch.Tensor], current: dict[str, torch.Tensor]) -> float:
    """Euclidean distance over all parameters the two share (callers pass backbone parameters: the head is excluded)."""
    total = torch.zeros((), dtype=torch.float64)
    for name, value in reference.items():
        total += ((current[name].detach().double().cpu() - value.double().cpu()) ** 2).sum()
    return float(total.sqrt())
