"""COCO-format detection data: a checked loader for instances JSON files, a Dataset and its collate function.

``load_coco`` reads one annotation file and checks every annotation against its image and the categories; a bad
one stops with an error naming the annotation id and the file. Category ids (COCO's run 1..90 with gaps) become
contiguous labels 1..K (0 is the detectors' background). Crowd annotations (``iscrowd=1``) are kept apart: not
trained on, and ignored by the COCO evaluation as in the official protocol.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["CocoImage", "CocoIndex", "load_coco", "CocoDetectionDataset", "collate_detection"]

# Boxes may overhang the image by this many pixels (rounding in real annotations); they are clipped to it.
BOX_TOLERANCE = 1.0


@dataclass
class CocoImage:
    id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray       # (N, 4) float32 xyxy, non-crowd
    labels: np.ndarray      # (N,) int64 in 1..K
    crowd_boxes: np.ndarray  # (M, 4) crowd regions (ignored by the evaluation)
    crowd_labels: np.ndarray


@dataclass
class CocoIndex:
    ann_file: Path
    images: list[CocoImage]
    category_ids: list[int]     # COCO id of label k+1 at position k
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(image.boxes) for image in self.images))


def _read_json(ann_file: Path) -> dict:
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    try:
        data = json.loads(ann_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{ann_file} is not valid JSON: {error}") from error
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if not isinstance(data, dict) or missing:
        raise ValueError(f"{ann_file} is not a COCO instances file: no list {missing} "
                         f"(expected keys 'images', 'annotations', 'categories')")
    return data


def _checked_box(ann: dict, image: dict, ann_file: Path) -> list[float]:
    """The annotation's [x, y, w, h] as xyxy inside the image, or a ValueError naming the annotation."""
    where = f"annotation id {ann.get('id')} (image id {ann.get('image_id')}) in {ann_file}"
    bbox = ann.get("bbox")
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise ValueError(f"{where}: bbox must be 4 finite numbers [x, y, width, height], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: bbox {bbox} has width or height <= 0")
    width, height = image["width"], image["height"]
    if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE or y + h > height + BOX_TOLERANCE:
        raise ValueError(f"{where}: bbox {bbox} lies outside the image ({width}x{height}, file "
                         f"{image.get('file_name')!r}); expected 0 <= x, x + width <= {width}, 0 <= y, "
                         f"y + height <= {height}")
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{where}: bbox {bbox} has no area inside the image ({width}x{height})")
    return [x0, y0, x1, y1]


