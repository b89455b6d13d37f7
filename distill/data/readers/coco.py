"""COCO-format detection data: a checked loader for instances JSON files, a Dataset and its collate function.

``load_coco`` reads one annotation file and checks every annotation against its image and the categories; a bad
one stops with an error naming the annotation id, the file and the config key that changes what happens. Boxes
outside their image follow ``box_policy`` (``data.box_policy``): ``error`` (the default) stops, ``clip`` clips them
to the image, ``skip`` leaves them out; clipped and skipped boxes are counted per image. Every listed image file
is opened (its header only) to check that it exists and has the size ``images[]`` gives it, upright by its EXIF
orientation as the images are read; width and height swapped in ``images[]`` are reported as such. Category ids
(COCO's run 1..90 with gaps) become contiguous labels 1..K (0 is the detectors' background). Crowd annotations
(``iscrowd=1``) are kept apart: not trained on, and ignored by the COCO evaluation as in the official protocol.
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
from torch.utils.data import Dataset

from distill.data.readers.image_files import CorruptImageError, image_size, open_image

__all__ = ["BOX_POLICIES", "CocoImage", "CocoIndex", "load_coco", "CocoDetectionDataset", "collate_detection"]

# Boxes may overhang the image by this many pixels (rounding in real annotations); they are clipped to it under
# every policy, uncounted.
BOX_TOLERANCE = 1.0
BOX_POLICIES = ("error", "clip", "skip")


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
    boxes_clipped: int = 0   # boxes past the image's edge clipped to it (box_policy=clip)
    boxes_skipped: int = 0   # boxes past the image's edge left out (box_policy=skip)
    labelled: bool = True    # False: an image the student learns from its teacher only (no boxes known)


@dataclass
class CocoIndex:
    ann_file: Path
    images: list[CocoImage]
    category_ids: list[int]     # COCO id of label k+1 at position k
    class_names: list[str]
    box_policy: str = "error"

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(image.boxes) for image in self.images))

    @property
    def boxes_clipped(self) -> int:
        return int(sum(image.boxes_clipped for image in self.images))

    @property
    def boxes_skipped(self) -> int:
        return int(sum(image.boxes_skipped for image in self.images))


def _read_json(ann_file: Path, keys: tuple[str, ...] = ("images", "annotations", "categories")) -> dict:
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    try:
        data = json.loads(ann_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{ann_file} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{ann_file} is not a COCO instances file: its top level is a JSON "
                         f"{_json_type(data)}, expected an object with the lists 'images', 'annotations', "
                         f"'categories'")
    missing = [key for key in keys if not isinstance(data.get(key), list)]
    if missing:
        kind = "instances" if "annotations" in keys else "image-info"
        raise ValueError(f"{ann_file} is not a COCO {kind} file: no list {missing} "
                         f"(expected keys {', '.join(repr(key) for key in keys)})")
    return data


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _is_id(value) -> bool:
    """COCO ids are integers (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(data: dict, ann_file: Path) -> list[dict]:
    """The categories sorted by id, each an object with an integer ``id``, no id twice; else a ValueError naming
    the entry and the file."""
    seen: set[int] = set()
    for position, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            got = category.get("id") if isinstance(category, dict) else category
            raise ValueError(f"{ann_file}: categories[{position}] needs an integer 'id' (got {got!r:.80})")
        if category["id"] in seen:
            raise ValueError(f"{ann_file}: category id {category['id']} appears twice in 'categories'")
        seen.add(category["id"])
    return sorted(data["categories"], key=lambda c: c["id"])


_POLICY_HINT = ("set data.box_policy=clip to clip such boxes to the image, or data.box_policy=skip to leave them "
                "out (both are counted in results.json \"data\")")


def _checked_box(ann: dict, image: dict, ann_file: Path, policy: str = "error") -> tuple[list[float] | None, str]:
    """The annotation's [x, y, w, h] as xyxy inside the image and what was done to it: ``"ok"``, ``"clipped"`` or
    ``"skipped"`` (box None) for a box past the image's edge, by ``policy``; a ValueError naming the annotation."""
    where = f"annotation id {ann.get('id')} (image id {ann.get('image_id')}) in {ann_file}"
    bbox = ann.get("bbox")
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise ValueError(f"{where}: bbox must be 4 finite numbers [x, y, width, height], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: bbox {bbox} has width or height <= 0")
    width, height = image["width"], image["height"]
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    inside = x1 > x0 and y1 > y0
    outside = (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE
               or y + h > height + BOX_TOLERANCE)
    if not outside and not inside:
        raise ValueError(f"{where}: bbox {bbox} has no area inside the image ({width}x{height})")
    if not outside:
        return [x0, y0, x1, y1], "ok"
    if policy == "skip":
        return None, "skipped"
    if policy == "clip" and inside:
        return [x0, y0, x1, y1], "clipped"
    problem = ("lies entirely outside the image, so it cannot be clipped; set data.box_policy=skip to leave such "
               "boxes out" if policy == "clip" else _POLICY_HINT)
    raise ValueError(f"{where}: bbox {bbox} lies outside the image ({width}x{height}, file "
                     f"{image.get('file_name')!r}); expected 0 <= x, x + width <= {width}, 0 <= y, "
                     f"y + height <= {height} (data.box_policy={policy}); "
                     + ("it " + problem if policy == "clip" else problem))


def _check_image_size(path: Path, image_id: int, position: int, info: dict, ann_file: Path) -> None:
    """The file's upright size must be the size ``images[]`` gives it: a swap of width and height is named."""
    try:
        width, height, orientation = image_size(path)
    except CorruptImageError as error:
        raise CorruptImageError(f"{error} (image id {image_id}, images[{position}] of {ann_file})") from error
    if (width, height) == (info["width"], info["height"]):
        return
    turned = (f"; the file's EXIF orientation {orientation} turns its stored {height}x{width} pixels upright, and "
              f"the images are read upright: the JSON was probably written from the stored pixels, and its boxes "
              f"must be for the upright image" if orientation in (5, 6, 7, 8) else "")
    if (width, height) == (info["height"], info["width"]):
        raise ValueError(f"{ann_file}: images[{position}] (image id {image_id}, {info['file_name']!r}) has width and "
                         f"height swapped: it says width={info['width']}, height={info['height']}, but the image "
                         f"{path} is {width} wide and {height} high{turned}; correct 'width' and 'height' of "
                         f"that entry")
    raise ValueError(f"{ann_file}: images[{position}] (image id {image_id}, {info['file_name']!r}) says "
                     f"{info['width']}x{info['height']} (width x height), but the image {path} is "
                     f"{width}x{height}{turned}; correct 'width' and 'height' of that entry")


def _image_records(data: dict, ann_file: Path) -> dict[int, dict]:
    records = {}
    for position, image in enumerate(data["images"]):
        try:
            image_id, width, height = image["id"], int(image["width"]), int(image["height"])
            file_name = str(image["file_name"])
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"{ann_file}: images[{position}] needs 'id', 'file_name', 'width' and 'height' "
                             f"({type(error).__name__}: {error})") from error
        if not _is_id(image_id):
            raise ValueError(f"{ann_file}: images[{position}] has id {image_id!r:.80}, expected an integer")
        if image_id in records:
            raise ValueError(f"{ann_file}: image id {image_id} appears twice in 'images'")
        if width < 1 or height < 1:
            raise ValueError(f"{ann_file}: image id {image_id} ({file_name}) has size {width}x{height}")
        records[image_id] = {"file_name": file_name, "width": width, "height": height, "position": position}
    return records


