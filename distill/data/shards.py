"""A data set's decoded images in LitData shards: written once (``python -m distill.data.pack``), read by index.

Layout of a packed data set (a folder):

    distill_pack.json   what was packed: the data module's kind and key parts (the data's fingerprint, so fitted
                        teachers and teacher outputs are shared with the file path), image size, class names,
                        split sizes, files skipped while packing
    targets.npz         each labelled split's targets
    extras.npz          each split's extra arrays, one row per image (``<split>/<name>``: the geo places)
    positions.npz       each split's position in the shards of every sample index (LitData's writer processes
                        may interleave their items; the positions are read back once, when packing)
    <split>/            LitData shards (``litdata.optimize``): items {"index", "image": (S, S, 3) uint8}

The shards are read by index through ``litdata.StreamingDataset.__getitem__``, never by iterating it. LitData's
own iteration shuffles by its own seed and splits chunks between ranks and workers by its own rules, and resumes
from its own state: a sample's position would depend on the world size and the worker count, which breaks what the
teacher-output cache and an exact resume rest on (the augmentation is a function of (seed, view, index), and
``distill.data.views.ViewSampler`` decides which rank trains on which index, in which order, and where a resumed
epoch continues). Random access keeps our samplers, so a batch from shards equals the batch from files.
Pixels are stored losslessly, exactly as decoded from the files.

``data.uri`` is a local (or mounted) folder, or a URL LitData streams from (``s3://``, ``gs://``, ``azure://``,
``hf://``, ``r2://``; ``local:<folder>`` reads a folder through the same downloading path). From a URL the pack's
small files (``distill_pack.json``, ``targets.npz``, ``positions.npz``, each split's ``index.json``) are downloaded
into ``<cache dir>/shards/<digest of the URL>/`` when the data module is set up, and LitData downloads each chunk
there when a worker first reads from it (``fetch_pack``); credentials are LitData's (the usual environment
variables or files of each cloud).

An item is deserialised alone (``StreamingDataset(batch_decode=0)``). LitData's default decodes a window of up to
256 neighbouring items of the chunk at once, which pays when items are read in stored order; our samplers read in
a shuffled order, so nearly every read missed the window and decoded (and copied) a whole window for one image:
about 16 ms an item against 0.2 ms alone, for 128 px images.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
try:  # the optional [data] extra: only packing and format=litdata need it
    from litdata import StreamingDataset, optimize
    from litdata.streaming.downloader import get_downloader
except ImportError:
    StreamingDataset = optimize = get_downloader = None

from distill.core.io import atomic_write, atomic_write_json

__all__ = ["EXTRAS_FILE", "PACK_FILE", "POSITIONS_FILE", "REMOTE_PREFIXES", "TARGETS_FILE", "ShardImages", "fetch_pack",
           "is_remote", "open_pack", "read_extras", "read_pack", "require_litdata", "shard_count", "write_pack"]

PACK_FILE = "distill_pack.json"
TARGETS_FILE = "targets.npz"
POSITIONS_FILE = "positions.npz"
EXTRAS_FILE = "extras.npz"
PACK_VERSION = 2  # 2: positions.npz
INDEX_FILE = "index.json"  # LitData's list of a folder's chunks
# URL schemes LitData streams from (its downloaders); "local:" reads a folder through the downloading path
REMOTE_PREFIXES = ("s3://", "gs://", "azure://", "hf://", "r2://", "local:")
# fork starts litdata's writer processes in a moment (spawn imports torch again in each); spawn where fork is missing
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class ShardImages:
    """One packed split's images, indexable like a (N, S, S, 3) uint8 array; with ``take``, the packed images
    ``take[0], take[1], ...`` only (a data module that leaves some out, as the geo one does photos outside its
    cells). The LitData reader (and the split's positions) are opened on first use in each process: a DataLoader
    worker opens its own, none is pickled."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, pack: str | os.PathLike, split: str, size: int, count: int, *, url: str | None = None,
                 take: np.ndarray | None = None) -> None:
        self.pack = str(pack)  # the folder holding the pack's small files (for a URL: their downloaded copies)
        self.split = split
        self.folder = str(Path(pack) / split)
        self.url = None if url is None else f"{url.rstrip('/')}/{split}"  # where the chunks are, when remote
        self.size = int(size)
        self.count = int(count)  # images in the split's shards
        self.take = None if take is None else np.asarray(take, dtype=np.int64)
        if self.take is not None and len(self.take) and not (0 <= self.take.min() and self.take.max() < self.count):
            raise IndexError(f"{self.folder}: take holds indices outside the {self.count} packed images")
        self._reader: Any = None  # a litdata.StreamingDataset once opened
        self._positions: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self), self.size, self.size, 3

    def __len__(self) -> int:
        return self.count if self.take is None else len(self.take)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None, "_positions": None}

    def _open(self) -> Any:
        if self._reader is None:
            require_litdata("data.format=litdata")
            stored = shard_count(self.folder)  # StreamingDataset's len() is this rank's share under DDP
            if stored != self.count:
                raise ValueError(f"{self.folder}: {stored} images in the shards, {self.count} in {PACK_FILE}")
            with np.load(Path(self.pack) / POSITIONS_FILE, allow_pickle=False) as stored:
                if self.split not in stored.files or len(stored[self.split]) != self.count:
                    raise ValueError(f"{Path(self.pack) / POSITIONS_FILE}: no {self.count} positions for split "
                                     f"'{self.split}' (pack the data set again)")
                self._positions = stored[self.split]
            if self.url is None:
                self._reader = StreamingDataset(self.folder, batch_decode=0)  # one item, not a window (above)
            else:  # chunks downloaded next to the split's index.json as they are first read
                self._reader = StreamingDataset(self.url, cache_dir=str(Path(self.folder) / "chunks"),
                                                batch_decode=0)
        return self._reader

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range for {len(self)} images in {self.folder}")
        if self.take is not None:
            index = int(self.take[index])
        reader = self._open()
        assert self._positions is not None
        item = reader[int(self._positions[index])]
        image = np.array(item["image"])  # a copy: the reader hands out read-only views of its chunk
        if int(item["index"]) != index or image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            raise ValueError(f"{self.url or self.folder}: item {index} holds index {item['index']}, {image.dtype} "
                             f"{image.shape}; expected index {index}, uint8 {(self.size, self.size, 3)} "
                             f"(shards and {POSITIONS_FILE} written by python -m distill.data.pack)")
        return image


