"""Image folders for examples/my-shift.yaml from CIFAR-10 class folders (`<dir>/{train,test}/<class>/*.jpg`):
train/ and test/ as they are, blur/ and noise/ two shifts of test/. `--per-class N` keeps the first N of each
(`--test-per-class M`: M of each test class, and of its shifts)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def shifted(image: Image.Image, shift: str, rng: np.random.Generator) -> Image.Image:
    if shift == "blur":
        return image.filter(ImageFilter.GaussianBlur(1.5))
    if shift == "noise":
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 25, size=(image.height, image.width, 3))
        return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path, help="folder with train/<class>/ and test/<class>/ images")
    parser.add_argument("target", type=Path)
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--test-per-class", type=int, default=None, help="default: --per-class")
    args = parser.parse_args()
    test_per_class = args.per_class if args.test_per_class is None else args.test_per_class
    rng = np.random.default_rng(0)
    for folder, (split, shift) in {"train": ("train", None), "test": ("test", None), "blur": ("test", "blur"),
                                   "noise": ("test", "noise")}.items():
        for class_dir in sorted(p for p in (args.source / split).iterdir() if p.is_dir()):
            out = args.target / folder / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            kept = args.per_class if split == "train" else test_per_class
            for path in sorted(class_dir.iterdir())[:kept]:
                shifted(Image.open(path).convert("RGB"), shift, rng).save(out / f"{path.stem}.png")


if __name__ == "__main__":
    main()
