"""Synthetic detection scenes written as a real COCO dataset (PNG files + instances JSON), the coco recipe's default.

Each scene has one to ``max_objects`` shapes of a handful of classes (circle, square, triangle, cross, ring,
diamond) on a textured, cluttered background. The class is the outline plus a typical colour, jittered per object by
``colour_jitter`` (a cue that makes the classes learnable in the few hundred steps a CPU run affords); the texture
(solid, stripes, checker, dots) varies freely, sizes span ``min_scale``..``max_scale`` of the image side with aspect
jitter, and later shapes may cover up to 40% of earlier ones' boxes (occlusion). Boxes are the tight boxes of each
shape's pixels, ``area`` its visible pixels. Scene i of a split depends only on (seed, split, i).

The folder is built under a temporary name and renamed when complete, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SHAPES", "TEXTURES", "render_scene", "shape_mask", "write_synthetic_coco"]

# The data cache key holds a digest of this module's source (distill.data.array_store.source_digest): any change to
# the rendering writes the scenes again.
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
TEXTURES = ("solid", "stripes", "checker", "dots")
_MAX_COVER = 0.4       # a new shape may cover at most this share of an earlier shape's box
_PLACEMENT_TRIES = 20
_MANIFEST = "manifest.json"
# A typical colour per class (jittered per object).
_CLASS_RGB = np.array([(220, 60, 50), (50, 170, 70), (60, 90, 220), (230, 200, 40), (200, 70, 210), (40, 200, 210)],
                      dtype=np.float64)


def shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of a shape in local coordinates u, v in [-1, 1] (the shape touches all four sides)."""
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if kind == "triangle":  # apex up, base on v = 1
        return (np.abs(u) <= (v + 1.0) / 2.0) & (v <= 1.0)
    if kind == "cross":
        return ((np.abs(u) <= 0.34) | (np.abs(v) <= 0.34)) & (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if kind == "ring":
        radius = u * u + v * v
        return (radius <= 1.0) & (radius >= 0.3)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def _texture(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """0/1 pattern over pixel coordinates: which of the shape's two colours each pixel takes."""
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    period = rng.uniform(3.0, 8.0)
    if kind == "solid":
        return np.zeros(np.broadcast_shapes(xs.shape, ys.shape))
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        return (np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period) > 0).astype(float)
    if kind == "checker":
        return ((np.floor(xs / period) + np.floor(ys / period)) % 2).astype(float)
    return ((np.sin(xs * 2 * np.pi / period) * np.sin(ys * 2 * np.pi / period)) > 0.5).astype(float)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour gradient with noise and a few thin clutter strokes, float (size, size, 3) in 0..255."""
    corners = rng.uniform(40, 220, size=(2, 2, 3))
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    s = np.linspace(0.0, 1.0, size)[None, :, None]
    image = (corners[0, 0] * (1 - t) * (1 - s) + corners[0, 1] * (1 - t) * s
             + corners[1, 0] * t * (1 - s) + corners[1, 1] * t * s)
    image = image + rng.normal(0.0, 8.0, size=(size, size, 3))
    for _ in range(rng.integers(2, 6)):
        x0, y0, x1, y1 = rng.uniform(0, size, size=4)
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        cols = np.clip(np.linspace(x0, x1, steps).astype(int), 0, size - 1)
        rows = np.clip(np.linspace(y0, y1, steps).astype(int), 0, size - 1)
        image[rows, cols] = rng.uniform(0, 255, size=3)
    return image


def _place(rng, size, side, boxes) -> tuple[float, float, float, float] | None:
    """A box for a new shape that covers at most _MAX_COVER of any earlier box; None if none was found."""
    aspect = float(np.exp(rng.uniform(-0.25, 0.25)))
    w, h = min(side * aspect, size - 1.0), min(side / aspect, size - 1.0)
    for _ in range(_PLACEMENT_TRIES):
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        box = (x0, y0, x0 + w, y0 + h)
        if all(_cover(box, other) <= _MAX_COVER for other in boxes):
            return box
    return None


def _cover(box, other) -> float:
    """Share of ``other``'s area that ``box`` covers."""
    iw = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    ih = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    return iw * ih / ((other[2] - other[0]) * (other[3] - other[1]))


def render_scene(rng: np.random.Generator, *, size: int, num_classes: int, max_objects: int,
                 min_scale: float, max_scale: float, colour_jitter: float = 40.0) -> tuple[np.ndarray, list[dict]]:
    """One scene: (uint8 image (size, size, 3), objects [{"label" 0-based, "bbox" [x, y, w, h], "area"}])."""
    image = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int64)  # which object each pixel shows
    placed: list[tuple[int, tuple[float, float, float, float]]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(num_classes))
        box = _place(rng, size, rng.uniform(min_scale, max_scale) * size, [b for _, b in placed])
        if box is None:
            continue
        x0, y0, x1, y1 = box
        cols = np.arange(int(np.floor(x0)), min(size, int(np.ceil(x1))))
        rows = np.arange(int(np.floor(y0)), min(size, int(np.ceil(y1))))
        u = ((cols + 0.5) - (x0 + x1) / 2) / ((x1 - x0) / 2)
        v = ((rows + 0.5) - (y0 + y1) / 2) / ((y1 - y0) / 2)
        inside = shape_mask(SHAPES[label], u[None, :], v[:, None])
        if inside.sum() < 4:
            continue
        colour = np.clip(_CLASS_RGB[label] + rng.normal(0.0, colour_jitter, size=3), 0, 255)
        pattern = _texture(rng, cols[None, :].astype(float), rows[:, None].astype(float))[..., None]
        fill = colour * (1.0 - pattern * rng.uniform(0.35, 0.7))
        region = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        region[inside] = np.broadcast_to(fill, inside.shape + (3,))[inside]
        owner[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1][inside] = len(placed)
        ys, xs = np.nonzero(inside)
        tight = (float(cols[xs.min()]), float(rows[ys.min()]), float(cols[xs.max()] + 1), float(rows[ys.max()] + 1))
        placed.append((label, tight))
    objects = []
    for index, (label, (x0, y0, x1, y1)) in enumerate(placed):
        objects.append({"label": label, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((owner == index).sum())})
    return np.clip(image, 0, 255).astype(np.uint8), objects


