"""Object detection with MobileNet backbones (the paper's Table 13): SSD and Faster R-CNN from torchvision on a
MobileNetV1 trunk, distilled from a ResNet-backbone teacher by feature imitation, scored by COCO mAP.

The cost of a detector (and the paper's Table 13 rows): ``distill.detection.cost``, also ``python -m distill.detection.cost``."""

from distill.detection.checkpoint import load_detector, save_detector
from distill.detection.coco_data import CocoDetectionDataset, CocoIndex, collate_detection, load_coco
from distill.detection.detectors import build_detector
from distill.detection.evaluate import evaluate_detector, mean_average_precision
from distill.detection.imitation import FeatureImitation, object_mask
from distill.detection.module import DetectionDistillModule

__all__ = ["CocoDetectionDataset", "CocoIndex", "DetectionDistillModule", "FeatureImitation", "build_detector",
           "collate_detection", "evaluate_detector", "load_coco", "load_detector",
           "mean_average_precision", "object_mask", "save_detector"]
