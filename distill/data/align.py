"""Optional face alignment with facenet-pytorch's MTCNN: detect the face, cut a square crop around it.

FaceNet was trained on faces cut out by a detector, so real photographs (VGGFace2, CASIA-WebFace, LFW) are
aligned the same way before the teacher sees them. MTCNN's three small networks ship inside the
facenet-pytorch package (``facenet_pytorch/data/{p,r,o}net.pt``): nothing is downloaded.

An image without a detectable face is never dropped: it gets the fallback crop (the centre of the image)
and ``found=False``, so the caller can count and report it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

__all__ = ["FaceAligner", "centre_crop", "square_crop"]


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be a uint8 array of shape (H, W, 3), got {getattr(image, 'dtype', type(image))} "
                         f"{shape}")


def square_crop(image: np.ndarray, box: tuple[float, float, float, float], size: int,
                margin: float = 0.0) -> np.ndarray:
    """Square crop around ``box`` = (x1, y1, x2, y2), grown by ``margin`` x the box's larger side on each side,
    resized to (size, size, 3). Parts of the crop outside the image are black, as in facenet-pytorch."""
    _check_image(image)
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box must be (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {box}")
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * float(margin))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left, top = round(cx - side / 2.0), round(cy - side / 2.0)
    width = max(1, round(side))
    crop = Image.fromarray(image).crop((left, top, left + width, top + width))
    return np.asarray(crop.resize((int(size), int(size)), Image.BILINEAR), dtype=np.uint8)


def centre_crop(image: np.ndarray, size: int, fraction: float = 1.0) -> np.ndarray:
    """The central square of side ``fraction`` x the shorter side, resized to (size, size, 3)."""
    _check_image(image)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    h, w = image.shape[:2]
    side = min(h, w) * float(fraction)
    return square_crop(image, ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2), size)


class FaceAligner:
    """MTCNN detection + square crop of the most confident face; ``align`` gives (crops, found).

    ``margin``: context added on each side, as a fraction of the detected box's larger side.
    ``fallback_fraction``: the centre crop used when no face is found (see ``centre_crop``).
    """

    def __init__(self, image_size: int = 160, margin: float = 0.2, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), fallback_fraction: float = 1.0,
                 device: str = "cpu") -> None:
        # imported on use: only aligned data sets need it
        from facenet_pytorch import MTCNN

        if int(image_size) < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if not 0.0 < fallback_fraction <= 1.0:
            raise ValueError(f"fallback_fraction must be in (0, 1], got {fallback_fraction}")
        self.image_size = int(image_size)
        self.margin = float(margin)
        self.fallback_fraction = float(fallback_fraction)
        self.mtcnn = MTCNN(min_face_size=int(min_face_size), thresholds=list(thresholds), post_process=False,
                           select_largest=False, keep_all=False, device=device)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray | None, float]:
        """The most confident face box (x1, y1, x2, y2) as float64, and its probability; (None, 0.0) if none."""
        _check_image(image)
        boxes, probs = self.mtcnn.detect(Image.fromarray(image))
        if boxes is None or len(boxes) == 0:
            return None, 0.0
        # facenet-pytorch may hand back object arrays; make them plain floats
        probs = np.asarray([0.0 if p is None else float(p) for p in np.ravel(probs)])
        best = int(np.argmax(probs))
        return np.asarray(boxes[best], dtype=np.float64), float(probs[best])

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        box, _ = self.detect(image)
        if box is None:
            return centre_crop(image, self.image_size, self.fallback_fraction), False
        return square_crop(image, box, self.image_size, self.margin), True

    def align(self, images: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Crops (N, size, size, 3) uint8 and a bool array saying where a face was found."""
        crops, found = [], []
        for image in images:
            crop, ok = self(image)
            crops.append(crop)
            found.append(ok)
        if not crops:
            return np.empty((0, self.image_size, self.image_size, 3), np.uint8), np.empty(0, bool)
        return np.stack(crops), np.array(found, dtype=bool)