def shard_count(folder: str | os.PathLike) -> int:
    """The items in a LitData folder, from its ``index.json`` (all ranks' items)."""
    path = Path(folder) / INDEX_FILE
    try:
        chunks = json.loads(path.read_text(encoding="utf-8"))["chunks"]
        return sum(int(chunk["chunk_size"]) for chunk in chunks)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a readable LitData index ({type(error).__name__}: {error})") from error


def require_litdata(what: str) -> None:
    """A clear error when LitData is not installed."""
    if optimize is None:
        raise ImportError(f"{what} needs LitData: pip install 'distill[data]' (or pip install litdata)")


def _pack_item(images: Any, index: int) -> dict[str, Any]:
    return {"index": int(index), "image": np.ascontiguousarray(images[index], dtype=np.uint8)}


def _positions(folder: Path, count: int) -> np.ndarray:
    """Where each sample index landed in a freshly written LitData folder (read back once, in order)."""
    reader = StreamingDataset(str(folder))
    positions = np.full(count, -1, dtype=np.int64)
    for position in range(count):
        index = int(reader[position]["index"])
        if not 0 <= index < count or positions[index] >= 0:
            raise ValueError(f"{folder}: item {position} holds sample index {index}, out of range or repeated")
        positions[index] = position
    if (positions < 0).any():
        raise ValueError(f"{folder}: sample index {int(np.flatnonzero(positions < 0)[0])} was not written")
    return positions


def write_pack(out: str | os.PathLike, splits: dict[str, Any], meta: Callable[[], dict[str, Any]], *,
               num_workers: int = 1, chunk_bytes: str = "64MB", verbose: bool = True) -> Path:
    """Write each split's images (any (N, S, S, 3) uint8 source: an array, ``DecodedFiles``) as LitData shards
    under ``out/<split>``, the targets to ``targets.npz``, then ``meta()`` (asked for once the images are written,
    so it can report what decoding met) with the split sizes to ``distill_pack.json``, last: a folder without it is
    an unfinished pack."""
    require_litdata("python -m distill.data.pack")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new or empty folder for the shards")
    out.mkdir(parents=True, exist_ok=True)
    targets, positions, extras = {}, {}, {}
    start_method = multiprocessing.get_start_method(allow_none=True)
    try:
        for name, split in splits.items():
            for key, rows in split.extras.items():
                extras[f"{name}/{key}"] = np.asarray(rows)
            optimize(fn=functools.partial(_pack_item, split.images), inputs=list(range(len(split.images))),
                     output_dir=str(out / name), chunk_bytes=chunk_bytes, num_workers=max(1, int(num_workers)),
                     keep_data_ordered=True, verbose=verbose, start_method=_START_METHOD)
            positions[name] = _positions(out / name, len(split.images))
            if split.targets is not None:
                targets[name] = np.asarray(split.targets)
    finally:  # litdata.optimize sets the process-wide start method (to spawn): DataLoaders after it keep theirs
        multiprocessing.set_start_method(start_method, force=True)
    for file, arrays in ((TARGETS_FILE, targets), (POSITIONS_FILE, positions), (EXTRAS_FILE, extras)):
        atomic_write(out / file, functools.partial(_write_npz, arrays=arrays))
    sizes = {name: len(split.images) for name, split in splits.items()}
    atomic_write_json(out / PACK_FILE, {"version": PACK_VERSION, **meta(), "splits": sizes})
    return out


