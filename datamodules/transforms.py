"""Image transform pipelines as data: lists of operations with their arguments.

A benchmark states its training and evaluation pipelines as such lists (what `lpft-bench protocol` prints
and the tests compare with the authors' configs); `compose` turns one into a torchvision transform. Sizes
are the backbone's input size; the paper's 256 -> 224 resize-then-crop keeps its ratio for other sizes.
"""
from __future__ import annotations

from typing import Sequence

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
        "to_tensor": transforms.ToTensor,
        "normalize": transforms.Normalize,
    }
    if step["op"] not in builders:
        raise ValueError(f"unknown transform operation {step['op']!r}; known: {', '.join(builders)}")
    return builders[step["op"]](**arguments)


def compose(pipeline: Sequence[dict]) -> transforms.Compose:
    return transforms.Compose([_build(step) for step in pipeline])


def is_random(pipeline: Sequence[dict]) -> bool:
    return any(step["op"] in ("random_crop", "random_resized_crop", "horizontal_flip") for step in pipeline)
