"""COCO box mAP of detections: torchmetrics' MeanAveragePrecision on the official COCO evaluation.

``map`` is the COCO mAP averaged over IoU 0.50:0.05:0.95 (the paper's Table 13 metric), ``map_50`` at IoU 0.5.
The evaluation runs on pycocotools, or on faster-coco-eval where only that one is installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torchmetrics.detection import MeanAveragePrecision

__all__ = ["coco_backend", "mean_average_precision"]

_SCALARS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100")


def coco_backend() -> str:
    """The installed COCO evaluation backend torchmetrics can use."""
    for module, name in (("pycocotools", "pycocotools"), ("faster_coco_eval", "faster_coco_eval")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise ModuleNotFoundError("COCO mAP needs pycocotools (pip install pycocotools) or faster-coco-eval")


def _metric_target(target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ground truth in torchmetrics' form; crowd regions are added with iscrowd=1 (matched, never counted)."""
    boxes, labels = target["boxes"].float(), target["labels"].long()
    crowd_boxes = target.get("crowd_boxes", boxes.new_zeros(0, 4)).float()
    crowd_labels = target.get("crowd_labels", labels.new_zeros(0)).long()
    return {"boxes": torch.cat([boxes, crowd_boxes]), "labels": torch.cat([labels, crowd_labels]),
            "iscrowd": torch.cat([torch.zeros(len(boxes), dtype=torch.long), torch.ones(len(crowd_boxes), dtype=torch.long)])}


def mean_average_precision(predictions: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]],
                           class_names: list[str] | None = None) -> dict[str, Any]:
    """COCO metrics of predictions ({"boxes" xyxy, "scores", "labels"}) against targets ({"boxes", "labels"}).

    Returns plain floats (-1 where COCO has no value, e.g. no small objects) and ``ap_per_class`` by class name
    (labels 1..K name class_names[label - 1]).
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets; expected one per image")
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=class_names is not None,
                                  backend=coco_backend())
    metric.update([{k: p[k].detach().cpu() for k in ("boxes", "scores", "labels")} for p in predictions],
                  [_metric_target(t) for t in targets])
    values = metric.compute()
    result: dict[str, Any] = {key: float(values[key]) for key in _SCALARS}
    if class_names is not None:
        classes = values["classes"].reshape(-1).tolist()
        per_class = values["map_per_class"].reshape(-1).tolist()
        result["ap_per_class"] = {class_names[int(label) - 1]: float(ap) for label, ap in zip(classes, per_class)
                                  if 1 <= int(label) <= len(class_names)}
    return result
