"""Mult-adds and parameters of a detector in the paper's convention (``distill.core.cost.profile``).

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

from distill.core.cost import CostProfile, profile
from distill.models.detection.detectors import backbone_maps, build_detector

__all__ = ["DetectorCostPath", "detector_cost", "table_13_rows"]

# The paper's Table 13 MobileNet rows: (framework, input size, mAP, B mult-adds, M params).
PAPER_TABLE_13_MOBILENET = (("ssd", 300, 19.3, 1.2, 6.8), ("faster_rcnn", 300, 16.4, 25.2, 6.1),
                            ("faster_rcnn", 600, 19.8, 30.5, 6.1))


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


def table_13_rows(num_classes: int = 90, width_multiplier: float = 1.0) -> list[dict]:
    """Our cost of the paper's three MobileNet detectors (COCO's 90 classes) beside the paper's figures."""
    rows = []
    for kind, size, paper_map, paper_mult_adds, paper_params in PAPER_TABLE_13_MOBILENET:
        detector = build_detector(kind, backbone="mobilenet_v1", num_classes=num_classes, size=size,
                                  backbone_kwargs={"width_multiplier": width_multiplier})
        cost = detector_cost(detector, size)
        rows.append({"detector": kind, "size": size, "mult_adds_b": cost.mult_adds / 1e9, "params_m": cost.params / 1e6,
                     "paper_map": paper_map, "paper_mult_adds_b": paper_mult_adds, "paper_params_m": paper_params})
    return rows


def main() -> None:
    """``python -m distill.models.detection.cost``: the MobileNet rows of Table 13, our count beside the paper's."""
    print("| framework | input | B mult-adds (ours / paper) | M params (ours / paper) | paper mAP |")
    print("|---|---|---|---|---|")
    for row in table_13_rows():
        name = "SSD" if row["detector"] == "ssd" else "Faster R-CNN"
        print(f"| {name} | {row['size']} | {row['mult_adds_b']:.2f} / {row['paper_mult_adds_b']} | "
              f"{row['params_m']:.2f} / {row['paper_params_m']} | {row['paper_map']}% |")


if __name__ == "__main__":
    main()
