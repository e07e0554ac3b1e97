"""Backbones of our own registered with timm, so they are built like any other timm model: the toy digits MLP
here, the CIFAR ResNet-18 in `cifar_resnet`. They are registered when the first model is built through
`create_model` (importing the package changes no global registry); every backbone of the suite is built
through it."""
from __future__ import annotations

import timm
import torch
from timm.models import register_model
from torch import nn

from .cifar_resnet import resnet18_cifar


class DigitsMLP(nn.Module):
    """Ren et al.'s toy backbone: 4 fully connected ReLU layers of width 128 on flattened images, then a classifier."""

    def __init__(self, in_chans: int = 1, img_size: int = 32, width: int = 128, depth: int = 4, num_classes: int = 10):
        super().__init__()
        layers, fan_in = [nn.Flatten()], in_chans * img_size * img_size
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.num_features = width
        self.classifier = nn.Linear(width, num_classes) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def digits_mlp(pretrained: bool = False, **kwargs) -> DigitsMLP:
    """Registered with timm so the toy backbone is built like any other (`timm.create_model("digits_mlp")`)."""
    for timm_option in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(timm_option, None)
    model = DigitsMLP(**kwargs)
    model.pretrained_cfg = {"input_size": (1, 32, 32), "mean": (0.5,), "std": (0.5,), "interpolation": "bilinear",
                            "crop_pct": 1.0, "num_classes": model.num_features}
    return model


_OWN_MODELS = (digits_mlp, resnet18_cifar)


def create_model(name: str, **kwargs) -> nn.Module:
    """`timm.create_model`, with our own backbones (the toy MLP, the CIFAR ResNet-18) registered first, once."""
    for builder in _OWN_MODELS:
        if builder.__name__ not in timm.list_models(builder.__name__):
            register_model(builder)
    return timm.create_model(name, **kwargs)
