"""Real face photographs in identity folders and LFW (``FaceFolderDataModule``): which identities and files are
used, how a one-fold pairs file is dealt into folds, and how a photograph is decoded when it streams.

A streamed photo is decoded in a DataLoader worker exactly as the in-memory array decodes it
(``distill.data.modules.face_folder``): the central ``crop_fraction`` of the shorter side
(``distill.data.streaming.CentreCrop``), or, with alignment, the square around the face MTCNN found. MTCNN runs once over the files when the splits are set
up (``find_faces``, cached on disk with the in-memory arrays' key), and each worker cuts the kept face's box out
again (``FaceBoxCrop``): the same crop as ``FaceAligner.crop``, with no detector in the workers.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from distill.data.align import centre_crop, select_face, square_crop
from distill.data.readers.image_files import CorruptImageError, IdentityFolder, load_image

__all__ = ["FaceBoxCrop", "count_folds", "deal_into_folds", "detect_face", "find_faces", "fold_ids", "fold_pairs",
           "limit_identities"]

log = logging.getLogger(__name__)


def limit_identities(folder: IdentityFolder, max_identities: int | None, max_images: int | None,
                     min_images: int) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of the kept identities (sorted by name; the first ``max_images`` files of each)."""
    by_label: dict[int, list[Path]] = {}
    for path, label in folder.samples:
        by_label.setdefault(label, []).append(path)
    paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for label, files in sorted(by_label.items()):
        if len(files) < min_images:
            continue
        if max_identities is not None and len(names) >= max_identities:
            break
        files = files[:max_images] if max_images is not None else files
        paths += files
        labels += [len(names)] * len(files)
        names.append(folder.classes[label])
    if len(names) < 2:
        raise ValueError(f"{folder.root}: need at least 2 identities with >= {min_images} images each, "
                         f"found {len(names)}")
    return paths, np.array(labels, dtype=np.int64), names


def deal_into_folds(pairs: list[tuple[int, int, bool]], num_folds: int) -> tuple[list[tuple[int, int, bool]], int]:
    """Re-deal one fold of pairs (a ``pairsDevTest.txt``) into ``num_folds`` folds of equal size, same pairs
    first in each; returns (pairs, number left over)."""
    same = [p for p in pairs if p[2]]
    different = [p for p in pairs if not p[2]]
    per_fold = min(len(same), len(different)) // num_folds
    if per_fold == 0:
        raise ValueError(f"{len(same)} same and {len(different)} different pairs cannot fill {num_folds} folds "
                         f"with one pair of each kind; lower data.num_folds")
    out = []
    for f in range(num_folds):
        out += same[f * per_fold:(f + 1) * per_fold] + different[f * per_fold:(f + 1) * per_fold]
    return out, len(pairs) - len(out)


def fold_ids(named_pairs: Sequence[tuple]) -> list[int]:
    """Each pair's fold in file order (0-based): a fold ends where a different pair is followed by a same pair."""
    ids, fold = [], 0
    for position, current in enumerate(named_pairs):
        if position and not named_pairs[position - 1][2] and current[2]:
            fold += 1
        ids.append(fold)
    return ids


def count_folds(named_pairs: Sequence[tuple]) -> int:
    """Folds in file order: a fold ends where a different pair is followed by a same pair."""
    folds = 1
    for previous, current in itertools.pairwise(named_pairs):
        if not previous[2] and current[2]:
            folds += 1
    return folds


