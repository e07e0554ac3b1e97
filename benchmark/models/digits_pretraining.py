"""The digits backbones the suite ships, and the recipe that made them, rerun deterministically on demand.

Jobs load the shipped files (package data, each verified against its pinned sha256): every machine
starts from the same weights. `lpft-bench pretrain digits` reruns the recipe on the pretraining pool
(disjoint from every downstream split) and says whether it reproduced the shipped digest."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .timm_models import create_model

DIGITS_PRETRAIN = "builtin:digits-rotation-pretrain"
DIGITS_UPRIGHT_PRETRAIN = "builtin:digits-upright-pretrain"
SHIPPED_DIR = Path(__file__).parent / "weights"
PRETRAIN_SEED = 0
PRETRAIN_THREADS = 1  # CPU kernels reduce in an order that depends on the thread count


@dataclass(frozen=True)
class DigitsPretraining:
    """How a shipped digits backbone was pretrained, and the file and digest it produced."""

    file: str
    sha256: str
    max_rotation: float
    epochs: int = 100
    lr: float = 3e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    batch_size: int = 64


DIGITS_PRETRAINING = {
    # Rotation augmentation up to ±90°: features meant to serve upright (ID) and rotated (OOD) digits alike,
    # the regime of Kumar et al.'s theory.
    DIGITS_PRETRAIN: DigitsPretraining("digits-resnet.safetensors",
                                       "b4e31cfca2bcb50fb5fbc1e8d01e634aaac980d56f53c7c821f0ac0c3e410210",
                                       max_rotation=90.0),
    # Upright only, like Ren et al.'s MNIST pretraining: the downstream rotation is then a real shift.
    DIGITS_UPRIGHT_PRETRAIN: DigitsPretraining("digits-mlp.safetensors",
                                               "4baf211a2f60b892bceaa0a436bd02cd3450642e87f1ffb70185f9be250417aa",
                                               max_rotation=0.0),
}


@contextmanager
def deterministic_cpu(threads: int = PRETRAIN_THREADS):
    """Deterministic algorithms and a fixed thread count for the duration, restored afterwards."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def pretrain_digits(spec) -> dict[str, torch.Tensor]:
    """The backbone `spec` describes, pretrained by its recipe from fixed seeds: its state without the classifier.

    Every random draw comes from generators local to this function, so nothing else in the process
    (another job, a test) changes the result."""
    from lpft_bench.datamodules.digits import pretraining_pool, rotate_randomly

    recipe = DIGITS_PRETRAINING[spec.weights]
    generator = torch.Generator().manual_seed(PRETRAIN_SEED)
    with deterministic_cpu(), torch.random.fork_rng():
        torch.manual_seed(PRETRAIN_SEED)  # timm initialises parameters from the global generator
        model = create_model(spec.timm_name, num_classes=10, **spec.timm_kwargs)
        images, labels = pretraining_pool()
        mean, std = spec.data_config["mean"][0], spec.data_config["std"][0]
        optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        steps_per_epoch = (len(images) + recipe.batch_size - 1) // recipe.batch_size
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=recipe.lr,
                                                       total_steps=recipe.epochs * steps_per_epoch)
        model.train()
        for _ in range(recipe.epochs):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), recipe.batch_size):
                batch = order[start : start + recipe.batch_size]
                x = (rotate_randomly(images[batch], 0.0, recipe.max_rotation, generator) - mean) / std
                loss = nn.functional.cross_entropy(model(x), labels[batch], label_smoothing=recipe.label_smoothing)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        model.reset_classifier(0)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}
