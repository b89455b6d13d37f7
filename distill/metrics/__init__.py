"""Evaluation metrics of the recipes: face verification (LFW protocol), geolocation accuracy,
top-k classification accuracy, multi-label mean average precision and COCO box mAP."""

from distill.metrics.classification import most_confused_pairs, topk_accuracy
from distill.metrics.detection import coco_backend, mean_average_precision
from distill.metrics.geolocation import (
    EARTH_RADIUS_KM,
    GEO_SCALES_KM,
    GeolocationAccuracy,
    great_circle_km,
)
from distill.metrics.multilabel import multilabel_average_precision
from distill.metrics.verification import check_folds, tar_at_far, verify_distances, verify_pairs

__all__ = [
    "check_folds",
    "verify_pairs",
    "verify_distances",
    "tar_at_far",
    "great_circle_km",
    "EARTH_RADIUS_KM",
    "GEO_SCALES_KM",
    "GeolocationAccuracy",
    "topk_accuracy",
    "most_confused_pairs",
    "multilabel_average_precision",
    "mean_average_precision",
    "coco_backend",
]