def fold_pairs(named_pairs: Sequence[tuple], index: dict[Any, int], ok: np.ndarray, num_folds: int,
               pairs_file: Path) -> tuple[np.ndarray, np.ndarray, int, dict[str, int]]:
    """The test pairs as (P, 3) int64 (i, j, issame) over the kept test images, each pair's fold, the number of
    folds, and the counts for the report (``pairs``, ``pairs_dropped``, ``pairs_left_over`` when dealt).

    ``named_pairs`` are the pairs file's ((name, n), (name, n), issame) in file order, ``index`` each named image's
    position in the listed test images and ``ok`` which of those are kept: a pair with an image left out
    (``strict=false``) leaves its fold. A one-fold file is dealt into ``num_folds`` folds; a file with more keeps
    its own. Fewer than 2 folds is an error naming the keys that fix it.
    """
    new_index = np.cumsum(ok) - 1  # position of each kept image among the kept ones
    pairs, pair_folds = [], []
    for (first, second, issame), fold in zip(named_pairs, fold_ids(named_pairs)):
        i, j = index[first], index[second]
        if ok[i] and ok[j]:
            pairs.append((int(new_index[i]), int(new_index[j]), bool(issame)))
            pair_folds.append(fold)
    counts = {"pairs_dropped": len(named_pairs) - len(pairs)}
    file_folds = count_folds(named_pairs)
    folds = file_folds
    if file_folds == 1 and num_folds > 1:
        pairs, counts["pairs_left_over"] = deal_into_folds(pairs, num_folds)
        folds = num_folds
        pair_folds = np.repeat(np.arange(num_folds), len(pairs) // num_folds).tolist()
    if folds < 2:
        most = min(sum(p[2] for p in pairs), sum(not p[2] for p in pairs))
        raise ValueError(f"{pairs_file} holds one fold of pairs and data.num_folds=1: the LFW protocol needs at least "
                         f"2 folds (each fold's threshold is chosen on the others); set data.num_folds to a value in "
                         f"2..{max(2, most)} to deal its pairs into folds (task.n_folds follows the data)")
    if file_folds > 1 and num_folds != file_folds:
        log.warning("%s holds %d folds of pairs: the evaluation uses them (data.num_folds=%d only deals a one-fold "
                    "file such as pairsDevTest.txt into folds)", pairs_file, file_folds, num_folds)
    counts["pairs"] = len(pairs)
    return (np.array(pairs, dtype=np.int64).reshape(-1, 3), np.array(pair_folds, dtype=np.int64), folds, counts)


def detect_face(aligner: Any, image: np.ndarray) -> tuple[np.ndarray | None, int]:
    """(box of the face ``FaceAligner.crop`` keeps: the largest, most central; None without one, the number of
    faces MTCNN found), by the same rule (``select_face``) from the same detections."""
    boxes, probs = aligner.detect_all(image)
    best = select_face(boxes, probs, image.shape)
    if best is None:
        return None, 0
    return np.asarray(boxes[best], dtype=np.float64), int(np.isfinite(probs).sum())


def find_faces(paths: Sequence[Path], aligner: Any, *, strict: bool = True,
               what: str = "images") -> dict[str, np.ndarray]:
    """MTCNN over every file once: ``ok`` (decodes), ``faces`` (found), ``found`` (faces > 0) and ``boxes``
    (N, 4) float64, NaN where no face was found (the centre crop is used). A file that does not decode raises
    with ``strict``; otherwise it is not ``ok``."""
    ok = np.ones(len(paths), dtype=bool)
    faces = np.ones(len(paths), dtype=np.int64)
    boxes = np.full((len(paths), 4), np.nan, dtype=np.float64)
    for i, path in enumerate(tqdm(paths, desc=f"{what}: finding faces", unit="image", leave=False, disable=None)):
        try:
            image = load_image(path)
        except CorruptImageError:
            if strict:
                raise
            ok[i] = False
            continue
        box, faces[i] = detect_face(aligner, image)
        if box is not None:
            boxes[i] = box
    return {"ok": ok, "found": faces > 0, "faces": faces, "boxes": boxes}


class FaceBoxCrop:
    """A ``DecodedFiles`` decoder for aligned faces: file ``index``'s photo cut around ``boxes[index]`` (grown by
    ``margin``) as ``FaceAligner.crop`` cuts it, or its centre crop (``fallback_fraction``) where the box is NaN."""

    def __init__(self, size: int, boxes: np.ndarray, margin: float, fallback_fraction: float = 1.0) -> None:
        self.size = int(size)
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.margin = float(margin)
        self.fallback_fraction = float(fallback_fraction)

    def __call__(self, path: Path, index: int) -> np.ndarray:
        image = load_image(path)
        box = self.boxes[index]
        if np.isnan(box).any():
            return centre_crop(image, self.size, self.fallback_fraction)
        return square_crop(image, box, self.size, self.margin)

    def __repr__(self) -> str:
        return f"FaceBoxCrop(size={self.size}, {len(self.boxes)} boxes, margin={self.margin})"
