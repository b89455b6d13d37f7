"""Fingerprints: short, stable digests of plain data and of module weights, used to name caches.

A cache key is ``fingerprint(**parts)`` of everything that shapes the cached thing; a changed part gives a new key.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["fingerprint", "module_fingerprint"]

_DIGEST_CHARS = 16


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


def fingerprint(**parts) -> str:
    """Short, stable hex digest of plain-data ``parts``, for naming a cache.

    The digest is the sha256 of a canonical JSON (keys sorted, tuples as lists), so it does not
    depend on argument order or the process. A non-plain value raises TypeError naming its key.
    """
    canonical = json.dumps(
        {key: _plain(value, key) for key, value in parts.items()},
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
