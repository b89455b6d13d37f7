"""Mult-adds and parameters of a detector in the paper's convention (``distill.cost.profile``).

``profile`` can run a torchvision detector end to end, but the work of Faster R-CNN's box head then depends on
how many proposals survive non-maximum suppression on the probe image (few on a blank one). The paper counts the
box head on all 300 proposals, so the cost is profiled on a fixed path instead: the backbone, the heads of every
map and, for Faster R-CNN, the RPN head plus the box head on exactly ``num_proposals`` region crops. For SSD this
path holds every conv of the detector and equals the end-to-end profile.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.ssd import SSD

from distill.cost import CostProfile, profile
from distill.detection.detectors import backbone_maps

__all__ = ["DetectorCostPath", "detector_cost"]


class DetectorCostPath(nn.Module):
    """Runs the detector's convolutional work on a batch of one image, without pre- and post-processing."""

    def __init__(self, detector: nn.Module, num_proposals: int | None = None):
        super().__init__()
        if not isinstance(detector, (SSD, FasterRCNN)):
            raise ValueError(f"detector must be a torchvision SSD or FasterRCNN, got {type(detector).__name__}")
        self.detector = detector
        if num_proposals is None and isinstance(detector, FasterRCNN):
            num_proposals = int(detector.rpn._post_nms_top_n["testing"])
        self.num_proposals = num_proposals

    def forward(self, x: torch.Tensor):
        maps = backbone_maps(self.detector.backbone(x))
        if isinstance(self.detector, SSD):
            return self.detector.head(maps)
        rpn_out = self.detector.rpn.head(maps)
        height, width = x.shape[-2:]
        # Any boxes inside the image: the crop size is fixed, so the cost does not depend on where they are.
        boxes = x.new_tensor([[0.0, 0.0, width / 2, height / 2]]).repeat(self.num_proposals, 1)
        roi_heads = self.detector.roi_heads
        crops = roi_heads.box_roi_pool({"0": maps[0]}, [boxes], [(height, width)])
        return rpn_out, roi_heads.box_predictor(roi_heads.box_head(crops))


def detector_cost(detector: nn.Module, size: int, num_proposals: int | None = None) -> CostProfile:
    """Cost of one ``size`` x ``size`` image (Faster R-CNN: ``num_proposals`` crops, default its test setting, 300)."""
    return profile(DetectorCostPath(detector, num_proposals), input_size=(3, int(size), int(size)))
