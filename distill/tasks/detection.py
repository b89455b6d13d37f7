"""Object detection (the coco recipe, Table 13): batches of boxes do not fit the engine's image-to-tensor loop,
so this task runs the whole recipe itself (distill.detection.run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.tasks.base import Task

__all__ = ["DetectionTask"]


class DetectionTask(Task):
    """COCO box mAP@[.5:.95] ("map") is the primary metric; "map_50" is mAP at IoU 0.5."""

    name = "detection"
    primary_metric = "map"

    def run_recipe(self, cfg: DictConfig, *, run_dir: Path, callbacks=None, started: float | None = None) -> dict[str, Any]:
        from distill.detection.run import run_detection  # imported on use: it imports distill.train

        return run_detection(cfg, run_dir=run_dir, callbacks=callbacks, started=started)
