"""The CIFAR ResNet-18 Ren et al. pretrained at 32 px, registered with timm (by `timm_models.create_model`, when the first
model is built) so it is built like any other backbone.

Their `models/resnet_cifar.py` (Joshua-Ren/P2_better_v0 @895092c, lines 74-80) is the usual CIFAR variant: a
3×3 stride-1 stem without max pooling, so a 32 px image reaches layer4 at 4×4. That is timm's ResNet-18 with
the stem convolution and pooling replaced, which keeps timm's names, layer groups and classifier handling."""
from __future__ import annotations

from timm.models.resnet import BasicBlock, ResNet
from torch import nn

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the authors' util/datasets.py:92 normalisation for CIFAR, STL and DomainNet
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    for timm_option in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(timm_option, None)
    model = ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)
    model.conv1 = nn.Conv2d(model.conv1.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm initialises convs
    model.maxpool = nn.Identity()
    model.pretrained_cfg = {"input_size": (3, 32, 32), "mean": CIFAR_MEAN, "std": CIFAR_STD,
                            "interpolation": "bilinear", "crop_pct": 1.0, "classifier": "fc",
                            "num_classes": model.num_classes}
    return model
