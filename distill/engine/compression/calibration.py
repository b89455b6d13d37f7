"""Calibration data for int8 quantisation: the data module's training images, preprocessed as the student sees
them at test time (no augmentation, its resolution and normalisation), the first ``count`` of them in order."""

from __future__ import annotations

from typing import Any

import torch

from distill.core.deploy import TensorCalibrationReader

__all__ = ["calibration_batches", "calibration_reader"]


def calibration_batches(datamodule: Any, resolution: int, count: int = 512) -> list[torch.Tensor]:
    """Up to ``count`` training images at ``resolution`` as float32 CPU batches (the data's evaluation batch size)."""
    if count < 1:
        raise ValueError(f"calibration needs at least one image, got count={count}")
    batches, taken = [], 0
    for batch in datamodule.eval_dataloader("train", resolution=resolution):
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        images = images[: count - taken].to("cpu", torch.float32)
        batches.append(images)
        taken += len(images)
        if taken >= count:
            break
    if not batches:
        raise ValueError(f"{type(datamodule).__name__} has no training images to calibrate on")
    return batches


def calibration_reader(datamodule: Any, resolution: int, count: int = 512) -> TensorCalibrationReader:
    """ONNX Runtime's calibration reader over ``calibration_batches``."""
    return TensorCalibrationReader(calibration_batches(datamodule, resolution, count))
