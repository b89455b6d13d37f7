"""PlaNet's adaptive partition of the earth into S2 cells: the classes of geolocation as classification.

Start from the six face cells of the S2 cube, split every cell holding more than ``t1`` photos into its four
children (down to ``max_level``), then drop the cells holding fewer than ``t2`` photos. Each kept cell is a class
and its centre is the location predicted for it. Dense places get small cells, empty ones none.

The cells come from s2sphere (pure Python, no compiled parts, installs anywhere with pip). It was chosen over
s2cell because the partition needs more than id/token conversion: cell children, the leaf-id range a cell
covers (``range_min``/``range_max``, which makes counting and lookup a sorted search) and the cell's corners (for
the maps); s2cell offers only ids, tokens, parents and centres. s2sphere is only called per photo (its leaf cell)
and per cell; counting is a binary search over the sorted leaf ids.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import s2sphere

from distill.core.io import atomic_write_json

__all__ = ["FORMAT", "MAX_LEVEL", "S2Partition", "leaf_cell_ids", "suggest_thresholds"]

FORMAT = "distill.s2_partition"
MAX_LEVEL = s2sphere.CellId.MAX_LEVEL  # 30: leaf cells, about 1 cm across


def _check_coordinates(lat: Any, lon: Any, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    prefix = f"{what}: " if what else ""
    lat = np.asarray(lat, dtype=np.float64).reshape(-1)
    lon = np.asarray(lon, dtype=np.float64).reshape(-1)
    if lat.shape != lon.shape:
        raise ValueError(f"{prefix}lat and lon must have the same length, got {lat.size} and {lon.size}")
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise ValueError(f"{prefix}lat/lon contain NaN or infinity")
    if lat.size and np.abs(lat).max() > 90.0:
        raise ValueError(f"{prefix}latitudes must lie in [-90, 90] degrees, got |lat| up to {np.abs(lat).max()}")
    if lon.size and np.abs(lon).max() > 180.0:
        raise ValueError(f"{prefix}longitudes must lie in [-180, 180] degrees, got |lon| up to {np.abs(lon).max()}")
    return lat, lon


def leaf_cell_ids(lat: Any, lon: Any) -> np.ndarray:
    """The S2 leaf (level-30) cell id of each point, as uint64; a cell at any level holds a point iff its id range
    [range_min, range_max] contains the point's leaf id."""
    lat, lon = _check_coordinates(lat, lon)
    from_degrees, from_lat_lng = s2sphere.LatLng.from_degrees, s2sphere.CellId.from_lat_lng
    return np.array([from_lat_lng(from_degrees(a, b)).id() for a, b in zip(lat.tolist(), lon.tolist())],
                    dtype=np.uint64)


def _cell_range(cell: s2sphere.CellId) -> tuple[int, int]:
    return cell.range_min().id(), cell.range_max().id()


