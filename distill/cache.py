"""Teacher-output cache.

In distillation the frozen teacher's forward pass dominates the cost of a training step. The
augmentation of a sample is a deterministic function of ``(seed, view, index)``, so the teacher's
outputs can be computed once for every ``(view, index)`` pair, stored on disk, and read back during
training: a step then only runs the student.

Layout of one cache (``root/key``)::

    manifest.json        format version, key, sizes and, per output, shape, dtype, file, sha256
    <output name>.npy    one array per teacher output, shape (num_views, num_samples, *shape)

The ``key`` names what was computed (teacher weights, data, augmentation seed, ...); build it with
:func:`fingerprint` and :func:`module_fingerprint` so that any change gives a new directory.

A cache is written into a temporary directory next to the final one and renamed into place only
when it is complete, so a crash never leaves a half-written cache under the final name. Reading
validates the manifest, the file sizes and the checksums; a damaged cache is reported with a
``RuntimeWarning``, removed and rebuilt, never used.

Multi-process use (DDP): builds of one key are serialised by an exclusive ``fcntl.flock`` on the
lock file ``root/.<key>.lock`` (POSIX only), so two processes calling :meth:`open_or_build` at once
compute the outputs only once: the second waits for the lock, then finds and loads the finished
cache. The training engine calls :meth:`open_or_build` on rank 0, then a barrier, then the other
ranks call :meth:`TeacherOutputCache.load`; the lock makes concurrent calls safe regardless.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

try:  # POSIX only; without it builds are not serialised between processes.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX platforms
    fcntl = None

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "TeacherOutputCache",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

_DIGEST_CHARS = 16
_DTYPES = ("float16", "float32")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_HASH_CHUNK = 1 << 20

log = logging.getLogger(__name__)

ComputeView = Callable[[int], Iterable[tuple[torch.Tensor, Mapping[str, torch.Tensor]]]]


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# File helpers
# --------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Persist a directory's entries (new files, renames); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _as_index_array(values, what: str) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


class TeacherOutputCache:
    """Teacher outputs for every ``(view, index)`` of a dataset, stored as numpy memmaps.

    Args:
        root: directory holding caches; this cache lives in ``root/key``.
        key: name of what was computed (see :func:`fingerprint`); a safe directory name.
        num_samples: number of samples in the dataset (indices ``0..num_samples-1``).
        num_views: number of augmentation views (view ids ``0..num_views-1``).
        dtype: storage dtype, ``"float32"`` or ``"float16"`` (half the disk, values rounded);
            :meth:`get` always returns float32.
    """

    def __init__(self, root, key: str, num_samples: int, num_views: int = 1, dtype: str = "float32"):
        if not isinstance(key, str) or not _SAFE_NAME.fullmatch(key):
            raise ValueError(
                f"key must be a non-empty directory name of letters, digits, '_', '-', '.' "
                f"starting with a letter or digit, got {key!r}"
            )
        for name, value in (("num_samples", num_samples), ("num_views", num_views)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.root = Path(root)
        self.key = key
        self.num_samples = int(num_samples)
        self.num_views = int(num_views)
        self.dtype = dtype
        self.path = self.root / key
        self._manifest: dict | None = None
        self._arrays: dict[str, np.ndarray] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, key={self.key!r}, "
            f"num_samples={self.num_samples}, num_views={self.num_views}, dtype={self.dtype!r})"
        )

    # Memory maps are not sent to DataLoader workers or other processes: they reopen lazily.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_manifest"] = None
        state["_arrays"] = None
        return state

    # ---------------------------------------------------------------- manifest checks

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def _read_manifest(self, directory: Path) -> dict:
        """Parse ``directory``'s manifest; raise ValueError/FileNotFoundError describing the problem."""
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

    def _manifest_problem(self, manifest: dict) -> str | None:
        """Describe how ``manifest`` disagrees with this cache's settings, or None if it matches."""
        expected = {
            "version": FORMAT_VERSION,
            "key": self.key,
            "num_samples": self.num_samples,
            "num_views": self.num_views,
            "dtype": self.dtype,
        }
        for field, want in expected.items():
            if manifest.get(field) != want:
                return f"{field} is {manifest.get(field)!r}, expected {want!r}"
        outputs = manifest.get("outputs")
        if not isinstance(outputs, dict) or not outputs:
            return "outputs is missing or empty"
        for name, entry in outputs.items():
            if not isinstance(entry, dict):
                return f"output {name!r} entry is not an object"
            for field in ("shape", "dtype", "file", "sha256", "bytes"):
                if field not in entry:
                    return f"output {name!r} lacks {field!r}"
            if entry["file"] != f"{name}.npy":
                return f"output {name!r} file is {entry['file']!r}, expected {name + '.npy'!r}"
            shape = entry["shape"]
            if (
                not isinstance(shape, list)
                or len(shape) < 2
                or shape[:2] != [self.num_views, self.num_samples]
            ):
                return (
                    f"output {name!r} shape is {shape!r}, expected "
                    f"[{self.num_views}, {self.num_samples}, ...]"
                )
            if entry["dtype"] != self.dtype:
                return f"output {name!r} dtype is {entry['dtype']!r}, expected {self.dtype!r}"
        return None

    def is_complete(self) -> bool:
        """Whether a manifest exists and matches this cache's key, sizes and dtype (no checksums)."""
        try:
            manifest = self._read_manifest(self.path)
        except (FileNotFoundError, ValueError):
            return False
        return self._manifest_problem(manifest) is None

    def validate(self) -> bool:
        """Check manifest, file sizes and checksums; remove the cache and warn if anything is wrong.

        Returns True if the cache can be used. A missing directory returns False silently; any
        other problem emits a ``RuntimeWarning`` naming the file and the problem, deletes
        ``self.path`` and returns False, so a corrupt cache is never used.
        """
        if not self.path.exists() and not self.path.is_symlink():
            return False
        problem = self._find_problem()
        if problem is None:
            return True
        warnings.warn(
            f"teacher-output cache {problem}; removing {self.path} so it is rebuilt",
            RuntimeWarning,
            stacklevel=2,
        )
        _remove(self.path)
        self._manifest = None
        self._arrays = None
        return False

    def _find_problem(self) -> str | None:
        if not self.path.is_dir():
            return f"{self.path}: is not a directory"
        try:
            manifest = self._read_manifest(self.path)
        except (FileNotFoundError, ValueError) as error:
            return str(error)
        mismatch = self._manifest_problem(manifest)
        if mismatch is not None:
            return f"{self.manifest_path}: {mismatch}"
        for name, entry in manifest["outputs"].items():
            file = self.path / entry["file"]
            if not file.is_file():
                return f"{file}: array file of output {name!r} is missing"
            size = file.stat().st_size
            if size != entry["bytes"]:
                return f"{file}: size is {size} bytes, expected {entry['bytes']} (truncated or overwritten)"
            checksum = _sha256_file(file)
            if checksum != entry["sha256"]:
                return f"{file}: sha256 checksum mismatch (file is corrupt)"
            try:
                array = np.load(file, mmap_mode="r")
            except (OSError, ValueError) as error:
                return f"{file}: not a readable .npy file ({error})"
            if list(array.shape) != entry["shape"] or array.dtype != np.dtype(entry["dtype"]):
                return (
                    f"{file}: holds {array.dtype} {list(array.shape)}, manifest says "
                    f"{entry['dtype']} {entry['shape']}"
                )
            del array
        return None

    # ---------------------------------------------------------------- reading

    def load(self) -> TeacherOutputCache:
        """Open the arrays as read-only memory maps; raise FileNotFoundError if there is no complete cache."""
        try:
            manifest = self._read_manifest(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no teacher-output cache at {self.path} ({MANIFEST_NAME} missing); "
                "call build() or open_or_build() first"
            ) from None
        mismatch = self._manifest_problem(manifest)
        if mismatch is not None:
            raise ValueError(f"{self.manifest_path}: {mismatch}; call open_or_build() to rebuild")
        arrays = {}
        for name, entry in manifest["outputs"].items():
            file = self.path / entry["file"]
            if not file.is_file():
                raise FileNotFoundError(f"{file}: array file of output {name!r} is missing")
            array = np.load(file, mmap_mode="r")
            if list(array.shape) != entry["shape"] or array.dtype != np.dtype(entry["dtype"]):
                raise ValueError(
                    f"{file}: holds {array.dtype} {list(array.shape)}, manifest says "
                    f"{entry['dtype']} {entry['shape']}"
                )
            arrays[name] = array
        self._manifest = manifest
        self._arrays = arrays
        return self

    def _loaded(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self.load()
        return self._arrays

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the stored teacher outputs (sorted)."""
        return tuple(sorted(self._loaded()))

    @property
    def nbytes(self) -> int:
        """Bytes of array data held by the cache (all outputs, views and samples)."""
        return int(sum(array.nbytes for array in self._loaded().values()))

    def get(self, indices, views=0) -> dict[str, torch.Tensor]:
        """Teacher outputs of a batch: ``{name: float32 tensor (B, *shape)}`` (fresh copies).

        ``indices`` are sample indices (B,); ``views`` the matching view ids, (B,) or one int for
        all. Out-of-range values raise IndexError (negative values are not wrapped).
        """
        arrays = self._loaded()
        index_array = _as_index_array(indices, "indices")
        view_array = _as_index_array(views, "views")
        if index_array.ndim != 1:
            raise ValueError(f"indices must be 1-D (B,), got shape {tuple(index_array.shape)}")
        if view_array.ndim == 0:
            view_array = np.full(index_array.shape, int(view_array), dtype=np.int64)
        elif view_array.shape != index_array.shape:
            raise ValueError(
                f"views must be an int or have the shape of indices {tuple(index_array.shape)}, "
                f"got {tuple(view_array.shape)}"
            )
        bad = index_array[(index_array < 0) | (index_array >= self.num_samples)]
        if bad.size:
            raise IndexError(
                f"sample index {int(bad[0])} out of range: cache {self.key!r} holds "
                f"{self.num_samples} samples (0..{self.num_samples - 1})"
            )
        bad = view_array[(view_array < 0) | (view_array >= self.num_views)]
        if bad.size:
            raise IndexError(
                f"view {int(bad[0])} out of range: cache {self.key!r} holds "
                f"{self.num_views} views (0..{self.num_views - 1})"
            )
        batch = {}
        for name, array in arrays.items():
            rows = np.asarray(array[view_array, index_array])  # fancy indexing copies
            batch[name] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        return batch

    # ---------------------------------------------------------------- writing

    @property
    def lock_path(self) -> Path:
        return self.root / f".{self.key}.lock"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold an exclusive lock on this key's lock file (blocks until other builders are done)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - non-POSIX: no inter-process protection
            yield
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _remove_stale_temporaries(self) -> None:
        """Delete temporary directories left by killed builds (call only while holding the lock)."""
        for stale in self.root.glob(f".{self.key}.tmp-*"):
            log.info("removing unfinished teacher-output cache %s", stale)
            _remove(stale)

    def build(self, compute_view: ComputeView, show_progress: bool = False) -> TeacherOutputCache:
        """Compute and store the teacher outputs of every ``(view, index)``.

        ``compute_view(view)`` must yield ``(indices LongTensor (B,), {name: float tensor (B, ...)})``
        covering every sample index exactly once. Arrays are written to a temporary directory,
        checked, checksummed and fsynced, then renamed to ``self.path``; if a complete cache appeared
        there meanwhile it is kept and this one discarded. Returns self (call :meth:`load` to read).
        """
        with self._lock():
            self._build_locked(compute_view, show_progress)
        return self

    def open_or_build(self, compute_view: ComputeView, show_progress: bool = False) -> TeacherOutputCache:
        """Load the cache if it validates, else build it first; safe to call from several processes."""
        with self._lock():
            if not self.validate():
                self._build_locked(compute_view, show_progress)
        return self.load()

    def _build_locked(self, compute_view: ComputeView, show_progress: bool) -> None:
        self._remove_stale_temporaries()
        temporary = self.root / f".{self.key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.mkdir(temporary)
        try:
            manifest = self._write_arrays(temporary, compute_view, show_progress)
            manifest_file = temporary / MANIFEST_NAME
            manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
            _fsync_file(manifest_file)
            _fsync_dir(temporary)
            self._publish(temporary)
        finally:
            _remove(temporary)  # no-op once renamed; removes partial output on any error
        self._manifest = None
        self._arrays = None

    def _publish(self, temporary: Path) -> None:
        """Rename the finished temporary directory to the final path (atomic on POSIX)."""
        try:
            os.rename(temporary, self.path)
        except OSError:
            if self.is_complete():  # another process finished first: keep theirs
                log.info("teacher-output cache %s was completed by another process", self.path)
                return
            _remove(self.path)  # an incomplete leftover (e.g. a crashed copy) occupies the name
            os.rename(temporary, self.path)
        _fsync_dir(self.root)
        log.info("teacher-output cache written to %s", self.path)

    def _write_arrays(self, directory: Path, compute_view: ComputeView, show_progress: bool) -> dict:
        """Fill one memmap per output from ``compute_view``; return the manifest."""
        from tqdm.auto import tqdm

        arrays: dict[str, np.ndarray] = {}
        filled = np.zeros((self.num_views, self.num_samples), dtype=bool)
        bar = tqdm(total=None, desc=f"teacher outputs {self.key}", unit="batch", disable=not show_progress)
        try:
            for view in range(self.num_views):
                batches = compute_view(view)
                if bar.total is None and hasattr(batches, "__len__"):
                    bar.total = len(batches) * self.num_views
                    bar.refresh()
                for batch in batches:
                    self._write_batch(directory, arrays, filled, view, batch)
                    bar.update(1)
        finally:
            bar.close()
        missing = int(filled.size - filled.sum())
        if missing:
            view, index = np.argwhere(~filled)[0]
            raise ValueError(
                f"compute_view left {missing} of {filled.size} (view, index) pairs unfilled "
                f"(first missing: view {int(view)}, index {int(index)}); it must yield every sample "
                f"index 0..{self.num_samples - 1} for every view 0..{self.num_views - 1}"
            )
        outputs = {}
        for name, array in arrays.items():
            array.flush()
            shape = list(array.shape)
            del array
            file = directory / f"{name}.npy"
            _fsync_file(file)
            outputs[name] = {
                "shape": shape,
                "dtype": self.dtype,
                "file": file.name,
                "sha256": _sha256_file(file),
                "bytes": file.stat().st_size,
            }
        arrays.clear()
        return {
            "version": FORMAT_VERSION,
            "key": self.key,
            "num_samples": self.num_samples,
            "num_views": self.num_views,
            "dtype": self.dtype,
            "outputs": outputs,
        }

    def _write_batch(self, directory: Path, arrays: dict, filled: np.ndarray, view: int, batch) -> None:
        """Check one ``(indices, outputs)`` batch and copy it into the memmaps."""
        try:
            indices, outputs = batch
        except (TypeError, ValueError):
            raise ValueError(
                f"compute_view({view}) must yield (indices, outputs) pairs, got {type(batch).__name__}"
            ) from None
        index_array = _as_index_array(indices, f"compute_view({view}) indices")
        if index_array.ndim != 1:
            raise ValueError(
                f"compute_view({view}) indices must be 1-D (B,), got shape {tuple(index_array.shape)}"
            )
        bad = index_array[(index_array < 0) | (index_array >= self.num_samples)]
        if bad.size:
            raise IndexError(
                f"compute_view({view}) yielded sample index {int(bad[0])}, "
                f"expected 0..{self.num_samples - 1}"
            )
        if np.unique(index_array).size != index_array.size or filled[view, index_array].any():
            repeated = [int(i) for i in index_array if filled[view, i]] or [
                int(v) for v, c in zip(*np.unique(index_array, return_counts=True)) if c > 1
            ]
            raise ValueError(
                f"compute_view({view}) yielded sample index {repeated[0]} more than once; "
                "every (view, index) must be computed exactly once"
            )
        if not isinstance(outputs, Mapping) or not outputs:
            raise ValueError(
                f"compute_view({view}) outputs must be a non-empty dict name -> tensor, "
                f"got {type(outputs).__name__}"
            )
        if arrays and set(outputs) != set(arrays):
            raise ValueError(
                f"compute_view({view}) yielded outputs {sorted(outputs)}, "
                f"earlier batches had {sorted(arrays)}"
            )
        for name, tensor in outputs.items():
            if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
                raise ValueError(
                    f"output name {name!r} must be letters, digits, '_', '-', '.' "
                    "starting with a letter or digit (it names a file)"
                )
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise ValueError(f"output {name!r} must be a float tensor, got {_describe(tensor)}")
            if tensor.ndim < 1 or tensor.shape[0] != index_array.size:
                raise ValueError(
                    f"output {name!r} has shape {tuple(tensor.shape)}, expected first dim "
                    f"{index_array.size} (one row per index)"
                )
            values = tensor.detach().cpu().float().numpy()
            if not np.isfinite(values).all():
                raise ValueError(f"output {name!r} of compute_view({view}) contains NaN or inf")
            if name not in arrays:
                arrays[name] = np.lib.format.open_memmap(
                    directory / f"{name}.npy",
                    mode="w+",
                    dtype=np.dtype(self.dtype),
                    shape=(self.num_views, self.num_samples, *values.shape[1:]),
                )
            target = arrays[name]
            if values.shape[1:] != target.shape[2:]:
                raise ValueError(
                    f"output {name!r} has per-sample shape {tuple(values.shape[1:])}, "
                    f"earlier batches had {tuple(target.shape[2:])}"
                )
            limit = float(np.finfo(target.dtype).max)
            if values.size and float(np.abs(values).max()) > limit:
                raise ValueError(
                    f"output {name!r} overflows {self.dtype} (|value| > {limit:g}); "
                    'use dtype="float32"'
                )
            target[view, index_array] = values
        filled[view, index_array] = True


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype}"
    return type(value).__name__
