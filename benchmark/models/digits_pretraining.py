"""The suite's own pretraining of the digits backbones, on a pool disjoint from every downstream split."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from lpft_bench.storage import atomic_write, cache_dir, meaning_hash

DIGITS_PRETRAIN = "builtin:digits-rotation-pretrain"
DIGITS_UPRIGHT_PRETRAIN = "builtin:digits-upright-pretrain"


@dataclass(frozen=True)
class DigitsPretraining:
    """How the suite pretrains a digits backbone on the pretraining pool (disjoint from every downstream split)."""

    max_rotation: float
    epochs: int = 100
    lr: float = 3e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1


DIGITS_PRETRAINING = {
    # Rotation augmentation: features meant to serve upright (ID) and rotated (OOD) digits alike.
    DIGITS_PRETRAIN: DigitsPretraining(max_rotation=90.0),
    # Upright only, like Ren et al.'s MNIST pretraining: the downstream rotation is then a real shift.
    DIGITS_UPRIGHT_PRETRAIN: DigitsPretraining(max_rotation=0.0),
}


def digits_pretraining_key(spec) -> str:
    from lpft_bench.datamodules.digits import IMAGE_SIZE, SPLIT_SEED

    recipe = DIGITS_PRETRAINING[spec.weights]
    return meaning_hash({"timm": spec.timm_name, "kwargs": spec.timm_kwargs, "data": spec.data_config,
                         "recipe": asdict(recipe), "image_size": IMAGE_SIZE, "split_seed": SPLIT_SEED})


def pretrained_digits_checkpoint(spec) -> Path:
    """Pretrain a digits backbone once (seeded) and cache it by the meaning of its recipe."""
    from lpft_bench.datamodules.digits import pretraining_pool, rotate_randomly

    recipe = DIGITS_PRETRAINING[spec.weights]
    path = cache_dir() / "backbones" / f"digits-{spec.timm_name}-{digits_pretraining_key(spec)}.safetensors"
    if path.exists():
        return path
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.create_model(spec.timm_name, num_classes=10, **spec.timm_kwargs)
    images, labels = pretraining_pool()
    mean, std = spec.data_config["mean"][0], spec.data_config["std"][0]
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * ((len(images) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=recipe.lr, total_steps=steps)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), 64):
            batch = order[start : start + 64]
            x = (rotate_randomly(images[batch], 0.0, recipe.max_rotation, generator) - mean) / std
            loss = nn.functional.cross_entropy(model(x), labels[batch], label_smoothing=recipe.label_smoothing)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.reset_classifier(0)
    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp)))
    return path
