"""Geotagged photos listed in CSV files (Im2GPS / YFCC100M style): ``path,lat,lon`` rows, images under a root.

A header naming the columns ``path``, ``lat`` and ``lon`` is required (other columns are ignored); paths are
relative to ``root`` (or absolute). A bad row (too few fields, a latitude or longitude that is not a number or out
of range, a missing image) is reported with its file and line number and skipped, or, with ``strict=True``,
rejected with an error naming them (``distill.data.modules.geo.GeoCSVDataModule`` serves one CSV per split).
The CSV must be UTF-8 (a byte-order mark is dropped); bytes that are not UTF-8, or a row the csv module cannot
split, are an error naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.data.readers.text import read_utf8

__all__ = ["COLUMNS", "GeoRows", "read_geo_csv"]

COLUMNS = ("path", "lat", "lon")


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


def _rows(reader: csv.DictReader, csv_path: Path):
    """(line number, row) of each row; a row the csv module cannot split is an error naming the file and line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ValueError(f"{csv_path}:{reader.line_num}: unreadable CSV row ({error})") from None
        yield reader.line_num, row


def read_geo_csv(csv_path: str | os.PathLike, root: str | os.PathLike, strict: bool = False) -> GeoRows:
    """Parse a ``path,lat,lon`` CSV, checking every row's coordinates and that its image file exists.

    ``strict`` raises on the first bad row (ValueError, or FileNotFoundError for a missing image, naming the CSV
    and line); otherwise bad rows are skipped and described in ``GeoRows.skipped`` as ``"file:line: reason"``.
    """
    csv_path, root = Path(csv_path), Path(root)
    if not csv_path.is_file():
        raise FileNotFoundError(f"geolocation CSV not found: {csv_path} (expected a 'path,lat,lon' file)")
    paths, coords, lines, skipped = [], [], [], []
    reader = csv.DictReader(io.StringIO(read_utf8(csv_path, "geolocation CSV"), newline=""))
    try:
        header = [name.strip() for name in (reader.fieldnames or [])]
    except csv.Error as error:
        raise ValueError(f"{csv_path}:{reader.line_num}: unreadable CSV header ({error})") from None
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ValueError(f"{csv_path}: the header must name the columns path,lat,lon; missing {missing} "
                         f"(found {header})")
    reader.fieldnames = header
    for line, row in _rows(reader, csv_path):
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