class S2Partition:
    """The kept cells, ordered along the S2 Hilbert curve (cell id order); class k is ``tokens[k]``.

    ``centres`` (K, 2) are the cells' centres in degrees (lat, lon): the location predicted for each class;
    ``counts`` are the photos each cell held when built. Build with ``S2Partition.build``; store with ``save`` /
    ``to_dict`` (plain JSON data) and restore with ``load`` / ``from_dict``.
    """

    def __init__(self, tokens: list[str], counts: Any, *, t1: int | None = None, t2: int | None = None,
                 max_level: int = MAX_LEVEL, dropped_cells: int = 0, dropped_photos: int = 0) -> None:
        cells = []
        for position, token in enumerate(tokens):
            try:
                cell = s2sphere.CellId.from_token(str(token))
            except ValueError:  # not hexadecimal
                cell = s2sphere.CellId(0)
            if not (len(str(token)) <= 16 and cell.is_valid()):
                raise ValueError(f"partition tokens[{position}]={token!r} is not a valid S2 cell token")
            cells.append(cell)
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if len(counts) != len(cells):
            raise ValueError(f"partition: {len(cells)} tokens but {len(counts)} counts")
        order = np.argsort(np.array([cell.id() for cell in cells], dtype=np.uint64), kind="stable")
        self._cells = [cells[i] for i in order]
        self.counts = counts[order]
        ranges = np.array([_cell_range(cell) for cell in self._cells], dtype=np.uint64).reshape(-1, 2)
        overlap = np.nonzero(ranges[1:, 0] <= ranges[:-1, 1])[0]
        if overlap.size:
            first, second = self._cells[overlap[0]], self._cells[overlap[0] + 1]
            raise ValueError(f"partition cells overlap: {first.to_token()} and {second.to_token()}")
        self._range_min, self._range_max = ranges[:, 0].copy(), ranges[:, 1].copy()
        self.tokens: list[str] = [cell.to_token() for cell in self._cells]
        self.levels = np.array([cell.level() for cell in self._cells], dtype=np.int64)
        centres = [cell.to_lat_lng() for cell in self._cells]
        self.centres = np.array([[c.lat().degrees, c.lng().degrees] for c in centres], dtype=np.float64).reshape(-1, 2)
        self.t1, self.t2, self.max_level = t1, t2, int(max_level)
        self.dropped_cells, self.dropped_photos = int(dropped_cells), int(dropped_photos)

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def build(cls, lat: Any, lon: Any, *, t1: int = 10000, t2: int = 50, max_level: int = MAX_LEVEL) -> "S2Partition":
        """PlaNet's partition of the photos at (lat, lon): split cells above ``t1`` photos, drop those below ``t2``.

        A cell at ``max_level`` is never split, whatever it holds (many photos at one spot cannot be separated).
        """
        t1, t2, max_level = int(t1), int(t2), int(max_level)
        if t1 < 1:
            raise ValueError(f"t1 (the most photos a cell may hold before it is split) must be >= 1, got {t1}")
        if not 1 <= t2 <= t1:
            raise ValueError(f"t2 (the fewest photos a kept cell holds) must lie in [1, t1={t1}], got {t2}")
        if not 0 <= max_level <= MAX_LEVEL:
            raise ValueError(f"max_level must lie in [0, {MAX_LEVEL}], got {max_level}")
        return cls._from_leaves(np.sort(leaf_cell_ids(lat, lon)), t1=t1, t2=t2, max_level=max_level)

    @classmethod
    def _from_leaves(cls, leaves: np.ndarray, *, t1: int, t2: int, max_level: int) -> "S2Partition":
        """``build`` over the photos' sorted leaf cell ids."""
        if leaves.size == 0:
            raise ValueError("cannot build a partition from no photos")

        def count(cell: s2sphere.CellId) -> int:
            low, high = _cell_range(cell)
            return int(np.searchsorted(leaves, np.uint64(high), side="right")
                       - np.searchsorted(leaves, np.uint64(low), side="left"))

        kept_tokens, kept_counts = [], []
        dropped_cells = dropped_photos = 0
        # Depth first from the six faces, children in id order: cells are kept in Hilbert-curve order.
        stack = [s2sphere.CellId.from_face_pos_level(face, 0, 0) for face in reversed(range(6))]
        while stack:
            cell = stack.pop()
            held = count(cell)
            if held > t1 and cell.level() < max_level:
                stack.extend(reversed(list(cell.children())))
            elif held >= t2:
                kept_tokens.append(cell.to_token())
                kept_counts.append(held)
            else:
                dropped_cells += int(held > 0)
                dropped_photos += held
        if not kept_tokens:
            raise ValueError(f"no cell holds t2={t2} photos or more ({leaves.size} photos); lower t2")
        return cls(kept_tokens, kept_counts, t1=t1, t2=t2, max_level=max_level,
                   dropped_cells=dropped_cells, dropped_photos=dropped_photos)

    # --- using ---------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return (f"S2Partition({len(self)} cells, levels {self.levels.min()}-{self.levels.max()}, t1={self.t1}, "
                f"t2={self.t2}, {int(self.counts.sum())} photos kept, {self.dropped_photos} dropped)")

    def cell_of(self, lat: Any, lon: Any) -> np.ndarray:
        """The class index of each point's cell, or -1 where the point lies in no kept cell (int64)."""
        return self._cell_of_leaves(leaf_cell_ids(lat, lon))

    def _cell_of_leaves(self, leaves: np.ndarray) -> np.ndarray:
        leaves = np.asarray(leaves, dtype=np.uint64)
        index = np.searchsorted(self._range_min, leaves, side="right").astype(np.int64) - 1
        inside = index >= 0
        inside[inside] = leaves[inside] <= self._range_max[index[inside]]
        return np.where(inside, index, -1)

    def locations(self, logits: Any) -> np.ndarray:
        """(N, 2) degrees: the centre of the most probable cell for each row of (N, K) scores (PlaNet's prediction)."""
        scores = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits)
        if scores.ndim != 2 or scores.shape[1] != len(self):
            raise ValueError(f"expected scores of shape (N, {len(self)} cells), got {scores.shape}")
        return self.centres[scores.argmax(axis=1)]

    def cell_corners(self, index: int) -> np.ndarray:
        """(4, 2) degrees (lat, lon) of the corners of class ``index``'s cell, counter-clockwise (for maps)."""
        cell = s2sphere.Cell(self._cells[int(index)])
        corners = [s2sphere.LatLng.from_point(cell.get_vertex(k)) for k in range(4)]
        return np.array([[c.lat().degrees, c.lng().degrees] for c in corners], dtype=np.float64)

    # --- plain data -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "t1": self.t1,
            "t2": self.t2,
            "max_level": self.max_level,
            "dropped_cells": self.dropped_cells,
            "dropped_photos": self.dropped_photos,
            "tokens": list(self.tokens),
            "centres": [[round(float(a), 7), round(float(b), 7)] for a, b in self.centres],
            "counts": [int(c) for c in self.counts],
            "levels": [int(level) for level in self.levels],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "partition") -> "S2Partition":
        """Rebuild from ``to_dict()`` output (centres and levels are recomputed from the tokens by S2)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not an S2 partition (expected a dict with format {FORMAT!r})")
        missing = [key for key in ("tokens", "counts") if key not in data]
        if missing:
            raise ValueError(f"{source}: missing {missing}")
        return cls(list(data["tokens"]), data["counts"], t1=data.get("t1"), t2=data.get("t2"),
                   max_level=data.get("max_level", MAX_LEVEL), dropped_cells=data.get("dropped_cells", 0),
                   dropped_photos=data.get("dropped_photos", 0))

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "S2Partition":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"partition file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        return cls.from_dict(data, source=str(path))


def suggest_thresholds(lat: Any, lon: Any, *, max_level: int = MAX_LEVEL, min_cells: int = 2,
                       min_kept: float = 0.5) -> tuple[int, int, S2Partition] | None:
    """Partition thresholds (t1, t2) that suit a collection of photos, and the partition they give; None if none do.

    PlaNet's t1 = 10000, t2 = 50 are for 91M photos; a collection of N photos starts at t1 = max(N / 40, sqrt(N)),
    t2 = t1 / 20 (the synthetic default: 250 and 12 over 10,000 photos, about sqrt(N) cells; a small collection
    still gets cells of several photos) and halves both until the partition has at least
    ``min_cells`` cells holding at least ``min_kept`` of the photos. None: no thresholds give that (all the photos
    at one spot, say).
    """
    leaves = np.sort(leaf_cell_ids(lat, lon))
    if leaves.size == 0:
        return None
    t1 = max(2, int(leaves.size) // 40, math.ceil(math.sqrt(leaves.size)))
    t2 = max(1, t1 // 20)
    while True:
        try:
            partition = S2Partition._from_leaves(leaves, t1=t1, t2=t2, max_level=max_level)
        except ValueError:
            partition = None
        if (partition is not None and len(partition) >= min_cells
                and partition.counts.sum() >= min_kept * leaves.size):
            return t1, t2, partition
        if t1 == 1 and t2 == 1:
            return None
        t1, t2 = max(1, t1 // 2), max(1, t2 // 2)
