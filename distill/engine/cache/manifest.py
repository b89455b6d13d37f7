"""The on-disk format of a teacher-output cache: its manifest, and the checks that a directory matches it.

Layout of one cache directory::

    manifest.json        format version, key, sizes and, per output, shape, dtype, file, sha256, bytes
    <output name>.npy    one array per teacher output, shape (num_views, num_samples, *shape)

The manifest's header is ``{"version", "key", "num_samples", "num_views", "dtype"}``; its ``outputs`` maps each
output name to ``{"shape", "dtype", "file", "sha256", "bytes"}``; ``parts`` (optional) holds the plain data the key
digests (``distill.engine.keys``), which a later cache miss is compared with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from distill.core.fingerprint import file_sha256
from distill.engine.cache.files import fsync_file

__all__ = [
    "DTYPES",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SAFE_NAME",
    "directory_problem",
    "header",
    "manifest_problem",
    "open_output",
    "output_entry",
    "read_manifest",
    "sha256_file",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DTYPES = ("float16", "float32")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # keys and output names: they name files

_ENTRY_FIELDS = ("shape", "dtype", "file", "sha256", "bytes")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (the checksum a manifest records)."""
    return file_sha256(path)


def header(key: str, num_samples: int, num_views: int, dtype: str) -> dict:
    """The manifest fields that identify a cache (everything but ``outputs``)."""
    return {
        "version": FORMAT_VERSION,
        "key": key,
        "num_samples": num_samples,
        "num_views": num_views,
        "dtype": dtype,
    }


def output_entry(file: Path, shape: list[int], dtype: str) -> dict:
    """Manifest entry of one finished (flushed) array file: shape, dtype, file name, checksum and size."""
    return {
        "shape": list(shape),
        "dtype": dtype,
        "file": file.name,
        "sha256": sha256_file(file),
        "bytes": file.stat().st_size,
    }


def write_manifest(directory: Path, manifest: Mapping) -> None:
    """Write ``directory/manifest.json`` and flush it to disk."""
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    fsync_file(path)


def read_manifest(directory: Path) -> dict:
    """Parse ``directory``'s manifest; raise FileNotFoundError or ValueError describing the problem."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: manifest is not a JSON object")
    return manifest


def manifest_problem(manifest: Mapping, expected: Mapping) -> str | None:
    """Describe how ``manifest`` disagrees with the ``expected`` :func:`header`, or None if it matches."""
    for field, want in expected.items():
        if manifest.get(field) != want:
            return f"{field} is {manifest.get(field)!r}, expected {want!r}"
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return "outputs is missing or empty"
    for name, entry in outputs.items():
        problem = _entry_problem(name, entry, expected)
        if problem is not None:
            return problem
    return None


def _entry_problem(name: str, entry, expected: Mapping) -> str | None:
    if not isinstance(entry, dict):
        return f"output {name!r} entry is not an object"
    for field in _ENTRY_FIELDS:
        if field not in entry:
            return f"output {name!r} lacks {field!r}"
    if entry["file"] != f"{name}.npy":
        return f"output {name!r} file is {entry['file']!r}, expected {name + '.npy'!r}"
    shape = entry["shape"]
    leading = [expected["num_views"], expected["num_samples"]]
    if not isinstance(shape, list) or len(shape) < 2 or shape[:2] != leading:
        return f"output {name!r} shape is {shape!r}, expected [{leading[0]}, {leading[1]}, ...]"
    if entry["dtype"] != expected["dtype"]:
        return f"output {name!r} dtype is {entry['dtype']!r}, expected {expected['dtype']!r}"
    return None


def _array_mismatch(file: Path, array: np.ndarray, entry: Mapping) -> str | None:
    if list(array.shape) != entry["shape"] or array.dtype != np.dtype(entry["dtype"]):
        return f"{file}: holds {array.dtype} {list(array.shape)}, manifest says {entry['dtype']} {entry['shape']}"
    return None


def open_output(directory: Path, name: str, entry: Mapping) -> np.ndarray:
    """Open one output's array read-only as a memory map; raise if it is missing or disagrees with ``entry``."""
    file = directory / entry["file"]
    if not file.is_file():
        raise FileNotFoundError(f"{file}: array file of output {name!r} is missing")
    array = np.load(file, mmap_mode="r")
    mismatch = _array_mismatch(file, array, entry)
    if mismatch is not None:
        raise ValueError(mismatch)
    return array


def directory_problem(directory: Path, expected: Mapping) -> str | None:
    """Check a cache directory completely: manifest, then each file's size, checksum, shape and dtype.

    Returns a message naming the file and the problem, or None if the cache can be used.
    """
    if not directory.is_dir():
        return f"{directory}: is not a directory"
    try:
        manifest = read_manifest(directory)
    except (FileNotFoundError, ValueError) as error:
        return str(error)
    mismatch = manifest_problem(manifest, expected)
    if mismatch is not None:
        return f"{directory / MANIFEST_NAME}: {mismatch}"
    for name, entry in manifest["outputs"].items():
        file = directory / entry["file"]
        if not file.is_file():
            return f"{file}: array file of output {name!r} is missing"
        size = file.stat().st_size
        if size != entry["bytes"]:
            return f"{file}: size is {size} bytes, expected {entry['bytes']} (truncated or overwritten)"
        if sha256_file(file) != entry["sha256"]:
            return f"{file}: sha256 checksum mismatch (file is corrupt)"
        try:
            array = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as error:
            return f"{file}: not a readable .npy file ({error})"
        mismatch = _array_mismatch(file, array, entry)
        del array
        if mismatch is not None:
            return mismatch
    return None