def load_coco(ann_file: str | os.PathLike, image_root: str | os.PathLike, *, check_files: bool = True,
              max_images: int | None = None, box_policy: str = "error", unlabelled: bool = False) -> CocoIndex:
    """Read and check a COCO instances file whose ``file_name`` entries are relative to ``image_root``.

    Raises ValueError naming the annotation id and ``ann_file`` for a box outside its image (``box_policy="error"``;
    ``"clip"`` clips it to the image, ``"skip"`` leaves it out, both counted), an unknown category id or an image
    id that is not listed; FileNotFoundError for a listed image file that is missing; ValueError naming the
    ``images[]`` entry whose width and height are not the image file's (``check_files``: every kept image's header
    is read). ``max_images`` keeps the first images (by id) only, e.g. for a quick run on a large dataset.
    ``unlabelled``: an image-info file (COCO's ``image_info_unlabeled2017.json``: ``images`` and ``categories``);
    any annotations are not read, and every image is marked ``labelled=False``.
    """
    if box_policy not in BOX_POLICIES:
        raise ValueError(f"data.box_policy must be one of {list(BOX_POLICIES)}, got {box_policy!r}")
    ann_file, image_root = Path(ann_file).expanduser(), Path(image_root).expanduser()
    data = _read_json(ann_file, ("images", "categories") if unlabelled else ("images", "annotations", "categories"))
    if unlabelled:
        data = {**data, "annotations": []}
    categories = _categories(data, ann_file)
    if not categories:
        raise ValueError(f"{ann_file}: 'categories' is empty")
    label_of = {int(c["id"]): k + 1 for k, c in enumerate(categories)}
    images = _image_records(data, ann_file)
    boxes: dict[int, list] = {image_id: [] for image_id in images}
    crowd: dict[int, list] = {image_id: [] for image_id in images}
    fixed: dict[int, dict[str, int]] = {image_id: {"clipped": 0, "skipped": 0} for image_id in images}
    sized: set[int] = set()
    for position, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ValueError(f"{ann_file}: annotations[{position}] is a JSON {_json_type(ann)}, expected an object")
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        if not _is_id(image_id) or image_id not in images:
            raise ValueError(f"annotation id {ann.get('id')} in {ann_file}: image_id {image_id!r} is not in "
                             f"'images' (missing image)")
        if not _is_id(category_id) or category_id not in label_of:
            raise ValueError(f"annotation id {ann.get('id')} in {ann_file}: unknown category_id {category_id!r}; "
                             f"'categories' lists ids {sorted(label_of)}")
        info = images[image_id]
        try:
            box, done = _checked_box(ann, info, ann_file, box_policy)
        except ValueError:
            # A box past the edge of an image whose width and height are swapped in images[]: name the swap
            path = image_root / info["file_name"]
            if check_files and image_id not in sized and path.is_file():
                _check_image_size(path, image_id, info["position"], info, ann_file)
                sized.add(image_id)
            raise
        if done != "ok":
            fixed[image_id][done] += 1
        if box is not None:
            (crowd if ann.get("iscrowd", 0) else boxes)[image_id].append((*box, label_of[category_id]))
    kept = sorted(images)[:max_images] if max_images else sorted(images)
    records = []
    for image_id in kept:
        info = images[image_id]
        path = image_root / info["file_name"]
        if check_files:
            if not path.is_file():
                raise FileNotFoundError(f"image file {path} (image id {image_id}, listed in {ann_file}) not found; "
                                        f"file names are relative to the image root {image_root}")
            if image_id not in sized:
                _check_image_size(path, image_id, info["position"], info, ann_file)
        own = np.asarray(boxes[image_id], dtype=np.float32).reshape(-1, 5)
        crowd_own = np.asarray(crowd[image_id], dtype=np.float32).reshape(-1, 5)
        records.append(CocoImage(image_id, path, info["width"], info["height"], own[:, :4], own[:, 4].astype(np.int64),
                                 crowd_own[:, :4], crowd_own[:, 4].astype(np.int64),
                                 boxes_clipped=fixed[image_id]["clipped"], boxes_skipped=fixed[image_id]["skipped"],
                                 labelled=not unlabelled))
    return CocoIndex(ann_file, records, [int(c["id"]) for c in categories],
                     [str(c.get("name", c["id"])) for c in categories], box_policy=box_policy)


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
            pixels = np.asarray(open_image(record.path))  # upright by its EXIF orientation, RGB
        except CorruptImageError as error:
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
                  "crowd_boxes": crowd, "crowd_labels": torch.from_numpy(record.crowd_labels.copy()),
                  "labelled": record.labelled}
        return image, target


def collate_detection(batch):
    """Detection batches stay lists: images of different sizes, a different number of boxes per image."""
    images, targets = zip(*batch)
    return list(images), list(targets)
