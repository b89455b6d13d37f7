"""Detector checkpoints in plain data (loadable with ``torch.load(weights_only=True)``), like student.ckpt.

A detector.ckpt holds {"format": "distill.detector", "version", "detector": the ``build_detector`` arguments,
"state_dict", "meta"}; ``load_detector`` rebuilds the detector and returns it in eval mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from distill.detection.detectors import build_detector
from distill.core.io import atomic_torch_save, read_torch_file

__all__ = ["DETECTOR_FORMAT", "save_detector", "load_detector"]

DETECTOR_FORMAT = "distill.detector"
_VERSION = 1


def save_detector(path: str | os.PathLike, detector: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write a detector made by ``build_detector`` (its ``spec``) with its weights and plain ``meta``."""
    spec = getattr(detector, "spec", None)
    if spec is None:
        raise ValueError("detector has no 'spec': build it with distill.detection.detectors.build_detector")
    payload = {"format": DETECTOR_FORMAT, "version": _VERSION, "detector": spec,
               "state_dict": {k: v.detach().cpu().clone() for k, v in detector.state_dict().items()},
               "meta": dict(meta or {})}
    return atomic_torch_save(payload, path)


def load_detector(path: str | os.PathLike) -> nn.Module:
    """Rebuild a saved detector (eval mode); ``model.distill_meta`` holds the checkpoint's meta."""
    path = Path(path)
    payload = read_torch_file(path, "detector checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != DETECTOR_FORMAT:
        raise ValueError(f"{path} is not a distill detector checkpoint (expected format {DETECTOR_FORMAT!r})")
    if payload.get("version") != _VERSION:
        raise ValueError(f"{path} has detector checkpoint version {payload.get('version')}, this distill reads {_VERSION}")
    spec = payload["detector"]
    detector = build_detector(spec["kind"], backbone=spec["backbone"], num_classes=spec["num_classes"],
                              size=spec["size"], backbone_kwargs=spec["backbone_kwargs"], options=spec["options"])
    try:
        detector.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit the detector {spec}: {error}") from error
    detector.distill_meta = payload.get("meta", {})
    return detector.eval()
