"""Classification trunks split for detection: ``early`` (to stride 8), ``body`` (8 to 16) and ``top`` (16 to 32).

Both detectors of Table 13 cut the network at stride 16. SSD feeds the stride-16 and stride-32 maps (plus extra
layers) to its heads, and on small inputs also the stride-8 map, as the original SSD does; Faster R-CNN runs its
region proposals on the stride-16 map and applies the top to every 14x14 region crop as the box head (so that, as
in the paper, the last MobileNet layers run once per proposal).
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import nn

from distill.models.mobilenet import MobileNetV1

__all__ = ["Trunk", "build_trunk", "mobilenet_v1_trunk", "timm_resnet_trunk", "BACKBONES"]

# timm ResNet-family attribute names: stem + layer1..2 (stride 8), layer3 (stride 16), layer4 (stride 32).
_RESNET_EARLY = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2")


@dataclass
class Trunk:
    """Three consecutive parts and the channels of their outputs (strides 8, 16 and 32)."""

    early: nn.Module
    body: nn.Module
    top: nn.Module
    early_channels: int
    body_channels: int
    top_channels: int


def mobilenet_v1_trunk(width_multiplier: float = 1.0) -> Trunk:
    """MobileNetV1 (Table 1) without its classifier: stem..stage3, stage4 (to conv 11, stride 16), stage5."""
    net = MobileNetV1(width_multiplier=width_multiplier, num_classes=0)
    channels = {info["module"]: info["num_chs"] for info in net.feature_info}
    return Trunk(nn.Sequential(net.stem, net.stage1, net.stage2, net.stage3), net.stage4, net.stage5,
                 channels["stage3"], channels["stage4"], channels["stage5"])


def timm_resnet_trunk(model_name: str = "resnet18") -> Trunk:
    """A timm ResNet (resnet10t, resnet18, resnet50, ...): stem..layer2, layer3, layer4."""
    if not timm.is_model(model_name):
        raise ValueError(f"backbone model_name={model_name!r} is not a timm model (see timm.list_models('resnet*'))")
    net = timm.create_model(model_name, pretrained=False, num_classes=0)
    missing = [name for name in (*_RESNET_EARLY, "layer3", "layer4") if not hasattr(net, name)]
    if missing:
        raise ValueError(f"backbone model_name={model_name!r} is not a ResNet-style timm model (no {missing}); "
                         f"use a ResNet such as resnet10t, resnet18, resnet34 or resnet50")
    channels = {info["module"]: info["num_chs"] for info in net.feature_info}
    return Trunk(nn.Sequential(*(getattr(net, name) for name in _RESNET_EARLY)), net.layer3, net.layer4,
                 channels["layer2"], channels["layer3"], channels["layer4"])


BACKBONES = {"mobilenet_v1": mobilenet_v1_trunk, "resnet": timm_resnet_trunk}


def build_trunk(name: str, **kwargs) -> Trunk:
    """``name``: "mobilenet_v1" (kwargs: width_multiplier) or "resnet" (kwargs: model_name)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    return BACKBONES[name](**kwargs)
