"""Sup-C10: Ren et al.'s supervised CIFAR-10 backbones, pretrained here by their recipe, deterministically.

The recipe is their development code's (Joshua-Ren/P2_better_v0 @895092c16eaee75068bec844163335420b72000b):
- bashes/PT_C10_Res18.sh:26-30 and bashes/PT_C10_Res50.sh:26-30: `main_PT.py --batch_size 128 --dataset cifar10
  --loss_type ce --epochs 200`, `--figsize 32` (ResNet-18, the CIFAR stem of models/resnet_cifar.py:74-80) or
  `--figsize 224 --model resnet50` (models/resnet.py:356, torchvision's ImageNet ResNet-50);
- main_PT.py:53,57,59,61,63: lr 1e-3 (neither script sets it), weight decay 5e-4, min_lr 1e-6, no warmup, cosine;
  util/general.py:148-150: SGD, momentum 0.9, Nesterov, CosineAnnealingLR(T_max=epochs, eta_min=min_lr), stepped
  once per epoch (engine_PT.py:52); main_PT.py:140-146: shuffled, drop_last=True; main_PT.py:178-179: cross-entropy;
- util/datasets.py:87-93: Resize(figsize), RandomCrop(figsize, padding=figsize/8) (zero fill), horizontal flip,
  Normalize(CIFAR mean/std).
Ours, unverifiable against theirs: main_PT.py:119-120 draws a random seed when given seed 0; here every draw comes
from seed 0 through generators of this module, with deterministic algorithms on one CPU thread (or CUDA's
deterministic kernels), and augmentation runs on tensors (bilinear upsampling without antialiasing: upscaling).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .timm_models import create_model
from .cifar_resnet import CIFAR_MEAN, CIFAR_STD
from .digits_pretraining import deterministic_cpu

CIFAR_PRETRAIN_SEED = 0
RESUME_SUFFIX = ".resume.pt"


@dataclass(frozen=True)
class CifarPretraining:
    """One architecture's recipe and the canonical file its result is saved as."""

    timm_name: str
    image_size: int
    file: str
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    min_lr: float = 1e-6


CIFAR_PRETRAINING = {
    "resnet18": CifarPretraining("resnet18_cifar", 32, "sup-c10-resnet18.safetensors"),
    "resnet50": CifarPretraining("resnet50", 224, "sup-c10-resnet50.safetensors"),
}


def training_images(cifar_dir: Path, subset: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10's training images (uint8, N×3×32×32) and labels; `subset`: the first N of each class in file order."""
    from lpft_bench.datamodules.cifar import read_cifar10

    dataset = read_cifar10(cifar_dir, train=True)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(dataset.targets)
    if subset is not None:
        keep = torch.cat([torch.nonzero(labels == c).flatten()[:subset] for c in range(10)]).sort().values
        images, labels = images[keep], labels[keep]
    return images, labels


def augment(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """The authors' train transform on a uint8 batch: resize, zero-padded random crop, flip, normalise."""
    x = images.float() / 255
    if size != x.shape[-1]:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    pad = size // 8
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=generator).tolist()
    x = torch.stack([p[:, top:top + size, left:left + size] for p, (top, left) in zip(padded, offsets)])
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    mean, std = torch.tensor(CIFAR_MEAN)[:, None, None], torch.tensor(CIFAR_STD)[:, None, None]
    return (x - mean) / std


def _resume_state(path: Path, meaning: dict) -> dict | None:
    """The last finished epoch's state, if it belongs to this very run (recipe, subset, epochs)."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if state.get("meaning") == json.dumps(meaning, sort_keys=True) else None


def pretrain_cifar10(arch: str, cifar_dir: Path, out: Path, epochs: int | None = None, subset: int | None = None,
                     device: str = "cpu", show_progress: bool = True) -> Path:
    """Train `arch` by the recipe, resuming from `out/<file>.resume.pt` (written after every epoch) after an
    interruption; save the backbone without its classifier as `out/<file>` (safetensors) and return that path.
    Every random draw comes from seed 0 through generators local to this run."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from lpft_bench.errors import UsageError
    from lpft_bench.storage import atomic_write

    recipe = CIFAR_PRETRAINING[arch]
    epochs = epochs or recipe.epochs
    images, labels = training_images(cifar_dir, subset)
    steps = len(images) // recipe.batch_size  # drop_last, as the authors' loader
    if steps == 0:
        raise UsageError(f"{len(images)} training images make no batch of {recipe.batch_size}; use a larger --subset")
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    meaning = {"recipe": asdict(recipe), "epochs": epochs, "subset": subset, "seed": CIFAR_PRETRAIN_SEED}
    resume_path = out / (recipe.file + RESUME_SUFFIX)
    generator = torch.Generator().manual_seed(CIFAR_PRETRAIN_SEED)
    with deterministic_cpu(), torch.random.fork_rng():
        torch.manual_seed(CIFAR_PRETRAIN_SEED)  # timm initialises parameters from the global generator
        model = create_model(recipe.timm_name, num_classes=10).to(device)
        optimiser = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay, nesterov=True)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs, eta_min=recipe.min_lr)
        start = 0
        resumed = _resume_state(resume_path, meaning)
        if resumed is not None:
            model.load_state_dict(resumed["model"])
            optimiser.load_state_dict(resumed["optimiser"])
            schedule.load_state_dict(resumed["schedule"])
            generator.set_state(resumed["generator"])
            start = resumed["epoch"]
        bar = tqdm(total=epochs * steps, initial=start * steps, desc=f"sup-c10-{arch}", unit="step",
                   disable=not show_progress, dynamic_ncols=True)
        model.train()
        for epoch in range(start, epochs):
            order = torch.randperm(len(images), generator=generator)
            for step in range(steps):
                batch = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                x = augment(images[batch], recipe.image_size, generator).to(device)
                loss = nn.functional.cross_entropy(model(x), labels[batch].to(device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            schedule.step()
            state = {"epoch": epoch + 1, "meaning": json.dumps(meaning, sort_keys=True), "model": model.state_dict(),
                     "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                     "generator": generator.get_state()}
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(resume_path, lambda tmp: torch.save(state, tmp))
        bar.close()
        model.reset_classifier(0)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = out / recipe.file
    atomic_write(path, lambda tmp: save_file(weights, str(tmp)))
    resume_path.unlink(missing_ok=True)
    return path