def _write_npz(tmp: str, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def is_remote(uri: str | os.PathLike) -> bool:
    """Whether ``data.uri`` is a URL LitData downloads from, not a folder."""
    return str(uri).startswith(REMOTE_PREFIXES)


def fetch_pack(uri: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """The local folder holding a pack's small files: ``uri`` itself when it is a folder; for a URL, a folder of
    ``cache_dir`` (one per URL) they are downloaded into, fresh each time (a pack written again is seen). Each file
    is downloaded to a temporary name and renamed, so a reader never sees half a file."""
    if not is_remote(uri):
        return Path(uri).expanduser()
    require_litdata(f"data.uri={uri}")
    url = str(uri).rstrip("/")
    local = Path(cache_dir).expanduser() / "shards" / hashlib.sha256(url.encode()).hexdigest()[:16]
    downloader = get_downloader(url, str(local), [])

    def download(name: str) -> None:
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            downloader.download_file(f"{url}/{name}", str(partial))
        except Exception as error:  # noqa: BLE001 - each cloud's client raises its own kinds
            partial.unlink(missing_ok=True)
            raise FileNotFoundError(f"data.uri={uri}: could not download {name} ({type(error).__name__}: "
                                    f"{error}); expected a folder written by python -m distill.data.pack, "
                                    f"uploaded whole") from error
        os.replace(partial, target)

    download(PACK_FILE)
    try:
        splits = json.loads((local / PACK_FILE).read_text(encoding="utf-8")).get("splits", {})
    except (OSError, ValueError, AttributeError):
        splits = {}  # read_pack names what is wrong with it
    for name in (TARGETS_FILE, POSITIONS_FILE, EXTRAS_FILE, *(f"{split}/{INDEX_FILE}" for split in splits)):
        download(name)
    return local


def read_pack(uri: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(``distill_pack.json`` content, targets by split) of a packed data set in a local folder (``fetch_pack``
    brings a remote one's there); clear errors for anything else."""
    folder = Path(uri).expanduser()
    path = folder / PACK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"data.uri={uri}: no {PACK_FILE} there (a folder written by python -m "
                                f"distill.data.pack <data overrides> <out dir>)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not readable JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("version") != PACK_VERSION:
        raise ValueError(f"{path}: expected a distill pack of version {PACK_VERSION}, got "
                         f"{meta.get('version') if isinstance(meta, dict) else type(meta).__name__} "
                         f"(pack it again with python -m distill.data.pack)")
    with np.load(folder / TARGETS_FILE, allow_pickle=False) as stored:
        targets = {name: stored[name] for name in stored.files}
    return meta, targets


def read_extras(folder: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Each split's extra arrays in a pack's local folder (``{split: {name: rows}}``); none for packs without."""
    path = Path(folder).expanduser() / EXTRAS_FILE
    if not path.is_file():
        return {}
    extras: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as stored:
        for key in stored.files:
            split, _, name = key.partition("/")
            extras.setdefault(split, {})[name] = stored[key]
    return extras


def open_pack(uri: str | os.PathLike, cache_dir: str | os.PathLike, kind: str,
              image_size: int) -> tuple[Path, dict[str, Any]]:
    """(local folder, ``distill_pack.json``) of ``data.uri``, checked against the data module reading it: packed by
    the same kind of data module, at the same image size."""
    folder = fetch_pack(uri, cache_dir)
    meta, _ = read_pack(folder)
    if meta.get("kind") != kind:
        raise ValueError(f"data.uri={uri} holds a packed {meta.get('kind')} data set, not {kind}: use the data "
                         f"config it was packed with")
    if int(meta.get("image_size", -1)) != int(image_size):
        raise ValueError(f"data.image_size={image_size}, but the shards in data.uri={uri} hold "
                         f"{meta.get('image_size')} px images; pack again or set data.image_size to match")
    return folder, meta