def write_synthetic_coco(root: str | os.PathLike, splits: dict[str, int], *, num_classes: int = 4,
                         image_size: int = 128, max_objects: int = 4, min_scale: float = 0.15,
                         max_scale: float = 0.5, colour_jitter: float = 40.0,
                         seed: int = 0) -> dict[str, Path]:
    """Write ``root/images/<split>/*.png`` and ``root/annotations/<split>.json``; returns split -> JSON path.

    A complete folder (its manifest exists) is reused as it is.
    """
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be 1..{len(SHAPES)} (shapes: {', '.join(SHAPES)}), got {num_classes}")
    if max_objects < 1 or image_size < 32 or not 0 < min_scale <= max_scale < 1 or colour_jitter < 0:
        raise ValueError(f"need max_objects >= 1, image_size >= 32, 0 < min_scale <= max_scale < 1 and "
                         f"colour_jitter >= 0; got max_objects={max_objects}, image_size={image_size}, "
                         f"scales {min_scale}..{max_scale}, colour_jitter={colour_jitter}")
    root = Path(root)
    annotations = {split: root / "annotations" / f"{split}.json" for split in splits}
    if (root / _MANIFEST).is_file():
        return annotations
    root.parent.mkdir(parents=True, exist_ok=True)
    temporary = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        categories = [{"id": k + 1, "name": SHAPES[k], "supercategory": "shape"} for k in range(num_classes)]
        for split_id, (split, count) in enumerate(splits.items()):
            (temporary / "images" / split).mkdir(parents=True)
            images, anns = [], []
            for i in range(int(count)):
                rng = np.random.default_rng([seed, split_id, i])
                pixels, objects = render_scene(rng, size=image_size, num_classes=num_classes,
                                               max_objects=max_objects, min_scale=min_scale, max_scale=max_scale,
                                               colour_jitter=colour_jitter)
                file_name = f"{split}/{i:06d}.png"
                Image.fromarray(pixels).save(temporary / "images" / file_name)
                images.append({"id": i + 1, "file_name": file_name, "width": image_size, "height": image_size})
                for obj in objects:
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": obj["label"] + 1,
                                 "bbox": obj["bbox"], "area": obj["area"], "iscrowd": 0})
            (temporary / "annotations").mkdir(exist_ok=True)
            (temporary / "annotations" / f"{split}.json").write_text(json.dumps(
                {"info": {"description": f"synthetic shapes, split {split}, seed {seed}"},
                 "images": images, "annotations": anns, "categories": categories}))
        (temporary / _MANIFEST).write_text(json.dumps({"splits": dict(splits), "seed": seed}))
        try:
            os.rename(temporary, root)
        except OSError:
            if not (root / _MANIFEST).is_file():  # not a finished copy by another process: replace it
                shutil.rmtree(root, ignore_errors=True)
                os.rename(temporary, root)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return annotations
