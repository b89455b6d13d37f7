"""Detection models of the paper's Table 13: SSD and Faster R-CNN (torchvision) on a MobileNetV1 or ResNet trunk.

``build_detector`` is a registered builder, so a detector student is saved and loaded like any other student
(``distill.models.checkpoint``). Its cost in the paper's convention: ``distill.models.detection.cost``, also
``python -m distill.models.detection.cost`` (the paper's Table 13 rows).
"""

from distill.models.detection.backbones import Trunk, build_trunk
from distill.models.detection.detectors import (
    DETECTOR_KINDS,
    backbone_maps,
    build_detector,
)

__all__ = ["DETECTOR_KINDS", "Trunk", "backbone_maps", "build_detector", "build_trunk"]
