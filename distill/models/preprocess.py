"""A loaded student's own preprocessing: pictures in, the tensor batch the student was trained on out.

``distill.load_student`` attaches a ``Preprocess`` built from the checkpoint's meta as ``model.preprocess``, so::

    model = distill.load_student("student.ckpt")
    output = model(model.preprocess("photo.jpg"))        # or a PIL image, an (H, W, 3) uint8 array, or a list

does what the data pipeline does to a test image: EXIF orientation applied, RGB, the central square (of
``crop_fraction`` of the shorter side) resized to the decoded ``image_size`` and then to the student's
``resolution`` (bilinear, antialiased), normalised with the checkpoint's ``mean``/``std``. A detector's meta
holds ``class_names`` and no normalisation: detectors resize and normalise themselves, so its ``preprocess``
gives a list of (3, H, W) 0..1 RGB tensors of any size.

Face students were trained on face crops (aligned by MTCNN when ``data.align=true``): give them face crops.

``predict(model, images)`` runs both steps and turns the output into what a user reads: class probabilities
(softmax; sigmoid per attribute for a multi-label student), unit-length embeddings, or a detector's detections
(``boxes``, ``scores``, ``labels`` and the ``names`` of the labels).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn

__all__ = ["Preprocess", "PreprocessError", "predict", "read_picture"]

Picture = Union[str, os.PathLike, Image.Image, np.ndarray]


class PreprocessError(ValueError):
    """A picture that cannot be prepared, or a checkpoint whose meta does not say how."""


def read_picture(picture: Picture) -> Image.Image:
    """An RGB PIL image of a path, a PIL image or an (H, W, 3) uint8 array, EXIF orientation applied."""
    if isinstance(picture, (str, os.PathLike)):
        path = Path(picture).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
                return image.convert("RGB")
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise PreprocessError(f"cannot decode image {path}: {error}") from error
    if isinstance(picture, Image.Image):
        return ImageOps.exif_transpose(picture).convert("RGB")
    if isinstance(picture, np.ndarray):
        if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
            raise PreprocessError(f"an array picture must be uint8 of shape (H, W, 3), got {picture.dtype} "
                                  f"{picture.shape}")
        return Image.fromarray(picture, "RGB")
    raise PreprocessError(f"expected a path, a PIL image or an (H, W, 3) uint8 array, got {type(picture).__name__}")


def _centre_square(image: Image.Image, fraction: float) -> Image.Image:
    """The central square of side ``fraction`` x the shorter side (what the data modules decode)."""
    w, h = image.size
    if fraction >= 1.0:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return image.crop((left, top, left + side, top + side))
    side = min(w, h) * fraction
    left, top = round((w - side) / 2), round((h - side) / 2)
    width = max(1, round(side))
    return image.crop((left, top, left + width, top + width))


class Preprocess:
    """``preprocess(picture or list of pictures)``: the student's input batch (see the module docstring)."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = dict(meta)
        self.detector = "class_names" in self.meta and "mean" not in self.meta
        self.resolution = self.meta.get("resolution")
        self.image_size = self.meta.get("image_size")
        self.crop_fraction = float(self.meta.get("crop_fraction") or 1.0)
        self.mean = self.meta.get("mean")
        self.std = self.meta.get("std")

    def __repr__(self) -> str:
        if self.detector:
            return "Preprocess(detector: RGB 0..1 tensors of any size)"
        return (f"Preprocess(resolution={self.resolution}, image_size={self.image_size}, "
                f"crop_fraction={self.crop_fraction}, mean={self.mean}, std={self.std})")

    def _check(self) -> None:
        missing = [key for key in ("resolution", "mean", "std") if self.meta.get(key) is None]
        if missing:
            raise PreprocessError(f"this student's checkpoint records no {', '.join(missing)} in its meta "
                                  f"(written by an older distill?): prepare its input yourself")

    def one(self, picture: Picture) -> torch.Tensor:
        """One picture: (3, resolution, resolution) normalised, or (3, H, W) in 0..1 for a detector."""
        image = read_picture(picture)
        if self.detector:
            return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
        self._check()
        image = _centre_square(image, self.crop_fraction)
        if self.image_size:
            size = int(self.image_size)
            image = image.resize((size, size), Image.BILINEAR)
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
        resolution = int(self.resolution)
        if tensor.shape[-2:] != (resolution, resolution):
            tensor = F.interpolate(tensor[None], size=(resolution, resolution), mode="bilinear", antialias=True,
                                   align_corners=False)[0]
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (tensor - mean) / std

    def __call__(self, pictures: Picture | Sequence[Picture]) -> torch.Tensor | list[torch.Tensor]:
        """A batch: (N, 3, resolution, resolution) even for one picture; a list of tensors for a detector."""
        batch = list(pictures) if isinstance(pictures, (list, tuple)) else [pictures]
        if not batch:
            raise PreprocessError("no pictures given")
        tensors = [self.one(picture) for picture in batch]
        return tensors if self.detector else torch.stack(tensors)


@torch.no_grad()
def predict(model: nn.Module, pictures: Picture | Sequence[Picture]) -> Any:
    """``model``'s answer for pictures, as a user reads it (``model`` from ``distill.load_student``).

    Classification and geolocation: class probabilities (N, K) (softmax). Multi-label: per-attribute
    probabilities (N, L) (sigmoid). Embedding: unit-length embeddings (N, D). Detection: one dict per picture
    with ``boxes`` (xyxy pixels of the picture), ``scores``, ``labels`` (1..K) and ``names`` of the labels.
    The model runs in eval mode on its own device; results come back on the CPU.
    """
    preprocess = getattr(model, "preprocess", None)
    if not isinstance(preprocess, Preprocess):
        raise PreprocessError("the model has no .preprocess: load it with distill.load_student(path)")
    meta = getattr(model, "distill_meta", {}) or {}
    inputs = preprocess(pictures)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        if preprocess.detector:
            names = list(meta.get("class_names") or [])
            detections = model([image.to(device) for image in inputs])
            out = []
            for found in detections:
                found = {key: value.detach().cpu() for key, value in found.items()}
                found["names"] = [names[int(label) - 1] if 1 <= int(label) <= len(names) else str(int(label))
                                  for label in found.get("labels", [])]
                out.append(found)
            return out
        output = model(inputs.to(device)).float().cpu()
    finally:
        model.train(was_training)
    task = meta.get("task")
    if task == "embedding":
        return F.normalize(output, dim=1)
    if task == "multilabel":
        return torch.sigmoid(output)
    return output.softmax(dim=1)
