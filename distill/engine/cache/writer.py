"""Filling a cache's arrays: checks batches of teacher outputs and writes them into one ``.npy`` memmap per output.

An :class:`ArrayWriter` accepts batches for arbitrary ``(view, index)`` pairs in any order, refuses a pair written
twice, and on :meth:`ArrayWriter.finish` refuses a pair never written; it then flushes the files and returns their
manifest entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from distill.engine.cache.files import fsync_file
from distill.engine.cache.manifest import SAFE_NAME, output_entry

__all__ = ["index_pairs", "ArrayWriter", "as_index_array"]


def as_index_array(values, what: str) -> np.ndarray:
    """Convert sample indices or view ids (tensor, array, sequence, int) to an int64 array."""
    if isinstance(values, torch.Tensor):
        if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise ValueError(f"{what} must be an integer tensor, got dtype {values.dtype}")
        return values.detach().cpu().numpy().astype(np.int64, copy=False)
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        if array.size == 0:
            return array.astype(np.int64)
        raise ValueError(f"{what} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def index_pairs(indices, views, num_samples: int, num_views: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(indices (B,), views (B,) or one int)`` as int64 (B,) arrays; out-of-range values raise IndexError naming
    ``where`` (negative values are not wrapped)."""
    index_array = as_index_array(indices, f"{where} indices")
    if index_array.ndim != 1:
        raise ValueError(f"{where} indices must be 1-D (B,), got shape {tuple(index_array.shape)}")
    view_array = as_index_array(views, f"{where} views")
    if view_array.ndim == 0:
        view_array = np.full(index_array.shape, int(view_array), dtype=np.int64)
    elif view_array.shape != index_array.shape:
        raise ValueError(f"{where} views must be an int or have the shape of indices {tuple(index_array.shape)}, "
                         f"got {tuple(view_array.shape)}")
    for name, array, count in (("sample index", index_array, num_samples), ("view", view_array, num_views)):
        bad = array[(array < 0) | (array >= count)]
        if bad.size:
            raise IndexError(f"{where} {name} {int(bad[0])} out of range: expected 0..{count - 1}")
    return index_array, view_array


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype}"
    return type(value).__name__


class ArrayWriter:
    """Writes teacher outputs into ``directory/<name>.npy`` arrays of shape (num_views, num_samples, *shape).

    The arrays are created on the first batch that has the output; every later batch must have the same
    output names and per-sample shapes. Error messages start with the ``where`` given to :meth:`add`.
    """

    def __init__(self, directory: Path, num_samples: int, num_views: int, dtype: str):
        self.directory = Path(directory)
        self.num_samples = num_samples
        self.num_views = num_views
        self.dtype = dtype
        self.arrays: dict[str, np.ndarray] = {}
        self.filled = np.zeros((num_views, num_samples), dtype=bool)

    def add(self, indices, views, outputs, where: str) -> None:
        """Check one batch and copy it in: ``indices`` (B,), ``views`` (B,) or one int, ``outputs`` {name: (B, ...)}."""
        index_array, view_array = self._positions(indices, views, where)
        self._check_outputs(outputs, where)
        for name, tensor in outputs.items():
            self._write_output(name, tensor, view_array, index_array, where)
        self.filled[view_array, index_array] = True

    def _positions(self, indices, views, where: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, views)`` as int64 (B,) arrays, checked for range and for pairs written before."""
        index_array, view_array = index_pairs(indices, views, self.num_samples, self.num_views, f"{where} yielded")
        self._check_repeats(index_array, view_array, where)
        return index_array, view_array

    def _check_repeats(self, index_array: np.ndarray, view_array: np.ndarray, where: str) -> None:
        """Raise if a ``(view, index)`` pair occurs twice in the batch or was written by an earlier batch."""
        pairs = view_array * self.num_samples + index_array
        unique, counts = np.unique(pairs, return_counts=True)
        earlier = self.filled.reshape(-1)[pairs]
        if unique.size == pairs.size and not earlier.any():
            return
        pair = int(pairs[earlier][0]) if earlier.any() else int(unique[counts > 1][0])
        view, index = divmod(pair, self.num_samples)
        raise ValueError(
            f"{where} yielded sample index {index} more than once (view {view}); "
            "every (view, index) must be computed exactly once"
        )

    def _check_outputs(self, outputs, where: str) -> None:
        """The batch's outputs: a non-empty mapping of file-safe names, the same names as earlier batches."""
        if not isinstance(outputs, Mapping) or not outputs:
            raise ValueError(
                f"{where} outputs must be a non-empty dict name -> tensor, got {type(outputs).__name__}"
            )
        if self.arrays and set(outputs) != set(self.arrays):
            raise ValueError(f"{where} yielded outputs {sorted(outputs)}, earlier batches had {sorted(self.arrays)}")
        for name in outputs:
            if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
                raise ValueError(
                    f"output name {name!r} must be letters, digits, '_', '-', '.' "
                    "starting with a letter or digit (it names a file)"
                )

    def _write_output(self, name: str, tensor, view_array: np.ndarray, index_array: np.ndarray, where: str) -> None:
        """Check one output tensor of a batch and store its rows at ``(view_array, index_array)``."""
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise ValueError(f"output {name!r} must be a float tensor, got {_describe(tensor)}")
        if tensor.ndim < 1 or tensor.shape[0] != index_array.size:
            raise ValueError(
                f"output {name!r} has shape {tuple(tensor.shape)}, expected first dim "
                f"{index_array.size} (one row per index)"
            )
        values = tensor.detach().cpu().float().numpy()
        if not np.isfinite(values).all():
            raise ValueError(f"output {name!r} of {where} contains NaN or inf")
        if name not in self.arrays:
            self.arrays[name] = np.lib.format.open_memmap(
                self.directory / f"{name}.npy",
                mode="w+",
                dtype=np.dtype(self.dtype),
                shape=(self.num_views, self.num_samples, *values.shape[1:]),
            )
        target = self.arrays[name]
        if values.shape[1:] != target.shape[2:]:
            raise ValueError(
                f"output {name!r} has per-sample shape {tuple(values.shape[1:])}, "
                f"earlier batches had {tuple(target.shape[2:])}"
            )
        limit = float(np.finfo(target.dtype).max)
        if values.size and float(np.abs(values).max()) > limit:
            raise ValueError(f"output {name!r} overflows {self.dtype} (|value| > {limit:g}); use dtype=\"float32\"")
        target[view_array, index_array] = values

    def check_complete(self, source: str, requirement: str) -> None:
        """Raise ValueError naming how many ``(view, index)`` pairs no batch wrote (and the first of them)."""
        missing = int(self.filled.size - self.filled.sum())
        if missing:
            view, index = np.argwhere(~self.filled)[0]
            raise ValueError(
                f"{source} left {missing} of {self.filled.size} (view, index) pairs unfilled "
                f"(first missing: view {int(view)}, index {int(index)}); {requirement}"
            )

    def finish(self) -> dict[str, dict]:
        """Flush, fsync and checksum every array; return the manifest's ``outputs`` and release the memmaps."""
        outputs = {}
        for name in list(self.arrays):
            array = self.arrays.pop(name)
            array.flush()
            shape = list(array.shape)
            del array
            file = self.directory / f"{name}.npy"
            fsync_file(file)
            outputs[name] = output_entry(file, shape, self.dtype)
        return outputs

    def close(self) -> None:
        """Release the memmaps without finishing (after an error)."""
        self.arrays.clear()
