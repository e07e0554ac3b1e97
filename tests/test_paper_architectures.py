"""Every gradient strategy on every paper architecture (built without weights): layer groups come from timm's
group_matcher, so LLRD, surgical FT, freeze-embed and gradual unfreezing work on CLIP's RN50 and ViT-B/16 too."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lpft_bench.models import BACKBONES, Classifier, build_backbone
from lpft_bench.strategies import STRATEGIES, get_strategy
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.strategies.layers import layer_groups
from lpft_bench.strategies.module import AdaptationModule
from lpft_bench.strategies.trainability import ApplyTrainability

# Per architecture: its last block (reinit-ft) and a block surgical FT trains alone.
ARCHITECTURES = {
    "moco-v2-resnet50": {"reinit_blocks": ("layer4.2",), "block": "layer1"},
    "clip-resnet50": {"reinit_blocks": ("stages.3.2",), "block": "layer1"},
    "clip-vit-b16": {"reinit_blocks": ("blocks.11",), "block": "blocks.0"},
    "sup-c10-resnet18": {"reinit_blocks": ("layer4.1",), "block": "layer1"},  # Ren et al.'s CIFAR stem, 32 px
}


def _step(model, phase, pretrained):
    """One optimiser step of `phase` as its Trainer would take it (freezing callback included)."""
    policy = phase_kind(phase.trains).trainability
    module = AdaptationModule(model, phase, policy, [], 10, pretrained=pretrained)
    freezing = ApplyTrainability(policy, phase)
    freezing.on_train_epoch_start(SimpleNamespace(current_epoch=0), module)
    optimisers = module.configure_optimizers()
    optimiser = optimisers["optimizer"] if isinstance(optimisers, dict) else optimisers
    x, y = torch.randn(1, 3, 224, 224), torch.tensor([1])
    F.cross_entropy(module(x), y).backward()
    freezing.on_before_optimizer_step(None, module, optimiser)
    optimiser.step()
    optimiser.zero_grad()


@pytest.mark.slow  # a ResNet-50, CLIP RN50 and ViT-B/16, a step per gradient phase of every strategy
@pytest.mark.parametrize("backbone", sorted(ARCHITECTURES))
def test_every_strategy_takes_a_step_on_every_paper_architecture(backbone):
    torch.manual_seed(0)
    model = Classifier(build_backbone(BACKBONES[backbone], pretrained=False)[0], 10)
    groups_members = layer_groups(model)
    groups = list(groups_members)
    assert groups[0] == "stem" and groups[-1] == "head" and len(groups) >= 6
    pretrained = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    stepped, seen = [], set()
    for name, strategy in STRATEGIES.items():
        overrides = {k: v for k, v in ARCHITECTURES[backbone].items() if k in strategy.defaults}
        for phase in get_strategy(name).phases(overrides):
            # What trains and how fast, per layer group: phases alike in these take the same step.
            key = (phase.trains, phase.also_train, phase.train_groups, phase.frozen_groups, phase.unfreeze_every,
                   phase.lr_decay, phase.backbone_lr_ratio, bool(phase.l2sp_alpha))
            if not phase_kind(phase.trains).by_gradient or key in seen:
                continue
            seen.add(key)
            before = {k: v.clone() for k, v in model.named_parameters()}
            _step(model, phase, pretrained)
            changed = {k for k, v in model.named_parameters() if not torch.equal(before[k], v)}
            assert changed, (name, phase.name)
            if phase.train_groups:  # surgical FT: only its groups moved
                assert all(any(k.startswith(m + ".") for g in phase.train_groups for m in groups_members[g])
                           for k in changed), (name, sorted(changed)[:3])
            stepped.append(name)
    assert {"llrd", "surgical-ft", "freeze-embed", "gradual-unfreeze", "reinit-ft"} <= set(stepped)


def test_clip_rn50_groups_are_its_stem_four_stages_and_attention_pool():
    with torch.device("meta"):
        model = Classifier(build_backbone(BACKBONES["clip-resnet50"], pretrained=False)[0], 10)
    groups = layer_groups(model)
    assert list(groups) == ["stem", "layer1", "layer2", "layer3", "layer4", "neck", "head"]
    assert groups["neck"] == ("backbone.head",)  # CLIP's attention pool and projection, below the task head


def test_a_registered_backbone_untrained_on_purpose_is_another_backbone_and_a_vit_takes_another_input_size():
    from lpft_bench.errors import UsageError
    from lpft_bench.models import resolve_backbone

    small = {"random": True, "data_config": {"input_size": (3, 64, 64)}, "timm_kwargs": {"img_size": 64}}
    untrained = resolve_backbone("clip-vit-b16", options=small)
    assert untrained.weights is None and untrained.keep_head  # CLIP's projection stays
    assert untrained.meaning() != resolve_backbone("clip-vit-b16").meaning()
    assert untrained.meaning() != resolve_backbone("clip-vit-b16", options={**small, "timm_kwargs": {}}).meaning()
    model, data_config = build_backbone(untrained)
    assert data_config["input_size"] == (3, 64, 64)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 512)
    with pytest.raises(UsageError, match="comes with its own weights"):
        resolve_backbone("clip-vit-b16", options={"pretrained": True})
    with pytest.raises(UsageError, match="timm_kwargs must be a mapping"):
        resolve_backbone("clip-vit-b16", options={"timm_kwargs": 64})
