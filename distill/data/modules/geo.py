"""Geolocation data modules (the planet recipe): synthetic geotagged photos by default, CSV-listed photos by option.

What they share (``GeoArrayDataModule``): PlaNet's classes are the cells of an adaptive partition of the training
photos' places (``distill.data.geo_cells``). A subclass gives each split's places; the base builds the partition
from the teacher_train and train places, labels every photo with its cell (-1 outside the kept cells), leaves
training photos outside the cells out (they have no class, as in PlaNet) and keeps every test photo (judged by its
distance to the prediction, whatever its cell). Each split carries its places as ``extras["latlon"]`` (N, 2)
degrees, which the geolocation task measures distances with.

- ``SyntheticGeoDataModule``: photos rendered from their places (``distill.data.synthetic.geo_photos``), and
  optionally (``num_unlabelled``) more training photos for the student whose places are hidden (``UNLABELLED``);
- ``GeoCSVDataModule``: ``path,lat,lon`` CSVs (``distill.data.readers.geo_csv``), images under a root; bad rows and
  images whose header does not read are skipped (or rejected with ``strict``) and listed in ``summary()``, which the
  engine writes to results.json ("data"). The images are decoded into memory when the set is small (``in_memory``)
  or in the DataLoader workers as batches need them (``distill.data.streaming``: the same batches); one whose pixel
  data fails there is named (``strict``) or replaced by the next image of its cell and counted.

The CSV module's fingerprint holds the CSVs and every listed image, by size and modification time or by content
(``verify``); the synthetic module's holds the generator's source.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.fingerprint import files_fingerprint
from distill.core.labels import unlabelled_count
from distill.core.paths import default_cache_dir
from distill.data.array_store import source_digest
from distill.data.geo_cells import S2Partition, suggest_thresholds
from distill.data.modules.base import ArrayDataModule, Split, teacher_split_parts
from distill.data.readers.geo_csv import GeoRows, read_geo_csv
from distill.data.readers.image_files import CorruptImageError
from distill.data.shards import ShardImages, is_remote, open_pack, read_extras
from distill.data.streaming import (DecodedFiles, SkipLog, header_errors, in_memory_setting, keep_in_memory,
                                    materialise)
from distill.data.synthetic import geo_photos
from distill.data.synthetic.geo_photos import render_places, sample_places

__all__ = ["TRAINING_SPLITS", "GeoArrayDataModule", "GeoCSVDataModule", "SyntheticGeoDataModule"]

log = logging.getLogger(__name__)

TRAINING_SPLITS = ("teacher_train", "train")
DATA_FORMATS = ("files", "litdata")  # data.format: the CSVs' photos (data.root), or shards (data.uri)
_REPORT_ROWS = 20  # skipped rows listed in summary()


class GeoArrayDataModule(ArrayDataModule):
    """Base of the geolocation data modules: ``t1``/``t2``/``max_level`` set the partition (PlaNet: 10000 / 50)."""

    def __init__(self, t1: int = 10000, t2: int = 50, max_level: int = 30, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        if int(t1) < 1:
            raise ValueError(f"data.t1 must be >= 1 (the most photos a cell holds before it is split), got {t1}")
        if not 1 <= int(t2) <= int(t1):
            raise ValueError(f"data.t2 must lie in [1, data.t1={t1}] (the fewest photos a kept cell holds), got {t2}")
        self.t1, self.t2, self.max_level = int(t1), int(t2), int(max_level)
        self._partition: S2Partition | None = None
        self._outside: dict[str, int] = {}

    def partition_settings(self) -> dict[str, int]:
        return {"t1": self.t1, "t2": self.t2, "max_level": self.max_level}

    @property
    def partition(self) -> S2Partition:
        self.setup()
        assert self._partition is not None, f"{type(self).__name__}.build_splits() did not call label_places()"
        return self._partition

    @property
    def num_classes(self) -> int:
        return self.partition.num_classes

    def label_places(self, places: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Build the partition from the training splits' places; return every split's cell indices (-1: none)."""
        training = [np.asarray(places[name], dtype=np.float64).reshape(-1, 2) for name in TRAINING_SPLITS
                    if name in places]
        if not training:
            raise ValueError(f"{type(self).__name__}: no training split ({' or '.join(TRAINING_SPLITS)}) to build "
                             f"the partition from")
        coords = np.concatenate(training)
        try:
            partition = S2Partition.build(coords[:, 0], coords[:, 1], t1=self.t1, t2=self.t2,
                                          max_level=self.max_level)
            problem = None if len(partition) >= 2 else f"it keeps {len(partition)} cell, and a classifier needs two"
        except ValueError as error:
            partition, problem = None, str(error)
        if problem is not None:
            raise ValueError(self._threshold_advice(coords, problem)) from None
        if len(coords) <= self.t1:
            log.warning("%s: data.t1=%d is not below the %d training photos, so no cell is split: the %d classes are "
                        "whole faces of the S2 cube (thousands of km across). %s", type(self).__name__, self.t1,
                        len(coords), len(partition), self._suggestion(coords))
        self._partition = partition
        targets = {}
        for name, latlon in places.items():
            latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
            targets[name] = self._partition.cell_of(latlon[:, 0], latlon[:, 1])
            self._outside[name] = int((targets[name] < 0).sum())
        return targets

    def _suggestion(self, coords: np.ndarray) -> str:
        found = suggest_thresholds(coords[:, 0], coords[:, 1], max_level=self.max_level)
        if found is None:
            return "No thresholds give two cells: the training photos all lie at one place."
        t1, t2, partition = found
        return (f"For these photos try data.t1={t1} data.t2={t2} ({len(partition)} cells holding "
                f"{int(partition.counts.sum())} of the photos).")

    def _threshold_advice(self, coords: np.ndarray, problem: str) -> str:
        """The error for thresholds that do not suit the collection, with thresholds that do."""
        return (f"{type(self).__name__}: the partition of the {len(coords)} training photos with data.t1={self.t1}, "
                f"data.t2={self.t2} (data.max_level={self.max_level}) is unusable: {problem}. PlaNet's t1=10000, "
                f"t2=50 suit tens of millions of photos; scale them with the collection. {self._suggestion(coords)}")

    @staticmethod
    def kept(name: str, targets: np.ndarray) -> np.ndarray:
        """Positions a split keeps: training photos inside a kept cell; every test photo."""
        return np.nonzero(targets >= 0)[0] if name in TRAINING_SPLITS else np.arange(len(targets))

    def summary(self) -> dict[str, Any]:
        """Split sizes and the partition: cells, levels, and the photos outside it (left out of training)."""
        partition = self.partition
        return {**super().summary(), "cells": partition.num_classes, **self.partition_settings(),
                "cell_levels": [int(partition.levels.min()), int(partition.levels.max())],
                "outside_partition": dict(self._outside)}


