"""A classifier's parameters as layer groups ordered by depth: what layer-wise learning rates, surgical
fine-tuning, freeze-embed and gradual unfreezing act on."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from timm.models import group_parameters
from torch import nn

if TYPE_CHECKING:
    from .phases import Phase


STEM, NECK, HEAD = "stem", "neck", "head"


def _holds_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _stage_label(parameter: str) -> str:
    """A timm group's name from its first parameter: "layer1", "blocks.3"; timm's `stages.i` (ByobNet, as CLIP
    RN50's own `layer{i+1}`; ConvNeXt) is "layer{i+1}"; a parameter outside every stage (the backbone's own head,
    e.g. CLIP's attention pool and projection) is in the "neck"."""
    match = re.match(r"(layer\d+|blocks\.\d+|stages\.(\d+))\.", parameter)
    if match is None:
        return NECK
    return f"layer{int(match.group(2)) + 1}" if match.group(2) is not None else match.group(1)


def _timm_groups(backbone: nn.Module) -> dict[str, tuple[str, ...]]:
    """timm's own coarse grouping (`group_matcher`): the stem, each stage (the final norm with the last, as
    timm's layer decay has it), the backbone's head; each group's members are the outermost modules all of whose
    parameters are in it (`layer2`, `patch_embed`), or a parameter the backbone holds directly (a ViT's tokens)."""
    grouped = group_parameters(backbone, backbone.group_matcher(coarse=True))
    all_names = [name for name, _ in backbone.named_parameters()]
    groups: dict[str, tuple[str, ...]] = {}
    for index, names in enumerate(grouped.values()):
        label = STEM if index == 0 else _stage_label(names[0])
        if label in groups:
            raise ValueError(f"{type(backbone).__name__}: timm's groups give two groups named {label!r}")
        members, inside = [], set(names)
        for name in names:
            parts = name.split(".")
            # The outermost ancestor whose parameters all lie in this group (the parameter itself at worst).
            member = next(prefix for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                          if all(other in inside for other in all_names if _inside(other, prefix)))
            members.append(f"backbone.{member}")
        groups[label] = tuple(dict.fromkeys(members))
    return groups


def layer_groups(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Group name -> names of the model's submodules and parameters in it, bottom to top.

    Where the backbone has timm's `group_matcher` (ResNet, CLIP RN50's ByobNet, ViT, ConvNeXt, EfficientNet),
    its groups (`_timm_groups`) and the head. Otherwise, by the module layout:
    "stem": everything before the first stage (a ResNet's conv1/bn1, or its `stem`; a ViT's patch
    embedding with its class and position tokens); one group per stage (ResNet "layer1".."layer4",
    ViT and EfficientNet "blocks.0".."blocks.n"); "neck": backbone modules after the last stage that hold
    parameters or buffers (a ViT's final norm, EfficientNet's conv_head), when there are any; "head".
    """
    backbone = model.backbone
    if hasattr(backbone, "group_matcher"):
        return {**_timm_groups(backbone), HEAD: (HEAD,)}
    children = list(backbone.named_children())
    names = [name for name, _ in children]
    if "blocks" in names:
        first = last = names.index("blocks")
        stages = [f"blocks.{name}" for name, _ in backbone.blocks.named_children()]
    else:
        layers = [i for i, name in enumerate(names) if re.fullmatch(r"layer\d+", name)]
        if not layers:
            raise ValueError(f"{type(backbone).__name__} has neither ResNet stages (layer1, ...) nor `blocks` "
                             "to order its layers by depth")
        first, last = layers[0], layers[-1]
        stages = [names[i] for i in layers]
    # Direct parameters of the backbone are a ViT's class, register and position tokens: part of its embedding.
    stem = [name for name, _ in backbone.named_parameters(recurse=False)]
    stem += [name for name, child in children[:first] if _holds_state(child)]
    neck = [name for name, child in children[last + 1:] if _holds_state(child)]
    groups = {STEM: tuple(f"backbone.{name}" for name in stem)}
    groups.update({stage: (f"backbone.{stage}",) for stage in stages})
    if neck:
        groups[NECK] = tuple(f"backbone.{name}" for name in neck)
    groups[HEAD] = (HEAD,)
    return groups


def _inside(name: str, member: str) -> bool:
    return name == member or name.startswith(member + ".")


def grouped_parameters(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Every parameter of the model in exactly one layer group (bottom to top)."""
    groups = layer_groups(model)
    grouped: dict[str, list[tuple[str, nn.Parameter]]] = {group: [] for group in groups}
    for name, parameter in model.named_parameters():
        owners = [group for group, members in groups.items() if any(_inside(name, m) for m in members)]
        if len(owners) != 1:
            raise ValueError(f"parameter {name!r} belongs to layer groups {owners}, expected exactly one")
        grouped[owners[0]].append((name, parameter))
    return grouped


def group_modules(model: nn.Module, groups: list[str]) -> list[nn.Module]:
    """The submodules making up `groups` (a group's bare parameters, e.g. position tokens, have no module)."""
    members = layer_groups(model)
    modules = dict(model.named_modules())
    return [modules[m] for group in groups for m in members[group] if m in modules]


def frozen_throughout(phase: Phase, group_names: list[str]) -> list[str]:
    """Layer groups (of `group_names`, bottom to top) that `phase` never trains: all but `train_groups` (set
    by surgical phases only), and `frozen_groups`."""
    unknown = (set(phase.train_groups) | set(phase.frozen_groups)) - set(group_names)
    if unknown:
        raise ValueError(f"phase {phase.name!r} names layer groups {sorted(unknown)}; this model has {group_names}")
    frozen = set(phase.frozen_groups)
    if phase.train_groups:
        frozen |= set(group_names) - set(phase.train_groups)
    return [name for name in group_names if name in frozen]


def not_yet_unfrozen(phase: Phase, group_names: list[str], epoch: int) -> list[str]:
    """Gradual unfreezing with `unfreeze_every` = n: during `epoch` the top ⌊epoch / n⌋ + 1 groups train (the
    head alone first); the groups below them are not unfrozen yet."""
    if not phase.unfreeze_every:
        return []
    training = epoch // phase.unfreeze_every + 1
    return group_names[: max(len(group_names) - training, 0)]
