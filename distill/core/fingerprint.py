"""Fingerprints: short, stable digests of plain data, of files and of module weights, used to name caches.

A cache key is ``fingerprint(**parts)`` of everything that shapes the cached thing; a changed part gives a new key.
``files_fingerprint`` digests a list of files (their sizes and modification times, or their contents), so that a
data set edited in place gets a new key; ``fingerprint_parts_diff`` names the parts in which two keys differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["file_sha256", "source_tree_digest", "VERIFY_MODES", "files_fingerprint", "fingerprint",
           "fingerprint_parts_diff", "memory_format", "module_fingerprint", "plain_parts", "verify_mode"]

_DIGEST_CHARS = 16
_HASH_CHUNK = 1 << 20

VERIFY_MODES = ("stat", "content")
"""How ``files_fingerprint`` sees a file: ``stat`` (size and modification time in ns: fast, catches any ordinary
edit) or ``content`` (sha256 of the bytes: also catches an edit that kept the size and restored the time)."""


def _plain(value, key: str):
    """Return ``value`` as JSON-ready plain data, or raise TypeError naming ``key``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"fingerprint part {key!r}: non-finite float {value!r} is not plain data")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{key}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for sub_key, item in value.items():
            if not isinstance(sub_key, str):
                raise TypeError(
                    f"fingerprint part {key!r}: dict key {sub_key!r} is a "
                    f"{type(sub_key).__name__}, expected str"
                )
            out[sub_key] = _plain(item, f"{key}.{sub_key}")
        return out
    raise TypeError(
        f"fingerprint part {key!r}: {type(value).__name__} is not plain data "
        "(expected None, bool, int, float, str, list, tuple or dict of those)"
    )


def plain_parts(**parts) -> dict:
    """``parts`` as JSON-ready plain data (tuples as lists), or TypeError naming the offending key."""
    return {key: _plain(value, key) for key, value in parts.items()}


def fingerprint(**parts) -> str:
    """Short, stable hex digest of plain-data ``parts``, for naming a cache.

    The digest is the sha256 of a canonical JSON (keys sorted, tuples as lists), so it does not
    depend on argument order or the process. A non-plain value raises TypeError naming its key.
    """
    canonical = json.dumps(
        plain_parts(**parts),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]


def module_fingerprint(module: nn.Module) -> str:
    """Short hex sha256 of a module's class and weights, so a changed teacher changes the key.

    Hashes the class name and, for every ``state_dict`` entry, its name, dtype, shape and raw bytes.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module_fingerprint: expected an nn.Module, got {type(module).__name__}")
    digest = hashlib.sha256()
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}\n".encode())
    for name, value in module.state_dict().items():
        digest.update(f"{name}\n".encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
            if tensor.numel():
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:  # extra state: hash its representation
            digest.update(f"{type(value).__name__}|{value!r}\n".encode())
    return digest.hexdigest()[:_DIGEST_CHARS]


def verify_mode(mode: str, name: str = "cache.verify") -> str:
    """``mode`` if it is one of VERIFY_MODES, else a ValueError naming the config key ``name``."""
    if mode not in VERIFY_MODES:
        raise ValueError(f"{name} must be one of {list(VERIFY_MODES)} (how data files are keyed: by size and "
                         f"modification time, or by content), got {mode!r}")
    return mode


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_tree_digest(root: Path) -> str:
    """Short digest of the Python source under ``root``: every ``.py`` file in the order of their relative paths
    (``/``-separated), each digested with its path and length, so a change, addition, removal or rename of any file
    gives a new digest. Caches of what code computes (synthetic data, a teacher's metrics) key on it."""
    root = Path(root)
    digest = hashlib.sha256()
    for name, file in sorted((file.relative_to(root).as_posix(), file) for file in root.rglob("*.py")):
        content = file.read_bytes()
        digest.update(f"{name}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()[:_DIGEST_CHARS]


def files_fingerprint(paths: Iterable[str | os.PathLike], mode: str = "stat") -> str:
    """Short hex digest of a file list, in the given order, and of what each file holds.

    ``mode="stat"``: each file's absolute path, size and modification time in ns (``os.stat().st_mtime_ns``), so any
    edit, replacement, addition, removal or rename gives a new digest without reading the files.
    ``mode="content"``: the path, size and sha256 of the bytes instead of the time (reads every file; also catches
    an edit that kept the size and restored the modification time, and ignores a mere ``touch``).
    A missing file is digested as missing (a file that appears later changes the digest).
    """
    verify_mode(mode, "mode")
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        resolved = path.resolve()
        try:
            stat = path.stat()
        except FileNotFoundError:
            digest.update(f"{resolved}|missing\n".encode())
            continue
        what = stat.st_mtime_ns if mode == "stat" else file_sha256(path)
        digest.update(f"{resolved}|{stat.st_size}|{what}\n".encode())
    return digest.hexdigest()[:_DIGEST_CHARS]


def fingerprint_parts_diff(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the parts in which two key-part mappings differ, in sorted order.

    Nested mappings are compared part by part (``data.files.train``); any other value (a list, a digest) is one
    part. A part present on one side only is listed too.
    """
    changed: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        name = f"{prefix}{key}"
        if key not in old or key not in new:
            changed.append(name)
            continue
        before, after = old[key], new[key]
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changed += fingerprint_parts_diff(before, after, f"{name}.")
        elif _normalised(before) != _normalised(after):
            changed.append(name)
    return changed


def _normalised(value):
    """Tuples as lists (what a JSON round trip gives), so a stored part compares equal to a fresh one."""
    if isinstance(value, (list, tuple)):
        return [_normalised(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _normalised(item) for key, item in value.items()}
    return value


def memory_format(module: nn.Module) -> str:
    """``"channels_last"`` when the module's 4-D weights are stored NHWC (``model.to(memory_format=...)``), else
    ``"contiguous"``: the layout changes the float summation order, hence a fitted teacher and its outputs."""
    for parameter in module.parameters():
        if parameter.dim() == 4 and not parameter.is_contiguous() and parameter.is_contiguous(
                memory_format=torch.channels_last):
            return "channels_last"
    return "contiguous"
