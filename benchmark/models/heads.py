"""Task heads on top of a backbone's features."""
from __future__ import annotations

import torch
from torch import nn

from .backbones import feature_dim


class Classifier(nn.Module):
    """Backbone features followed by a task head (linear, or a 2-layer MLP)."""

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "linear", hidden: int = 256):
        super().__init__()
        self.backbone = backbone
        dim = feature_dim(backbone)
        if head == "linear":
            self.head = nn.Linear(dim, num_classes)
        elif head == "mlp":
            self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        else:
            raise ValueError(f"unknown head {head!r}; expected 'linear' or 'mlp'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
