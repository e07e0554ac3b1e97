"""`lpft-bench pretrain digits`: rerun the recipe of the shipped digits backbones and compare digests."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

DIGITS_BACKBONES = ("digits-resnet", "digits-mlp")


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", choices=["digits"], help="which shipped backbones to pretrain again")
    parser.add_argument("--backbones", nargs="+", choices=DIGITS_BACKBONES, default=list(DIGITS_BACKBONES))
    parser.add_argument("--out", default="pretrained", help="folder the rerun weights are written into")


def main_pretrain(args: argparse.Namespace) -> int:
    """Pretrain each backbone from its recipe into --out; exit 1 unless every digest equals the shipped one."""
    from safetensors.torch import save_file

    from lpft_bench.models import BACKBONES
    from lpft_bench.models.digits_pretraining import DIGITS_PRETRAINING, pretrain_digits
    from lpft_bench.storage import atomic_write, file_digest

    out, reproduced = Path(args.out), True
    for name in args.backbones:
        spec = BACKBONES[name]
        recipe = DIGITS_PRETRAINING[spec.weights]
        started = time.time()
        state = pretrain_digits(spec)
        path = out / recipe.file
        atomic_write(path, lambda tmp: save_file(state, str(tmp)))
        digest = file_digest(path)
        same = digest == recipe.sha256
        reproduced &= same
        verdict = "reproduced the shipped weights" if same else (
            f"differs from the shipped sha256 {recipe.sha256} (CPU kernels differ between machines and library "
            "versions; jobs always load the shipped file)")
        print(f"{name}: {path} sha256 {digest} in {time.time() - started:.0f} s: {verdict}")
    return 0 if reproduced else 1
