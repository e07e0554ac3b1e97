"""What every benchmark's fake is made of: random images in the real file formats.

Each benchmark writes its own fake in its canonical layout (its `write_fake`; `datamodules.write_fake` finds
it by name). Fakes exercise the loaders' semantics (and let a user try a pipeline) without the real data:
random pixels, a few images per class, and where a benchmark has 1000 or 62 classes, only a few of them. Every
fake keeps the traps of the real thing: STL-10's monkeys, ImageNet-V2's integer folders, DomainNet's
non-alphabetical labels and CRLF lists, FMoW's images from after 2013, unmapped countries and regions other
than the three read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FAKE_SIZE = 32


def random_pixels(rng: np.random.Generator, size: int = FAKE_SIZE) -> np.ndarray:
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def write_images(folder: Path, count: int, rng: np.random.Generator, suffix: str, prefix: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{i:06d}{suffix}" for i in range(count)]
    for path in paths:
        Image.fromarray(random_pixels(rng)).save(path)
    return paths
