"""RoIAlign for a Faster R-CNN without a feature pyramid, fast on small CPU feature maps.

torchvision's CPU RoIAlign kernel samples every bin point by point, and its backward runs on one core: at the CPU
recipe's 8x8 map it was ~7x slower than this module, a sixth of the teacher's training step and a third of the
student's (benchmarks/README.md, "RoIAlign"). RoIAlign is linear in the map: each output bin averages bilinear
samples, and a bilinear weight is a row weight times a column weight. So an image's crops are one batched matrix
product of its map with per-region weight matrices, which runs multi-threaded forward and backward. Its cost grows
with the map's area, so larger maps, accelerators and adaptive sampling use torchvision's kernel.
The result equals torchvision's ``roi_align(..., aligned=False)`` up to float rounding (tests/test_region_align.py).
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align

__all__ = ["RegionAlign", "axis_weights", "MAX_AREA_RATIO_TRAINING", "MAX_AREA_RATIO_INFERENCE"]

# The matrix product costs H * W multiply-adds per output value and channel, the sampling kernel 4 * sampling_ratio^2.
# The product is used while that ratio stays within the crossover measured on 2 CPU cores (benchmarks/region_align.py):
# forward and backward, it was still 1.4x faster on a 38x38 map (ratio 90); forward only, 1.2x faster on a 16x16 map
# (ratio 16) and 0.7x on a 24x24 one.
MAX_AREA_RATIO_TRAINING = 90.0
MAX_AREA_RATIO_INFERENCE = 16.0


def axis_weights(start: Tensor, length: Tensor, size: int, out: int, sampling_ratio: int) -> Tensor:
    """(R, size, out): how much pixel line ``i`` (a row or a column) weighs in output bin ``j`` of each region.

    ``start`` and ``length`` (R,) are the regions' extent on this axis in feature-map pixels. The weights follow
    torchvision's RoIAlign (aligned=False): ``sampling_ratio`` points per bin at the centres of equal sub-bins,
    a point beyond one pixel outside the map counts zero, a point in the border pixel is clamped to it, and the
    bin is the mean of its points.
    """
    length = length.clamp(min=1.0)
    steps = (torch.arange(out * sampling_ratio, dtype=start.dtype, device=start.device) + 0.5) / sampling_ratio
    points = start[:, None] + steps[None, :] * (length / out)[:, None]
    valid = ((points >= -1.0) & (points <= float(size))).to(start.dtype)
    points = points.clamp(min=0.0)
    low = points.floor()
    at_edge = low >= size - 1
    low = low.clamp(max=float(size - 1))
    frac = torch.where(at_edge, torch.zeros_like(points), points - low)
    high = torch.where(at_edge, low, low + 1.0)
    weights = torch.zeros(points.shape[0], points.shape[1], size, dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, low.long()[:, :, None], ((1.0 - frac) * valid)[:, :, None])
    weights.scatter_add_(2, high.long()[:, :, None], (frac * valid)[:, :, None])
    return weights.view(points.shape[0], out, sampling_ratio, size).mean(dim=2).transpose(1, 2)


class RegionAlign(MultiScaleRoIAlign):
    """``MultiScaleRoIAlign`` over one feature map: the matrix product on small CPU maps, torchvision's kernel else."""

    def __init__(self, featmap_name: str, output_size: int, sampling_ratio: int) -> None:
        super().__init__([featmap_name], output_size=output_size, sampling_ratio=sampling_ratio)
        self.featmap_name = featmap_name
        self.side = int(output_size)
        # copied onto the module: TorchScript (the detector's export) reads no module-level floats
        self.max_ratio_training = float(MAX_AREA_RATIO_TRAINING)
        self.max_ratio_inference = float(MAX_AREA_RATIO_INFERENCE)

    def forward(self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        feature = x[self.featmap_name]
        height = feature.shape[-2]
        max_height = 1
        for shape in image_shapes:
            max_height = max(max_height, shape[0])
        # torchvision's rule: the map's stride relative to the batch's largest image, rounded to a power of two
        scale = 2.0 ** float(round(math.log(float(height) / float(max_height)) / math.log(2.0)))
        if self._separable(feature):
            return self._separable_align(feature, boxes, scale)
        rois: List[Tensor] = []
        for index, image_boxes in enumerate(boxes):
            rois.append(torch.cat([torch.full_like(image_boxes[:, :1], float(index)), image_boxes], dim=1))
        return roi_align(feature, torch.cat(rois), (self.side, self.side), spatial_scale=scale,
                         sampling_ratio=self.sampling_ratio, aligned=False)

    def _separable(self, feature: Tensor) -> bool:
        if feature.device.type != "cpu" or self.sampling_ratio <= 0:
            return False
        ratio = float(feature.shape[-2] * feature.shape[-1]) / float(4 * self.sampling_ratio * self.sampling_ratio)
        if torch.is_grad_enabled() and feature.requires_grad:
            return ratio <= self.max_ratio_training
        return ratio <= self.max_ratio_inference

    def _separable_align(self, feature: Tensor, boxes: List[Tensor], scale: float) -> Tensor:
        channels, height, width = feature.shape[1], feature.shape[2], feature.shape[3]
        crops: List[Tensor] = []
        for index, image_boxes in enumerate(boxes):
            region = image_boxes.detach().to(feature.dtype) * scale  # no gradient to the boxes, as torchvision's
            rows = axis_weights(region[:, 1], region[:, 3] - region[:, 1], height, self.side, self.sampling_ratio)
            cols = axis_weights(region[:, 0], region[:, 2] - region[:, 0], width, self.side, self.sampling_ratio)
            # weight of pixel (h, w) in bin (p, q): row weight times column weight
            kernel = (rows[:, :, None, :, None] * cols[:, None, :, None, :]).reshape(
                region.shape[0], height * width, self.side * self.side)
            pixels = feature[index].reshape(1, channels, height * width)
            crops.append(torch.matmul(pixels, kernel).view(region.shape[0], channels, self.side, self.side))
        return torch.cat(crops)
