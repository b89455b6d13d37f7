"""Tasks: what a recipe's models output and how they are fitted and judged (one module per task)."""

from distill.tasks.base import Task, predict
from distill.tasks.classification import ClassificationTask
from distill.tasks.detection import DetectionTask
from distill.tasks.embedding import EmbeddingTask
from distill.tasks.geolocation import GeolocationTask
from distill.tasks.multilabel import MultiLabelTask

__all__ = ["Task", "predict", "ClassificationTask", "DetectionTask", "EmbeddingTask", "GeolocationTask", "MultiLabelTask"]
