"""Image transform pipelines as data: lists of operations with their arguments.

A benchmark states its training and evaluation pipelines as such lists (what `lpft-bench protocol` prints
and the tests compare with the authors' configs); `compose` turns one into a torchvision transform. Sizes
are the backbone's input size; the paper's 256 -> 224 resize-then-crop keeps its ratio for other sizes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

Pipeline = list[dict]


def op(name: str, **arguments) -> dict:
    return {"op": name, **arguments}


def resize(size: int | tuple[int, int], interpolation: str) -> dict:
    """An int resizes the shorter side to it; a (height, width) pair resizes to exactly that."""
    return op("resize", size=list(size) if isinstance(size, tuple) else size, interpolation=interpolation)


def center_crop(size: int) -> dict:
    return op("center_crop", size=size)


def random_crop(size: int, padding: int = 0) -> dict:
    # `padding` only when given: a pipeline without it keeps its description (and the jobs' identities).
    return op("random_crop", size=size, **({"padding": padding} if padding else {}))


def random_resized_crop(size: int, interpolation: str, scale: tuple[float, float] = (0.08, 1.0)) -> dict:
    # torchvision's default aspect ratios (3/4, 4/3), which every config here uses.
    return op("random_resized_crop", size=size, scale=list(scale), interpolation=interpolation)


def horizontal_flip() -> dict:
    return op("horizontal_flip", p=0.5)


def scaled(size: int, at_224: int) -> int:
    """`at_224` for a 224 input, in proportion for any other input size (256 -> 32 * 256 / 224 = 37)."""
    return round(size * at_224 / 224)


def padded_crop_pipelines(size: int) -> tuple[Pipeline, Pipeline]:
    """Ren et al.'s development code for its small datasets (CIFAR, STL-10; util/datasets.py get_std_transform,
    L83-99 at Joshua-Ren/P2_better_v0@895092c): training resized to size x size, a random crop of it padded by
    size/8 and a flip; evaluation resized to size x size (torchvision's default bilinear)."""
    return ([resize((size, size), "bilinear"), random_crop(size, padding=size // 8), horizontal_flip()],
            [resize((size, size), "bilinear")])


class ToTensor(transforms.ToTensor):
    """torchvision's ToTensor with the same operations (uint8 HWC -> float CHW, / 255) for 8-bit L and RGB
    images, without its per-call checks and API logging: a third of a 32x32 image's transform time."""

    def __call__(self, picture):
        if not isinstance(picture, Image.Image) or picture.mode not in ("L", "RGB"):
            return super().__call__(picture)
        pixels = torch.from_numpy(np.array(picture, np.uint8, copy=True))
        pixels = pixels.view(picture.size[1], picture.size[0], len(picture.getbands())).permute((2, 0, 1)).contiguous()
        return pixels.to(dtype=torch.get_default_dtype()).div(255)


class Normalize(transforms.Normalize):
    """torchvision's Normalize (a copy, minus mean, divided by std) with mean and std made tensors once, not
    at every call."""

    def __init__(self, mean, std, inplace: bool = False):
        super().__init__(mean, std, inplace)
        self._mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype != torch.float32 or tensor.ndim < 3 or (self._std == 0).any():
            return super().forward(tensor)
        return (tensor if self.inplace else tensor.clone()).sub_(self._mean).div_(self._std)


def _build(step: dict):
    arguments = {k: v for k, v in step.items() if k != "op"}
    if "interpolation" in arguments:
        arguments["interpolation"] = InterpolationMode(arguments["interpolation"])
    if "scale" in arguments:
        arguments["scale"] = tuple(arguments["scale"])
    builders = {
        "grayscale": transforms.Grayscale,
        "resize": transforms.Resize,
        "center_crop": transforms.CenterCrop,
        "random_crop": transforms.RandomCrop,
        "random_resized_crop": transforms.RandomResizedCrop,
        "horizontal_flip": transforms.RandomHorizontalFlip,
        "to_tensor": ToTensor,
        "normalize": Normalize,
    }
    if step["op"] not in builders:
        raise ValueError(f"unknown transform operation {step['op']!r}; known: {', '.join(builders)}")
    return builders[step["op"]](**arguments)


def compose(pipeline: Sequence[dict]) -> transforms.Compose:
    return transforms.Compose([_build(step) for step in pipeline])


def is_random(pipeline: Sequence[dict]) -> bool:
    return any(step["op"] in ("random_crop", "random_resized_crop", "horizontal_flip") for step in pipeline)
