"""SSD and Faster R-CNN (torchvision's detection code) on a MobileNetV1 or ResNet trunk, as in Table 13.

- SSD: heads on the stride-16 and stride-32 maps plus extra layers down to a 1x1 map (at most four, as in the
  paper's six maps at 300 px), 1x1 box predictors as in the paper's MobileNet SSD, default boxes from
  torchvision's ``DefaultBoxGenerator``.
- Faster R-CNN without a feature pyramid: region proposals on the stride-16 map, 300 proposals kept at test
  time (the paper's setting), the trunk's stride-32 stage applied to each 14x14 region crop as the box head; the
  crops are cut by ``RegionAlign`` (fast on small CPU maps).

``build_detector`` takes plain arguments only, so a detector is rebuilt from its checkpoint's spec.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import (
    AnchorGenerator,
    DefaultBoxGenerator,
)
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD, SSDScoringHead

from distill.models.detection.backbones import Trunk, build_trunk
from distill.models.detection.region_align import RegionAlign
from distill.models.mobilenet import ConvBnReLU
from distill.models.registry import register_builder

__all__ = ["DETECTOR_KINDS", "SSD_OPTIONS", "FASTER_RCNN_OPTIONS", "SSDFeatures", "SingleMapBackbone",
           "TopBoxHead", "build_ssd", "build_faster_rcnn", "build_detector", "backbone_maps",
           "faster_rcnn_partly_labelled_losses"]

DETECTOR_KINDS = ("ssd", "faster_rcnn")
# Depths of SSD's extra layers (the paper's MobileNet SSD: 512, 256, 256, 128), scaled by the width multiplier.
_EXTRA_DEPTHS = (512, 256, 256, 128)
_MIN_EXTRA_DEPTH = 16

SSD_OPTIONS = {"min_scale": 0.2, "max_scale": 0.95, "head_kernel": 1, "first_stride": 16, "score_thresh": 0.01,
               "detections_per_img": 100}
FASTER_RCNN_OPTIONS = {
    "anchor_sizes": (0.1, 0.2, 0.4, 0.8),       # anchor sides as fractions of the input size
    "roi_output_size": 14,                      # region crop fed to the stride-2 top stage (-> 7x7)
    "rpn_pre_nms_top_n_train": 2000, "rpn_post_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 1000, "rpn_post_nms_top_n_test": 300,   # 300 proposals, as in the paper
    "rpn_batch_size_per_image": 256, "box_batch_size_per_image": 512,
    "box_score_thresh": 0.05, "box_detections_per_img": 100,
}


def _map_sizes(size: int, num_extras: int, first_stride: int = 16) -> list[int]:
    """Side of each SSD map: from ``first_stride`` to 32, then halved (3x3 stride-2 convs round up) per extra layer."""
    sides = [math.ceil(size / first_stride)]
    while first_stride < 32:
        sides.append(math.ceil(sides[-1] / 2))
        first_stride *= 2
    for _ in range(num_extras):
        sides.append(math.ceil(sides[-1] / 2))
    return sides


def _num_extras(size: int) -> int:
    """Extra layers until the map is 1x1, at most four (300 px: 19, 10, 5, 3, 2, 1)."""
    count = 0
    while count < len(_EXTRA_DEPTHS) and _map_sizes(size, count)[-1] > 1:
        count += 1
    return count


class SSDFeatures(nn.Module):
    """SSD backbone: the trunk's maps from ``first_stride`` (16, or 8 on small inputs) to 32, then extra
    1x1-reduce / 3x3-stride-2 layers."""

    def __init__(self, trunk: Trunk, size: int, width_multiplier: float = 1.0, first_stride: int = 16):
        super().__init__()
        if first_stride not in (8, 16):
            raise ValueError(f"detector.ssd.first_stride must be 16 (the paper's MobileNet SSD) or 8, got {first_stride!r}")
        self.early, self.body, self.top = trunk.early, trunk.body, trunk.top
        self.first_stride = int(first_stride)
        channels = [trunk.early_channels] if first_stride == 8 else []
        channels += [trunk.body_channels, trunk.top_channels]
        extras = []
        for depth in _EXTRA_DEPTHS[:_num_extras(size)]:
            depth = max(_MIN_EXTRA_DEPTH, int(depth * width_multiplier))
            extras.append(nn.Sequential(ConvBnReLU(channels[-1], depth // 2, 1), ConvBnReLU(depth // 2, depth, 3, 2)))
            channels.append(depth)
        self.extras = nn.ModuleList(extras)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # Written for TorchScript too (a student exports with torch.jit.script): typed list, no generator expression.
        early = self.early(x)
        maps: list[torch.Tensor] = []
        if self.first_stride == 8:
            maps.append(early)
        maps.append(self.body(early))
        maps.append(self.top(maps[-1]))
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        out: dict[str, torch.Tensor] = OrderedDict()
        for index, level in enumerate(maps):
            out[str(index)] = level
        return out


class _SSDBoxPredictor(nn.Module):
    """Class logits and box offsets per default box, from one conv per map (kernel 1 in the paper's SSD)."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_classes: int, kernel: int):
        super().__init__()
        cls = [nn.Conv2d(c, num_classes * a, kernel, padding=kernel // 2) for c, a in zip(in_channels, num_anchors)]
        reg = [nn.Conv2d(c, 4 * a, kernel, padding=kernel // 2) for c, a in zip(in_channels, num_anchors)]
        for conv in cls + reg:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.classification_head = SSDScoringHead(nn.ModuleList(cls), num_classes)
        self.regression_head = SSDScoringHead(nn.ModuleList(reg), 4)

    def forward(self, x: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


class SingleMapBackbone(nn.Module):
    """Faster R-CNN backbone without a feature pyramid: the trunk's stride-16 map."""

    def __init__(self, trunk: Trunk):
        super().__init__()
        self.early, self.body = trunk.early, trunk.body
        self.out_channels = trunk.body_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.early(x))


class TopBoxHead(nn.Module):
    """Box head: the trunk's stride-32 stage on each region crop, then global average pooling."""

    def __init__(self, trunk: Trunk):
        super().__init__()
        self.top = trunk.top
        self.out_channels = trunk.top_channels

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.top(crops).mean(dim=(2, 3))


def build_ssd(trunk: Trunk, num_classes: int, size: int, *, width_multiplier: float = 1.0, min_scale: float = 0.2,
              max_scale: float = 0.95, head_kernel: int = 1, first_stride: int = 16, score_thresh: float = 0.01,
              detections_per_img: int = 100) -> SSD:
    """SSD at ``size`` x ``size`` for ``num_classes`` object classes (plus background)."""
    if not 0 < min_scale < max_scale <= 1:
        raise ValueError(f"SSD default-box scales must satisfy 0 < min_scale < max_scale <= 1, "
                         f"got min_scale={min_scale}, max_scale={max_scale}")
    if head_kernel not in (1, 3):
        raise ValueError(f"detector.ssd.head_kernel must be 1 (the paper's SSD) or 3, got {head_kernel!r}")
    features = SSDFeatures(trunk, size, width_multiplier, first_stride)
    levels = len(features.out_channels)
    anchors = DefaultBoxGenerator([[2]] + [[2, 3]] * (levels - 1), min_ratio=min_scale, max_ratio=max_scale)
    head = _SSDBoxPredictor(features.out_channels, anchors.num_anchors_per_location(), num_classes + 1, head_kernel)
    return SSD(features, anchors, (size, size), num_classes + 1, head=head, score_thresh=score_thresh,
               detections_per_img=detections_per_img, topk_candidates=400)


def build_faster_rcnn(trunk: Trunk, num_classes: int, size: int, *, anchor_sizes=FASTER_RCNN_OPTIONS["anchor_sizes"],
                      roi_output_size: int = 14, rpn_pre_nms_top_n_train: int = 2000,
                      rpn_post_nms_top_n_train: int = 2000, rpn_pre_nms_top_n_test: int = 1000,
                      rpn_post_nms_top_n_test: int = 300, rpn_batch_size_per_image: int = 256,
                      box_batch_size_per_image: int = 512, box_score_thresh: float = 0.05,
                      box_detections_per_img: int = 100) -> FasterRCNN:
    """Faster R-CNN resizing the shorter side to ``size`` (the longer to at most 5/3 of it, COCO's 600/1000)."""
    sides = tuple(max(4, round(fraction * size)) for fraction in anchor_sizes)
    if len(set(sides)) != len(sides):
        raise ValueError(f"detector.faster_rcnn.anchor_sizes={list(anchor_sizes)} give repeated anchor sides "
                         f"{sides} at {size} px; use distinct fractions")
    anchors = AnchorGenerator(sizes=(sides,), aspect_ratios=((0.5, 1.0, 2.0),))
    return FasterRCNN(
        SingleMapBackbone(trunk), num_classes=None, min_size=size, max_size=math.ceil(size * 5 / 3),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        box_roi_pool=RegionAlign("0", output_size=roi_output_size, sampling_ratio=2),
        box_head=TopBoxHead(trunk), box_predictor=FastRCNNPredictor(trunk.top_channels, num_classes + 1),
        box_batch_size_per_image=box_batch_size_per_image, box_score_thresh=box_score_thresh,
        box_detections_per_img=box_detections_per_img,
    )


@register_builder
def build_detector(kind: str, *, backbone: str, num_classes: int, size: int,
                   backbone_kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> nn.Module:
    """A detector from plain data; ``detector.spec`` keeps the arguments (what a checkpoint stores to rebuild it).

    ``backbone``: "mobilenet_v1" (``backbone_kwargs``: width_multiplier) or "resnet" (model_name);
    ``options``: keys of ``SSD_OPTIONS`` or ``FASTER_RCNN_OPTIONS``.
    """
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"detector.kind must be one of {list(DETECTOR_KINDS)}, got {kind!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1 (object classes, background excluded), got {num_classes!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ValueError(f"detector input size must be an int >= 32 pixels, got {size!r}")
    backbone_kwargs = dict(backbone_kwargs or {})
    options = dict(options or {})
    allowed = SSD_OPTIONS if kind == "ssd" else FASTER_RCNN_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown detector.{kind} option(s) {unknown}; allowed: {sorted(allowed)}")
    trunk = build_trunk(backbone, **backbone_kwargs)
    if kind == "ssd":
        width = float(backbone_kwargs.get("width_multiplier", 1.0))
        detector = build_ssd(trunk, num_classes, size, width_multiplier=width, **options)
    else:
        detector = build_faster_rcnn(trunk, num_classes, size, **options)
    detector.spec = {"kind": kind, "backbone": backbone, "num_classes": num_classes, "size": size,
                     "backbone_kwargs": backbone_kwargs,
                     "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}
    return detector


def backbone_maps(output: torch.Tensor | dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """A detector backbone's output as a list of maps (one for Faster R-CNN, one per level for SSD)."""
    if isinstance(output, torch.Tensor):
        return [output]
    return list(output.values())


def faster_rcnn_partly_labelled_losses(detector: FasterRCNN, images: list[torch.Tensor], targets: list[dict],
                                       labelled: list[bool]) -> dict[str, torch.Tensor]:
    """Faster R-CNN's training losses on a batch in which some images have no boxes known (``labelled`` False).

    Faster R-CNN takes an image without boxes for pure background, so such images are left out of the proposal and
    box losses, while the backbone and the proposal head still run on the whole batch: a batch's normalisation
    statistics are the whole batch's, and forward hooks on ``backbone`` and ``rpn.head`` (what the imitation terms
    read) see every image, the head's hook last. With no image labelled, every loss is 0.
    """
    if len(labelled) != len(images) or len(targets) != len(images):
        raise ValueError(f"{len(images)} images, {len(targets)} targets and {len(labelled)} labelled flags: "
                         f"one of each per image")
    prepared, prepared_targets = detector.transform(images, [dict(t) for t in targets])
    features = detector.backbone(prepared.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    keep = [index for index, known in enumerate(labelled) if known]
    if not keep:  # zero losses, as SSD gives such a batch, joined to the graph so a step can run on them alone
        zero = sum(level.sum() for level in features.values()) * 0.0
        losses = {name: zero for name in ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")}
    else:
        rows = torch.tensor(keep, device=prepared.tensors.device)
        subset = ImageList(prepared.tensors[rows], [prepared.image_sizes[index] for index in keep])
        subset_features = OrderedDict((name, level[rows]) for name, level in features.items())
        subset_targets = [prepared_targets[index] for index in keep]
        proposals, proposal_losses = detector.rpn(subset, subset_features, subset_targets)
        _, box_losses = detector.roi_heads(subset_features, proposals, subset.image_sizes, subset_targets)
        losses = {**box_losses, **proposal_losses}
    detector.rpn.head(list(features.values()))  # on every image, for the head imitation
    return losses
