"""MobileNetV1 exactly as in Table 1 of Howard et al. (2017), with the paper's ablation variants.

The layer list is data (``_BLOCKS``): one row per depthwise-separable block of Table 1. The
width multiplier scales every channel count with ``int(c * width_multiplier)``; the resolution
multiplier is simply the input size, since the network is fully convolutional up to a global
average pool. ``separable=False`` is the full-convolution baseline of Table 4 and
``depth="shallow"`` the Shallow MobileNet of Table 5.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from distill.models.registry import register_builder

__all__ = ["MobileNetV1", "ConvBnReLU", "DepthwiseSeparable"]

STEM_CHANNELS = 32

# (stage name, output channels, stride) for the 13 blocks of Table 1. The last block has stride 1:
# the paper's table prints s2, but its output stays 7x7.
_BLOCKS = (
    ("stage1", 64, 1),
    ("stage2", 128, 2),
    ("stage2", 128, 1),
    ("stage3", 256, 2),
    ("stage3", 256, 1),
    ("stage4", 512, 2),
    ("stage4", 512, 1),
    ("stage4", 512, 1),
    ("stage4", 512, 1),
    ("stage4", 512, 1),
    ("stage4", 512, 1),
    ("stage5", 1024, 2),
    ("stage5", 1024, 1),
)
# Indices of the five 14x14x512 blocks that Shallow MobileNet (Table 5) removes.
_SHALLOW_REMOVED = frozenset(range(6, 11))
_STAGES = ("stage1", "stage2", "stage3", "stage4", "stage5")
# Downsampling of each stage's output relative to the input (the stem halves the resolution).
_REDUCTION = {"stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16, "stage5": 32}
DEPTHS = ("full", "shallow")


class ConvBnReLU(nn.Sequential):
    """Conv (no bias, BN follows) + BatchNorm + ReLU: the unit every layer of Table 1 is made of."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 conv (carries the stride) followed by a pointwise 1x1 conv, each with BN + ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.dw = ConvBnReLU(in_chs, in_chs, 3, stride=stride, groups=in_chs)
        self.pw = ConvBnReLU(in_chs, out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


def _check_args(width_multiplier, num_classes, separable, in_chans, dropout, depth) -> None:
    """Reject bad constructor arguments with a message that says what is allowed."""
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, numbers.Real):
        raise ValueError(
            f"width_multiplier must be a number > 0 (e.g. 1.0, 0.75, 0.5, 0.25), got {width_multiplier!r}"
        )
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0 (e.g. 1.0, 0.75, 0.5, 0.25), got {width_multiplier!r}")
    if int(STEM_CHANNELS * width_multiplier) < 1:
        raise ValueError(
            f"width_multiplier must be >= 1/{STEM_CHANNELS} so that every layer keeps a channel, "
            f"got {width_multiplier!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 0:
        raise ValueError(
            f"num_classes must be an int >= 0 (0 = no classifier, return pooled features), got {num_classes!r}"
        )
    if not isinstance(separable, bool):
        raise ValueError(f"separable must be True (MobileNet) or False (full-convolution baseline), got {separable!r}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, numbers.Integral) or in_chans < 1:
        raise ValueError(f"in_chans must be an int >= 1, got {in_chans!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if depth not in DEPTHS:
        raise ValueError(
            f"depth must be one of {list(DEPTHS)} ('shallow' = Table 5's Shallow MobileNet), got {depth!r}"
        )


@register_builder
class MobileNetV1(nn.Module):
    """MobileNetV1 of Table 1 with width multiplier, full-conv baseline and shallow variant.

    Layout: ``stem`` (conv 3x3 s2) -> ``stage1`` .. ``stage5`` (blocks at 112/56/28/14/7 px for a
    224 input) -> ``global_pool`` (adaptive, any resolution) -> ``dropout`` -> ``fc``.
    ``num_classes=0`` drops the classifier and ``forward`` returns the pooled features.
    """

    def __init__(
        self,
        width_multiplier: float = 1.0,
        num_classes: int = 1000,
        separable: bool = True,
        in_chans: int = 3,
        dropout: float = 0.0,
        depth: str = "full",
    ):
        super().__init__()
        _check_args(width_multiplier, num_classes, separable, in_chans, dropout, depth)
        self.config = {
            "width_multiplier": float(width_multiplier),
            "num_classes": int(num_classes),
            "separable": bool(separable),
            "in_chans": int(in_chans),
            "dropout": float(dropout),
            "depth": str(depth),
        }
        self.num_classes = int(num_classes)

        in_chs = int(STEM_CHANNELS * width_multiplier)
        self.stem = ConvBnReLU(int(in_chans), in_chs, 3, stride=2)
        stages: dict[str, list[nn.Module]] = {name: [] for name in _STAGES}
        for index, (stage, channels, stride) in enumerate(_BLOCKS):
            if depth == "shallow" and index in _SHALLOW_REMOVED:
                continue
            out_chs = int(channels * width_multiplier)
            if separable:
                block = DepthwiseSeparable(in_chs, out_chs, stride)
            else:
                block = ConvBnReLU(in_chs, out_chs, 3, stride=stride)
            stages[stage].append(block)
            in_chs = out_chs
        self.stage1 = nn.Sequential(*stages["stage1"])
        self.stage2 = nn.Sequential(*stages["stage2"])
        self.stage3 = nn.Sequential(*stages["stage3"])
        self.stage4 = nn.Sequential(*stages["stage4"])
        self.stage5 = nn.Sequential(*stages["stage5"])

        self.num_features = in_chs
        self.embedding_dim = self.num_classes if self.num_classes > 0 else self.num_features
        self.feature_info = [
            {"module": name, "num_chs": _out_channels(getattr(self, name)), "reduction": _REDUCTION[name]}
            for name in _STAGES
        ]
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(self.num_features, self.num_classes) if self.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map (B, num_features, H/32, W/32) after stage5."""
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        return self.stage5(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool + flatten; then dropout + fc unless ``pre_logits``."""
        x = self.global_pool(x)
        if pre_logits:
            return x
        return self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _out_channels(stage: nn.Sequential) -> int:
    """Output channels of a stage: those of its last conv."""
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels
