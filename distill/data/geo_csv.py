"""Real geotagged photos from CSV files (Im2GPS / YFCC100M style): ``path,lat,lon`` rows, images under a root.

One CSV per split (train, test, optionally teacher_train; without it the teacher is fitted on train). A header
naming the columns ``path``, ``lat`` and ``lon`` is required (other columns are ignored); paths are relative to
``root`` (or absolute). A bad row (too few fields, a latitude or longitude that is not a number or out of range,
a missing or undecodable image) is reported with its file and line number and skipped, or, with
``strict=True``, rejected with an error naming them. The skipped rows are listed in ``summary()``, which the
engine writes to results.json ("data").
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distill.data.datamodule import Split
from distill.data.geo_base import GeoArrayDataModule
from distill.data.image_files import CorruptImageError, load_image

__all__ = ["GeoCSVDataModule", "GeoRows", "read_geo_csv"]

log = logging.getLogger(__name__)

COLUMNS = ("path", "lat", "lon")
_REPORT_ROWS = 20  # skipped rows listed in summary()


@dataclass
class GeoRows:
    """The usable rows of one CSV: image paths, (N, 2) degrees, their line numbers, and the skipped rows."""

    paths: list[Path]
    latlon: np.ndarray
    lines: list[int]
    skipped: list[str] = field(default_factory=list)


def _row_problem(row: dict[str, str | None]) -> tuple[str | None, float, float]:
    if any(row.get(column) is None for column in COLUMNS):
        return "too few fields (expected path,lat,lon)", math.nan, math.nan
    if not row["path"].strip():
        return "empty path", math.nan, math.nan
    try:
        lat, lon = float(row["lat"]), float(row["lon"])
    except ValueError:
        return f"lat/lon must be numbers, got {row['lat']!r}, {row['lon']!r}", math.nan, math.nan
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        return f"latitude {row['lat']!r} outside [-90, 90]", lat, lon
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        return f"longitude {row['lon']!r} outside [-180, 180]", lat, lon
    return None, lat, lon


def read_geo_csv(csv_path: str | os.PathLike, root: str | os.PathLike, strict: bool = False) -> GeoRows:
    """Parse a ``path,lat,lon`` CSV, checking every row's coordinates and that its image file exists.

    ``strict`` raises on the first bad row (ValueError, or FileNotFoundError for a missing image, naming the CSV
    and line); otherwise bad rows are skipped and described in ``GeoRows.skipped`` as ``"file:line: reason"``.
    """
    csv_path, root = Path(csv_path), Path(root)
    if not csv_path.is_file():
        raise FileNotFoundError(f"geolocation CSV not found: {csv_path} (expected a 'path,lat,lon' file)")
    paths, coords, lines, skipped = [], [], [], []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [column for column in COLUMNS if column not in header]
        if missing:
            raise ValueError(f"{csv_path}: the header must name the columns path,lat,lon; missing {missing} "
                             f"(found {header})")
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            problem, lat, lon = _row_problem(row)
            path = None
            if problem is None:
                path = Path(row["path"].strip())
                path = path if path.is_absolute() else root / path
                if not path.is_file():
                    if strict:
                        raise FileNotFoundError(f"{csv_path}:{line}: image not found: {path}")
                    problem = f"image not found: {path}"
            if problem is not None:
                if strict:
                    raise ValueError(f"{csv_path}:{line}: {problem}")
                skipped.append(f"{csv_path.name}:{line}: {problem}")
                continue
            paths.append(path)
            coords.append((lat, lon))
            lines.append(line)
    return GeoRows(paths, np.array(coords, dtype=np.float64).reshape(-1, 2), lines, skipped)


class GeoCSVDataModule(GeoArrayDataModule):
    """Geotagged photos listed in CSV files; labelled by the S2 cell of their place.

    ``python -m distill recipe=planet data=geo_csv data.root=/data/im2gps data.train_csv=train.csv
    data.test_csv=test.csv`` (CSV paths relative to ``root`` unless absolute).
    """

    def __init__(self, root: str | os.PathLike | None = None, train_csv: str | None = "train.csv",
                 test_csv: str | None = "test.csv", teacher_train_csv: str | None = None, image_size: int = 96,
                 strict: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ValueError("data.root is required: the folder the CSVs' image paths are relative to "
                             "(python -m distill recipe=planet data=geo_csv data.root=...)")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root={self.root} is not a folder")
        if int(image_size) < 1:
            raise ValueError(f"data.image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.strict = bool(strict)
        self.csv_files: dict[str, Path] = {}
        for name, value in (("teacher_train", teacher_train_csv), ("train", train_csv), ("test", test_csv)):
            if value is None and name != "teacher_train":
                raise ValueError(f"data.{name}_csv is required (a 'path,lat,lon' CSV)")
            if value is not None:
                path = Path(value).expanduser()
                self.csv_files[name] = path if path.is_absolute() else self.root / path
        self._skipped: dict[str, list[str]] = {}

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"root": str(self.root.resolve()), "csv": {k: str(v) for k, v in self.csv_files.items()},
                "image_size": self.image_size, "strict": self.strict, "partition": self.partition_settings()}

    def _decode(self, name: str, rows: GeoRows) -> tuple[np.ndarray, np.ndarray]:
        """Decode a split's images; a corrupt one is rejected (strict) or skipped and reported with its line."""
        images = np.empty((len(rows.paths), self.image_size, self.image_size, 3), dtype=np.uint8)
        kept = []
        for position, (path, line) in enumerate(zip(rows.paths, rows.lines)):
            try:
                images[len(kept)] = load_image(path, self.image_size)
            except (CorruptImageError, FileNotFoundError) as error:
                if self.strict:
                    raise CorruptImageError(f"{self.csv_files[name]}:{line}: {error}") from error
                self._skipped[name].append(f"{self.csv_files[name].name}:{line}: {error}")
                continue
            kept.append(position)
        return images[:len(kept)], np.asarray(kept, dtype=np.int64)

    def build_splits(self) -> dict[str, Split]:
        decoded = {}
        for name, csv_path in self.csv_files.items():
            rows = read_geo_csv(csv_path, self.root, strict=self.strict)
            self._skipped[name] = list(rows.skipped)
            images, kept = self._decode(name, rows)
            if len(kept) == 0:
                raise ValueError(f"{csv_path}: no usable rows (skipped {len(self._skipped[name])}; first: "
                                 f"{self._skipped[name][0] if self._skipped[name] else 'none'})")
            decoded[name] = (images, rows.latlon[kept])
            if self._skipped[name]:
                log.warning("%s: skipped %d bad rows, e.g. %s", csv_path, len(self._skipped[name]),
                            "; ".join(self._skipped[name][:3]))
        targets = self.label_places({name: latlon for name, (_, latlon) in decoded.items()})
        splits = {}
        for name, (images, latlon) in decoded.items():
            keep = self.kept(name, targets[name])
            splits[name] = Split(images[keep], targets[name][keep], extras={"latlon": latlon[keep]})
        return splits

    def summary(self) -> dict[str, Any]:
        """Split sizes, partition, and the skipped rows (file:line: reason)."""
        base = super().summary()
        skipped = [row for rows in self._skipped.values() for row in rows]
        return {**base, "image_size": self.image_size, "strict": self.strict, "skipped": len(skipped),
                "skipped_rows": skipped[:_REPORT_ROWS]}