def _image_records(data: dict, ann_file: Path) -> dict[int, dict]:
    records = {}
    for position, image in enumerate(data["images"]):
        try:
            image_id, width, height = image["id"], int(image["width"]), int(image["height"])
            file_name = str(image["file_name"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{ann_file}: images[{position}] needs 'id', 'file_name', 'width' and 'height' "
                             f"({type(error).__name__}: {error})") from error
        if image_id in records:
            raise ValueError(f"{ann_file}: image id {image_id} appears twice in 'images'")
        if width < 1 or height < 1:
            raise ValueError(f"{ann_file}: image id {image_id} ({file_name}) has size {width}x{height}")
        records[image_id] = {"file_name": file_name, "width": width, "height": height}
    return records


def load_coco(ann_file: str | os.PathLike, image_root: str | os.PathLike, *, check_files: bool = True,
              max_images: int | None = None) -> CocoIndex:
    """Read and check a COCO instances file whose ``file_name`` entries are relative to ``image_root``.

    Raises ValueError naming the annotation id and ``ann_file`` for a box outside its image, an unknown
    category id or an image id that is not listed; FileNotFoundError for a listed image file that is missing.
    ``max_images`` keeps the first images (by id) only, e.g. for a quick run on a large dataset.
    """
    ann_file, image_root = Path(ann_file).expanduser(), Path(image_root).expanduser()
    data = _read_json(ann_file)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    if not categories:
        raise ValueError(f"{ann_file}: 'categories' is empty")
    label_of = {int(c["id"]): k + 1 for k, c in enumerate(categories)}
    images = _image_records(data, ann_file)
    boxes: dict[int, list] = {image_id: [] for image_id in images}
    crowd: dict[int, list] = {image_id: [] for image_id in images}
    for ann in data["annotations"]:
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        if image_id not in images:
            raise ValueError(f"annotation id {ann.get('id')} in {ann_file}: image_id {image_id!r} is not in "
                             f"'images' (missing image)")
        if category_id not in label_of:
            raise ValueError(f"annotation id {ann.get('id')} in {ann_file}: unknown category_id {category_id!r}; "
                             f"'categories' lists ids {sorted(label_of)}")
        box = _checked_box(ann, images[image_id], ann_file)
        (crowd if ann.get("iscrowd", 0) else boxes)[image_id].append((*box, label_of[category_id]))
    kept = sorted(images)[:max_images] if max_images else sorted(images)
    records = []
    for image_id in kept:
        info = images[image_id]
        path = image_root / info["file_name"]
        if check_files and not path.is_file():
            raise FileNotFoundError(f"image file {path} (image id {image_id}, listed in {ann_file}) not found; "
                                    f"file names are relative to the image root {image_root}")
        own = np.asarray(boxes[image_id], dtype=np.float32).reshape(-1, 5)
        crowd_own = np.asarray(crowd[image_id], dtype=np.float32).reshape(-1, 5)
        records.append(CocoImage(image_id, path, info["width"], info["height"], own[:, :4], own[:, 4].astype(np.int64),
                                 crowd_own[:, :4], crowd_own[:, 4].astype(np.int64)))
    return CocoIndex(ann_file, records, [int(c["id"]) for c in categories],
                     [str(c.get("name", c["id"])) for c in categories])


class CocoDetectionDataset(Dataset):
    """(image float (3, H, W) in 0..1, target {"boxes" xyxy, "labels", "image_id", "crowd_boxes", "crowd_labels"}).

    ``flip``: horizontal flips for training, a function of (seed, view, index) like every augmentation here, so a
    resumed run sees the very images an uninterrupted one would; an item is an index or an (index, view) pair.
    The detectors resize and normalise the images themselves.
    """

    def __init__(self, images: list[CocoImage], *, flip: bool = False, seed: int = 0):
        self.images = list(images)
        self.flip = bool(flip)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.images)

    def flipped(self, index: int, view: int) -> bool:
        return self.flip and bool(np.random.default_rng([self.seed, view, index]).random() < 0.5)

    def __getitem__(self, item: int | tuple[int, int]):
        index, view = (int(item[0]), int(item[1])) if isinstance(item, (tuple, list)) else (int(item), 0)
        record = self.images[index]
        try:
            with Image.open(record.path) as handle:
                pixels = np.asarray(handle.convert("RGB"))
        except OSError as error:
            raise ValueError(f"image file {record.path} (image id {record.id}) cannot be decoded: {error}") from error
        if pixels.shape[:2] != (record.height, record.width):
            raise ValueError(f"image file {record.path} (image id {record.id}) is {pixels.shape[1]}x{pixels.shape[0]}, "
                             f"its annotation file says {record.width}x{record.height}")
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)
        boxes, crowd = torch.from_numpy(record.boxes.copy()), torch.from_numpy(record.crowd_boxes.copy())
        if self.flipped(index, view):
            image = image.flip(-1)
            boxes = torch.stack([record.width - boxes[:, 2], boxes[:, 1], record.width - boxes[:, 0], boxes[:, 3]], 1)
            crowd = torch.stack([record.width - crowd[:, 2], crowd[:, 1], record.width - crowd[:, 0], crowd[:, 3]], 1)
        target = {"boxes": boxes, "labels": torch.from_numpy(record.labels.copy()), "image_id": record.id,
                  "crowd_boxes": crowd, "crowd_labels": torch.from_numpy(record.crowd_labels.copy())}
        return image, target


def collate_detection(batch):
    """Detection batches stay lists: images of different sizes, a different number of boxes per image."""
    images, targets = zip(*batch)
    return list(images), list(targets)
