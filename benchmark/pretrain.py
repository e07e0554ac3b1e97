"""`lpft-bench pretrain digits`: rerun the recipe of the shipped digits backbones and compare digests.
`lpft-bench pretrain cifar10 --arch resnet18|resnet50`: Ren et al.'s Sup-C10 backbones, made here by their recipe."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DIGITS_BACKBONES = ("digits-resnet", "digits-mlp")


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", choices=["digits", "cifar10"],
                        help="digits: the shipped backbones again; cifar10: Sup-C10 (sup-c10-<arch>)")
    parser.add_argument("--backbones", nargs="+", choices=DIGITS_BACKBONES, default=list(DIGITS_BACKBONES),
                        help="digits: which shipped backbones")
    parser.add_argument("--arch", choices=["resnet18", "resnet50"], default="resnet18", help="cifar10: which network")
    parser.add_argument("--data-root", help="cifar10: root holding cifar-10-batches-py/ (default: $LPFT_BENCH_DATA)")
    parser.add_argument("--epochs", type=int, help="cifar10: fewer epochs than the recipe's 200 (a short schedule)")
    parser.add_argument("--subset", type=int, help="cifar10: only the first N training images of each class")
    parser.add_argument("--device", default="cpu", help="cifar10: torch device (cpu, cuda)")
    parser.add_argument("--out", help="where the weights go (digits default: pretrained; cifar10 default: "
                                      "$LPFT_BENCH_CHECKPOINTS, where the sup-c10 backbones read them)")


def main_pretrain(args: argparse.Namespace) -> int:
    return _pretrain_cifar10(args) if args.family == "cifar10" else _pretrain_digits(args)


def _pretrain_digits(args: argparse.Namespace) -> int:
    """Pretrain each backbone from its recipe into --out; exit 1 unless every digest equals the shipped one."""
    from safetensors.torch import save_file

    from lpft_bench.models import BACKBONES
    from lpft_bench.models.digits_pretraining import DIGITS_PRETRAINING, pretrain_digits
    from lpft_bench.storage import atomic_write, file_digest

    out, reproduced = Path(args.out or "pretrained"), True
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


def _pretrain_cifar10(args: argparse.Namespace) -> int:
    """Train Sup-C10 into --out (resuming an interrupted run there) and print the sha256 that identifies it."""
    from lpft_bench.datamodules.cifar import CIFAR10_DIR
    from lpft_bench.errors import UsageError
    from lpft_bench.models.cifar_pretraining import pretrain_cifar10
    from lpft_bench.models.weights import CHECKPOINT_DIR_ENV
    from lpft_bench.storage import file_digest

    data_root = args.data_root or os.environ.get("LPFT_BENCH_DATA")
    if not data_root:
        raise UsageError("say where CIFAR-10 is: --data-root DIR (holding cifar-10-batches-py/) or $LPFT_BENCH_DATA")
    out = args.out or os.environ.get(CHECKPOINT_DIR_ENV)
    if not out:
        raise UsageError(f"say where the weights go: --out DIR or ${CHECKPOINT_DIR_ENV} (where sup-c10-{args.arch} reads them)")
    for option in ("epochs", "subset"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1, not {getattr(args, option)}")
    started = time.time()
    path = pretrain_cifar10(args.arch, Path(data_root) / CIFAR10_DIR, Path(out), args.epochs, args.subset, args.device)
    print(f"sup-c10-{args.arch}: {path} sha256 {file_digest(path)} in {time.time() - started:.0f} s "
          f"(jobs on sup-c10-{args.arch} are identified by this digest)")
    return 0
