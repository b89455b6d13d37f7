"""Optional face alignment with facenet-pytorch's MTCNN: detect the face, cut a square crop around it.

FaceNet was trained on faces cut out by a detector, so real photographs (VGGFace2, CASIA-WebFace, LFW) are
aligned the same way before the teacher sees them. MTCNN's three small networks ship inside the
facenet-pytorch package (``facenet_pytorch/data/{p,r,o}net.pt``): nothing is downloaded.

An image without a detectable face is never dropped: it gets the fallback crop (the centre of the image)
and ``found=False``, so the caller can count and report it.

Where a photo holds several faces, the one kept is the one that belongs to the folder's person by a stated
rule, not MTCNN's most confident: the largest and most central (``select_face``: box area minus twice the
squared distance of the box centre from the image centre, facenet-pytorch's ``center_weighted_size``). The
number of faces found is returned too, so the caller can count multi-face photos.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

__all__ = ["CENTRE_PENALTY", "FaceAligner", "centre_crop", "face_scores", "select_face", "square_crop"]

CENTRE_PENALTY = 2.0  # per squared pixel of the box centre's distance from the image centre


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


def face_scores(boxes: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Score of each box (x1, y1, x2, y2) in an image of shape (H, W, ...): area - CENTRE_PENALTY x the squared
    distance of its centre from the image centre. The highest is the largest, most central face."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = float(image_shape[0]), float(image_shape[1])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    offset = ((boxes[:, 0] + boxes[:, 2]) / 2 - width / 2) ** 2 + ((boxes[:, 1] + boxes[:, 3]) / 2 - height / 2) ** 2
    return area - CENTRE_PENALTY * offset


def select_face(boxes, probs, image_shape: Sequence[int]) -> int | None:
    """Index of the face to keep among MTCNN's ``boxes`` (N, 4) and ``probs`` (N,): the largest and most central
    (``face_scores``), whatever MTCNN's confidence; None when there is no box. Boxes without a probability
    (facenet-pytorch gives None for them) are not faces. Ties go to the earlier box."""
    if boxes is None or probs is None:
        return None
    probs = np.asarray([np.nan if p is None else float(p) for p in np.ravel(np.asarray(probs, dtype=object))])
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0 or len(boxes) != len(probs):
        return None
    scores = face_scores(boxes, image_shape)
    scores[~np.isfinite(probs)] = -np.inf
    if not np.isfinite(scores).any():
        return None
    return int(np.argmax(scores))


class FaceAligner:
    """MTCNN detection + square crop of the face that belongs to the photo's person (``select_face``: the largest,
    most central); ``align`` gives (crops, found), ``crop`` gives (crop, number of faces found).

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
        self.device = str(device)
        # detection only (``detect``): which face to keep is ``select_face``'s rule, not MTCNN's
        self.mtcnn = MTCNN(min_face_size=int(min_face_size), thresholds=list(thresholds), post_process=False,
                           select_largest=True, keep_all=True, device=device)

    def detect_all(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every face MTCNN finds: boxes (N, 4) float64 (x1, y1, x2, y2) and probabilities (N,); N may be 0."""
        _check_image(image)
        boxes, probs = self.mtcnn.detect(Image.fromarray(image))
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        # facenet-pytorch may hand back object arrays; make them plain floats
        probs = np.asarray([np.nan if p is None else float(p) for p in np.ravel(probs)])
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), probs

    def detect(self, image: np.ndarray) -> tuple[np.ndarray | None, float]:
        """The kept face's box (``select_face``: largest, most central) and its probability; (None, 0.0) if none."""
        boxes, probs = self.detect_all(image)
        best = select_face(boxes, probs, image.shape)
        if best is None:
            return None, 0.0
        return boxes[best], float(probs[best])

    def crop(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """(crop of the kept face, or the fallback centre crop; the number of faces MTCNN found)."""
        boxes, probs = self.detect_all(image)
        best = select_face(boxes, probs, image.shape)
        if best is None:
            return centre_crop(image, self.image_size, self.fallback_fraction), 0
        return square_crop(image, boxes[best], self.image_size, self.margin), int(np.isfinite(probs).sum())

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        crop, faces = self.crop(image)
        return crop, faces > 0

    def align(self, images: Iterable[np.ndarray], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Crops (N, size, size, 3) uint8 and a bool array saying where a face was found; ``progress``: a tqdm bar."""
        crops, found = [], []
        for image in tqdm(images, desc="aligning faces (MTCNN)", unit="image", disable=not progress):
            crop, ok = self(image)
            crops.append(crop)
            found.append(ok)
        if not crops:
            return np.empty((0, self.image_size, self.image_size, 3), np.uint8), np.empty(0, bool)
        return np.stack(crops), np.array(found, dtype=bool)