class GeoCSVDataModule(GeoArrayDataModule):
    """Geotagged photos listed in CSV files; labelled by the S2 cell of their place.

    ``python -m distill recipe=planet data=geo_csv data.root=/data/im2gps data.train_csv=train.csv
    data.test_csv=test.csv`` (CSV paths relative to ``root`` unless absolute).
    """

    def __init__(self, root: str | os.PathLike | None = None, train_csv: str | None = "train.csv",
                 test_csv: str | None = "test.csv", teacher_train_csv: str | None = None, image_size: int = 96,
                 strict: bool = False, in_memory: str | bool = "auto", format: str = "files",
                 uri: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if format not in DATA_FORMATS:
            raise ValueError(f"data.format must be one of {list(DATA_FORMATS)}, got {format!r}")
        if format == "litdata" and not uri:
            raise ValueError("data.format=litdata needs data.uri: the folder python -m distill.data.pack wrote")
        self.format = format
        self.uri = None if uri is None else str(uri)
        self.cache_dir = cache_dir  # where a remote data.uri's pack files and chunks are downloaded
        self._pack: tuple[Path, dict[str, Any]] | None = None
        if root is None and format == "files":
            raise ValueError("data.root is required: the folder the CSVs' image paths are relative to "
                             "(python -m distill recipe=planet data=geo_csv data.root=...)")
        self.root = Path(root if root is not None else ".").expanduser()
        if format == "files" and not self.root.is_dir():
            raise FileNotFoundError(f"data.root={self.root} is not a folder")
        if int(image_size) < 1:
            raise ValueError(f"data.image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.strict = bool(strict)
        self.in_memory = in_memory_setting(in_memory)
        self.kept_in_memory: bool | None = None
        self._skip_log: SkipLog | None = None
        self.csv_files: dict[str, Path] = {}
        for name, value in (("teacher_train", teacher_train_csv), ("train", train_csv), ("test", test_csv)):
            if value is None and name != "teacher_train":
                raise ValueError(f"data.{name}_csv is required (a 'path,lat,lon' CSV)")
            if value is not None:
                path = Path(value).expanduser()
                self.csv_files[name] = path if path.is_absolute() else self.root / path
        self._skipped: dict[str, list[str]] = {}
        self._rows: dict[str, GeoRows] = {}
        self._files_key: dict[str, str] | None = None
        self._listed: dict[str, tuple[list[Path], np.ndarray]] = {}  # readable rows: paths, places
        self._labels: dict[str, np.ndarray] = {}  # their cells (-1: outside the partition)

    def rows(self, name: str) -> GeoRows:
        """The usable rows of a split's CSV (read once)."""
        if name not in self._rows:
            self._rows[name] = read_geo_csv(self.csv_files[name], self.root, strict=self.strict)
        return self._rows[name]

    def pack(self) -> tuple[Path, dict[str, Any]]:
        """(local folder, ``distill_pack.json``) of ``data.uri`` (fetched once), checked against these settings."""
        if self._pack is None:
            self._pack = open_pack(self.uri, default_cache_dir(self.cache_dir), type(self).__name__, self.image_size)
        return self._pack

    def fingerprint_parts(self) -> dict[str, Any]:
        """The CSVs, every listed image, the settings; from shards, those of the files they were packed from with
        this run's partition (the partition is built again from the packed places, so it may differ)."""
        if self.format == "litdata":
            return {**self.pack()[1]["fingerprint_parts"], "partition": self.partition_settings()}
        if self._files_key is None:  # computed once per data module: a run reads its files once
            groups = {"csv": list(self.csv_files.values()), **{name: self.rows(name).paths for name in self.csv_files}}
            self._files_key = {name: files_fingerprint(paths, self.verify) for name, paths in groups.items()}
        return {"root": str(self.root.resolve()), "csv": {k: str(v) for k, v in self.csv_files.items()},
                "image_size": self.image_size, "strict": self.strict, "partition": self.partition_settings(),
                "files": self._files_key, "verify": self.verify}

    def _readable(self, name: str, rows: GeoRows) -> np.ndarray:
        """Positions of the rows whose image header reads (nothing is decoded); a bad one is rejected (strict) or
        skipped and reported with its line."""
        bad = set()
        for position, error in header_errors(rows.paths, desc=f"{name}: checking"):
            line = rows.lines[position]
            if self.strict:
                raise CorruptImageError(f"{self.csv_files[name]}:{line}: {error}") from error
            self._skipped[name].append(f"{self.csv_files[name].name}:{line}: {error}")
            bad.add(position)
        return np.asarray([position for position in range(len(rows.paths)) if position not in bad], dtype=np.int64)

    def build_splits(self) -> dict[str, Split]:
        if self.format == "litdata":
            return self._shard_splits()
        readable = {}
        for name, csv_path in self.csv_files.items():
            rows = self.rows(name)
            self._skipped[name] = list(rows.skipped)
            kept = self._readable(name, rows)
            if len(kept) == 0:
                raise ValueError(f"{csv_path}: no usable rows (skipped {len(self._skipped[name])}; first: "
                                 f"{self._skipped[name][0] if self._skipped[name] else 'none'})")
            readable[name] = ([rows.paths[k] for k in kept], rows.latlon[kept])
            if self._skipped[name]:
                log.warning("%s: skipped %d bad rows, e.g. %s", csv_path, len(self._skipped[name]),
                            "; ".join(self._skipped[name][:3]))
        targets = self.label_places({name: latlon for name, (_, latlon) in readable.items()})
        self._listed, self._labels = readable, targets
        keep = {name: self.kept(name, targets[name]) for name in readable}
        self.kept_in_memory = keep_in_memory(self.in_memory, sum(len(k) for k in keep.values()), self.image_size)
        self._skip_log = SkipLog()
        weakref.finalize(self, self._skip_log.remove)
        splits = {}
        for name, (paths, latlon) in readable.items():
            labels = targets[name][keep[name]]
            images = DecodedFiles([paths[k] for k in keep[name]], self.image_size, labels=labels,
                                  strict=self.strict, skip_log=self._skip_log)
            if self.kept_in_memory:
                images = materialise(images, f"{name} images")
            splits[name] = Split(images, labels, extras={"latlon": latlon[keep[name]]})
        return splits

    def _shard_splits(self) -> dict[str, Split]:
        """The packed photos and places; the partition built from the places, the photos outside it left out of
        training, as from the files."""
        folder, meta = self.pack()
        extras = read_extras(folder)
        sizes = {name: int(count) for name, count in meta["splits"].items()}
        missing = [name for name in sizes if "latlon" not in extras.get(name, {})]
        if missing:
            raise ValueError(f"data.uri={self.uri}: no places (latlon) for split(s) {missing} in its extras "
                             f"(pack it again with python -m distill.data.pack)")
        places = {name: extras[name]["latlon"] for name in sizes}
        targets = self.label_places(places)
        keep = {name: self.kept(name, targets[name]) for name in sizes}
        self.kept_in_memory = keep_in_memory(self.in_memory, sum(len(k) for k in keep.values()), self.image_size)
        url = self.uri.rstrip("/") if is_remote(self.uri) else None
        splits = {}
        for name, count in sizes.items():
            images: Any = ShardImages(folder, name, self.image_size, count, url=url, take=keep[name])
            if self.kept_in_memory:
                images = materialise(images, f"{name} images")
            splits[name] = Split(images, targets[name][keep[name]], extras={"latlon": places[name][keep[name]]})
        return splits

    def pack_splits(self) -> dict[str, Split]:
        """What ``python -m distill.data.pack`` writes: every readable photo (those outside the partition too: a
        run from the shards builds its partition again, with its own data.t1 / data.t2) and its place. A photo
        whose pixel data fails is replaced by the next of its cell, as in training."""
        self.setup()
        return {name: Split(DecodedFiles(paths, self.image_size, labels=self._labels[name], strict=self.strict,
                                         skip_log=self._skip_log), extras={"latlon": latlon})
                for name, (paths, latlon) in self._listed.items()}

    def pack_meta(self) -> dict[str, Any]:
        """What ``distill_pack.json`` records besides the split sizes (after the images are written)."""
        rows = self._skipped_rows()
        return {"kind": type(self).__name__, "fingerprint_parts": self.fingerprint_parts(),
                "image_size": self.image_size, "strict": self.strict, "skipped": len(rows), "skipped_rows": rows}

    def _skipped_rows(self) -> list[str]:
        if self.format == "litdata":
            return list(self.pack()[1].get("skipped_rows", []))
        skipped = [row for rows in self._skipped.values() for row in rows]
        if self._skip_log is not None:  # pixel data that failed when decoded (in memory, or in a worker)
            skipped += [f"{path}: does not decode (replaced by the next image of its cell)"
                        for path in self._skip_log.paths()]
        return skipped

    def summary(self) -> dict[str, Any]:
        """Split sizes, partition, where the photos come from, and the skipped rows (file:line: reason); from
        shards, those met when they were packed."""
        base = super().summary()
        skipped = self._skipped_rows()
        return {**base, "image_size": self.image_size, "strict": self.strict, "in_memory": self.kept_in_memory,
                "format": self.format, "skipped": len(skipped), "skipped_rows": skipped[:_REPORT_ROWS]}


class SyntheticGeoDataModule(GeoArrayDataModule):
    """Geotagged synthetic photos: teacher_train and train (labelled with their S2 cell) and test splits.

    The partition is built from the teacher_train and train places (PlaNet's t1, t2 scaled to the data's size);
    training photos outside the kept cells are left out, test photos all kept (target -1 outside the cells).

    ``num_unlabelled`` more photos join the student's ``train`` split after its labelled ones, without their places:
    target ``UNLABELLED``, ``extras["latlon"]`` NaN. They are rendered from their own seeds, so the labelled splits
    and the partition (built from the labelled places only) are those of a run without them; the teacher's soft
    targets teach on them, the labels' cross-entropy skips them.
    """

    def __init__(self, image_size: int = 48, num_teacher_train: int = 6000, num_train: int = 4000,
                 num_test: int = 1500, num_unlabelled: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_unlabelled = unlabelled_count(num_unlabelled)
        if int(image_size) < 16:
            raise ValueError(f"data.image_size must be >= 16, got {image_size}")
        self.image_size = int(image_size)
        self.sizes = {"teacher_train": int(num_teacher_train), "train": int(num_train), "test": int(num_test)}
        for name, count in self.sizes.items():
            if count < 1:
                raise ValueError(f"data.num_{name} must be positive, got {count}")

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "sizes": self.sizes, "num_unlabelled": self.num_unlabelled,
                "seed": self.seed, "partition": self.partition_settings(), "generator": source_digest(geo_photos)}

    def teacher_key_parts(self) -> dict[str, Any]:
        """The partition (the teacher's classes) is built from both training splits' places, so the teacher
        depends on both; the test split and the unlabelled photos leave it as it is."""
        return teacher_split_parts(self.key_parts(), keep=("teacher_train", "train"), drop=("num_unlabelled",))

    def build_splits(self) -> dict[str, Split]:
        places = {name: sample_places(count, np.random.default_rng([self.seed, 3000 + offset]))
                  for offset, (name, count) in enumerate(self.sizes.items())}
        targets = self.label_places(places)
        splits = {}
        for offset, name in enumerate(self.sizes):
            keep = self.kept(name, targets[name])
            images = render_places(places[name][keep], self.image_size, seed=[self.seed, 10 + offset])
            splits[name] = Split(images, targets[name][keep], extras={"latlon": places[name][keep]})
        if self.num_unlabelled:
            # the next offset, so the labelled splits (and the partition, built from their places above, which
            # these photos never reach) stay those of a run without unlabelled ones
            offset = len(self.sizes)
            hidden = sample_places(self.num_unlabelled, np.random.default_rng([self.seed, 3000 + offset]))
            extra = render_places(hidden, self.image_size, seed=[self.seed, 10 + offset])
            splits["train"] = splits["train"].with_unlabelled(
                extra, extras={"latlon": np.full((self.num_unlabelled, 2), np.nan)})
        return splits

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "image_size": self.image_size, "unlabelled": self.num_unlabelled}
