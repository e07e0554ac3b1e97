"""Image transform pipelines as data: lists of operations with their arguments.

A benchmark states its training and evaluation pipelines as such lists (what `lpft-bench protocol` prints
and the tests compare with the authors' configs); `compose` turns one into a torchvision transform. Sizes
are the backbone's input size; the paper's 256 -> 224 resize-then-crop keeps its ratio for other sizes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import math

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


class RandomResizedCrop(transforms.RandomResizedCrop):
    """torchvision's RandomResizedCrop on PIL images with the same draws from torch's generator (two uniforms per
    attempt, two integers; `random_` on a held tensor is what `torch.randint` runs) and the same crop and resize,
    without its per-call tensor allocations, logging and checks: a small image's crop at a third of the cost."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._log_ratio = [float(v) for v in torch.log(torch.tensor(self.ratio))]  # float32, as torchvision's
        self._uniform, self._integer = torch.empty(1), torch.empty(1, dtype=torch.long)
        self._resample = transforms.functional.pil_modes_mapping[self.interpolation]

    def _box(self, width: int, height: int) -> tuple[int, int, int, int]:
        area = height * width
        for _ in range(10):
            target_area = area * self._uniform.uniform_(self.scale[0], self.scale[1]).item()
            aspect_ratio = self._uniform.uniform_(*self._log_ratio).exp_().item()
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = self._integer.random_(0, height - h + 1).item()
                j = self._integer.random_(0, width - w + 1).item()
                return i, j, h, w
        in_ratio = width / height  # torchvision's fallback: the central crop
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def forward(self, img):
        if not isinstance(img, Image.Image) or not isinstance(self.size, (list, tuple)) or len(self.size) != 2:
            return super().forward(img)
        i, j, h, w = self._box(*img.size)
        cropped = img.crop((j, i, j + w, i + h))
        height, width = self.size
        return cropped if (h, w) == (height, width) else cropped.resize((width, height), self._resample)


class RandomHorizontalFlip(transforms.RandomHorizontalFlip):
    """torchvision's RandomHorizontalFlip on PIL images with the same draw (`torch.rand(1) < p`, compared in
    float32), without allocating a tensor per call."""

    def __init__(self, p: float = 0.5):
        super().__init__(p)
        self._p32 = float(torch.tensor(p, dtype=torch.float32))
        self._uniform = torch.empty(1)

    def forward(self, img):
        if not isinstance(img, Image.Image):
            return super().forward(img)
        if self._uniform.uniform_().item() < self._p32:
            return img.transpose(Image.FLIP_LEFT_RIGHT)
        return img


class ToTensor(transforms.ToTensor):
    """torchvision's ToTensor with the same operations (uint8 HWC -> float32 CHW, / 255, each correctly rounded)
    for 8-bit L and RGB images, done in numpy without its per-call checks and API logging: for a 32x32 image,
    a tenth of what torch's per-operation dispatch costs."""

    def __call__(self, picture):
        if (not isinstance(picture, Image.Image) or picture.mode not in ("L", "RGB")
                or torch.get_default_dtype() != torch.float32):
            return super().__call__(picture)
        width, height = picture.size
        pixels = np.frombuffer(picture.tobytes(), np.uint8).astype(np.float32)
        pixels /= np.float32(255)
        if picture.mode == "L":
            return torch.from_numpy(pixels.reshape(1, height, width))
        return torch.from_numpy(np.ascontiguousarray(pixels.reshape(height, width, 3).transpose(2, 0, 1)))

    def stack(self, pictures: Sequence) -> torch.Tensor | None:
        """What stacking this transform's result of each picture gives (B x C x H x W), converted at once;
        None where they differ in size or mode, or are not all 8-bit L or RGB images."""
        first = pictures[0]
        if (not all(isinstance(p, Image.Image) and p.mode == first.mode and p.size == first.size for p in pictures)
                or first.mode not in ("L", "RGB") or torch.get_default_dtype() != torch.float32):
            return None
        width, height = first.size
        pixels = np.frombuffer(b"".join(p.tobytes() for p in pictures), np.uint8).astype(np.float32)
        pixels /= np.float32(255)
        if first.mode == "L":
            return torch.from_numpy(pixels.reshape(len(pictures), 1, height, width))
        return torch.from_numpy(np.ascontiguousarray(pixels.reshape(len(pictures), height, width, 3).transpose(0, 3, 1, 2)))


class Normalize(transforms.Normalize):
    """torchvision's Normalize (a copy, minus mean, divided by std) with mean and std made tensors once, not
    at every call."""

    def __init__(self, mean, std, inplace: bool = False):
        super().__init__(mean, std, inplace)
        self._mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._std_has_zero = bool((self._std == 0).any())  # torchvision's error message, from its own path

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype != torch.float32 or tensor.ndim < 3 or self._std_has_zero:
            return super().forward(tensor)
        return (tensor if self.inplace else tensor.clone()).sub_(self._mean).div_(self._std)

    def batch_in_place(self, batch: torch.Tensor) -> torch.Tensor:
        """This transform of each image of a B x C x H x W batch (the same operations, element by element)."""
        if batch.dtype != torch.float32 or self._std_has_zero:
            return torch.stack([self(image) for image in batch])
        return batch.sub_(self._mean).div_(self._std)


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
        "random_resized_crop": RandomResizedCrop,
        "horizontal_flip": RandomHorizontalFlip,
        "to_tensor": ToTensor,
        "normalize": Normalize,
    }
    if step["op"] not in builders:
        raise ValueError(f"unknown transform operation {step['op']!r}; known: {', '.join(builders)}")
    return builders[step["op"]](**arguments)


def compose(pipeline: Sequence[dict]) -> transforms.Compose:
    return transforms.Compose([_build(step) for step in pipeline])


RANDOM_STEPS = (transforms.RandomCrop, transforms.RandomResizedCrop, transforms.RandomHorizontalFlip)


def split_for_batches(transform) -> tuple[Callable, Callable, tuple[ToTensor, Normalize] | None]:
    """`transform` as (its steps before the first random one, the rest up to the tensor conversion, and that
    conversion, ToTensor then Normalize, where it ends so): what an augmented set may cache per image, what it
    must draw per image, and what it may do for a whole batch at once."""
    steps = list(transform.transforms) if isinstance(transform, transforms.Compose) else [transform]
    first_random = next((i for i, step in enumerate(steps) if isinstance(step, RANDOM_STEPS)), len(steps))
    tail = None
    if len(steps) - first_random >= 2 and isinstance(steps[-2], ToTensor) and isinstance(steps[-1], Normalize):
        tail, steps = (steps[-2], steps[-1]), steps[:-2]
    return transforms.Compose(steps[:first_random]), transforms.Compose(steps[first_random:]), tail


def is_random(pipeline: Sequence[dict]) -> bool:
    return any(step["op"] in ("random_crop", "random_resized_crop", "horizontal_flip") for step in pipeline)
