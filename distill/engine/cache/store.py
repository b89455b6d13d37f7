"""Teacher-output cache: the frozen teacher's outputs for every ``(view, index)`` of a dataset, on disk.

In distillation the frozen teacher's forward pass dominates the cost of a training step. The augmentation of a
sample is a deterministic function of ``(seed, view, index)``, so the teacher's outputs can be computed once for
every ``(view, index)`` pair, stored, and read back during training: a step then only runs the student.

A cache lives in ``root/<key>-<dtype>`` in the layout of :mod:`distill.engine.cache.manifest`: caches of one key
stored as float16 and as float32 live side by side. The ``key`` names what was computed (teacher weights, data,
augmentation seed, ...); build it with :func:`distill.core.fingerprint.fingerprint` and
:func:`distill.core.fingerprint.module_fingerprint` so that any change gives a new directory. ``parts``, the plain
data the key digests, is kept in the manifest, so that a later miss can say what changed.

Building writes into a temporary directory ``root/.<name>.tmp-*`` next to the final one and renames it into place
only when it is complete, so a crash never leaves a half-written cache under the final name. :meth:`validate`
checks the manifest, the file sizes and the checksums; a damaged cache is reported with a ``RuntimeWarning``,
removed and (by the ``open_or_build*`` methods) rebuilt, never used.

Every build, and the check-then-build of the ``open_or_build*`` methods, runs under :func:`file_lock` on
``root/.<name>.lock`` (``name``: ``<key>-<dtype>``). Two processes calling :meth:`open_or_build` for one key at
once therefore compute the outputs once: the second waits for the lock, then finds the finished cache valid and
loads it. A one-process run also holds ``root/.<name>.predict.lock`` while it predicts the outputs that it then
builds from (``distill.engine.outputs``).
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from distill.engine.cache.files import fsync_dir, remove
from distill.engine.cache.lock import file_lock
from distill.engine.cache.manifest import (
    DTYPES,
    MANIFEST_NAME,
    SAFE_NAME,
    directory_problem,
    header,
    manifest_problem,
    open_output,
    read_manifest,
    write_manifest,
)
from distill.engine.cache.writer import ArrayWriter, index_pairs

__all__ = ["Batch", "ComputeView", "TeacherOutputCache"]

log = logging.getLogger(__name__)

ComputeView = Callable[[int], Iterable[tuple[torch.Tensor, Mapping[str, torch.Tensor]]]]
"""``compute_view(view)`` yields ``(indices (B,), {name: tensor (B, ...)})`` for every sample of that view."""

Batch = tuple[torch.Tensor, "torch.Tensor | int", Mapping[str, torch.Tensor]]
"""``(indices (B,), views (B,) or one int, {name: tensor (B, ...)})``: teacher outputs of arbitrary pairs."""


class TeacherOutputCache:
    """Teacher outputs for every ``(view, index)`` of a dataset, stored as numpy memmaps.

    Args:
        root: directory holding caches; this cache lives in ``root/<key>-<dtype>`` (``name``).
        key: name of what was computed (see :func:`distill.core.fingerprint.fingerprint`); a safe directory name.
        num_samples: number of samples in the dataset (indices ``0..num_samples-1``).
        num_views: number of augmentation views (view ids ``0..num_views-1``).
        dtype: storage dtype, ``"float32"`` or ``"float16"`` (half the disk, values rounded);
            :meth:`get` always returns float32. Part of the directory name: both can be kept.
        parts: the plain data ``key`` digests, written into the manifest when the cache is built (optional).
    """

    def __init__(self, root, key: str, num_samples: int, num_views: int = 1, dtype: str = "float32",
                 parts: Mapping | None = None):
        if not isinstance(key, str) or not SAFE_NAME.fullmatch(key):
            raise ValueError(
                f"key must be a non-empty directory name of letters, digits, '_', '-', '.' "
                f"starting with a letter or digit, got {key!r}"
            )
        for name, value in (("num_samples", num_samples), ("num_views", num_views)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.root = Path(root)
        self.key = key
        self.num_samples = int(num_samples)
        self.num_views = int(num_views)
        self.dtype = dtype
        self.parts = dict(parts) if parts is not None else None
        self.name = f"{key}-{dtype}"
        self.path = self.root / self.name
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

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    @property
    def lock_path(self) -> Path:
        return self.root / f".{self.name}.lock"

    @property
    def predict_lock_path(self) -> Path:
        """Held by a one-process run while it predicts this cache's outputs (``distill.engine.outputs``): another run
        that wants the same outputs waits for it, then reads them."""
        return self.root / f".{self.name}.predict.lock"

    def _header(self) -> dict:
        return header(self.key, self.num_samples, self.num_views, self.dtype)

    # ---------------------------------------------------------------- checking

    def is_complete(self) -> bool:
        """Whether a manifest exists and matches this cache's key, sizes and dtype (no checksums)."""
        try:
            manifest = read_manifest(self.path)
        except (FileNotFoundError, ValueError):
            return False
        return manifest_problem(manifest, self._header()) is None

    def validate(self) -> bool:
        """Check manifest, file sizes and checksums; remove the cache and warn if anything is wrong.

        Returns True if the cache can be used. A missing directory returns False silently; any
        other problem emits a ``RuntimeWarning`` naming the file and the problem, deletes
        ``self.path`` and returns False, so a corrupt cache is never used.
        """
        if not self.path.exists() and not self.path.is_symlink():
            return False
        problem = directory_problem(self.path, self._header())
        if problem is None:
            return True
        warnings.warn(
            f"teacher-output cache {problem}; removing {self.path} so it is rebuilt",
            RuntimeWarning,
            stacklevel=2,
        )
        remove(self.path)
        self._manifest = None
        self._arrays = None
        return False

    # ---------------------------------------------------------------- reading

    def load(self) -> TeacherOutputCache:
        """Open the arrays as read-only memory maps; raise FileNotFoundError if there is no complete cache."""
        try:
            manifest = read_manifest(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no teacher-output cache at {self.path} ({MANIFEST_NAME} missing); "
                "call build() or open_or_build() first"
            ) from None
        mismatch = manifest_problem(manifest, self._header())
        if mismatch is not None:
            raise ValueError(f"{self.manifest_path}: {mismatch}; call open_or_build() to rebuild")
        arrays = {name: open_output(self.path, name, entry) for name, entry in manifest["outputs"].items()}
        self._manifest = manifest
        self._arrays = arrays
        return self

    def _loaded(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self.load()
        return self._arrays

    @property
    def manifest(self) -> dict:
        """The cache's parsed manifest (opens the cache if needed)."""
        self._loaded()
        return self._manifest

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
        index_array, view_array = index_pairs(indices, views, self.num_samples, self.num_views,
                                              f"cache {self.key!r}:")
        batch = {}
        for name, array in arrays.items():
            rows = np.asarray(array[view_array, index_array])  # fancy indexing copies
            batch[name] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        return batch

    # ---------------------------------------------------------------- building

    def build(self, compute_view: ComputeView, show_progress: bool = False) -> TeacherOutputCache:
        """Compute and store the teacher outputs of every ``(view, index)``, view by view.

        ``compute_view(view)`` must yield ``(indices LongTensor (B,), {name: float tensor (B, ...)})``
        covering every sample index exactly once. Arrays are written to a temporary directory,
        checked, checksummed and fsynced, then renamed to ``self.path``; if a complete cache appeared
        there meanwhile it is kept and this one discarded. Returns self (call :meth:`load` to read).
        """
        with file_lock(self.lock_path):
            self._build_locked(lambda writer: self._fill_by_view(writer, compute_view, show_progress))
        return self

    def open_or_build(self, compute_view: ComputeView, show_progress: bool = False) -> TeacherOutputCache:
        """Load the cache if it validates, else build it first; safe to call from several processes."""
        with file_lock(self.lock_path):
            if not self.validate():
                self._build_locked(lambda writer: self._fill_by_view(writer, compute_view, show_progress))
        return self.load()

    def build_from_batches(self, batches: Iterable[Batch], show_progress: bool = False) -> TeacherOutputCache:
        """Store teacher outputs that arrive as batches of arbitrary ``(view, index)`` pairs, in any order.

        Each batch is ``(indices (B,), views (B,) or one int, {name: float tensor (B, ...)})``. Together the
        batches must cover every ``(view, index)`` exactly once: a pair given twice raises ValueError at
        once, and pairs never given raise ValueError naming their count after the last batch. Otherwise
        as :meth:`build`: written to a temporary directory under the lock, then renamed into place.
        """
        with file_lock(self.lock_path):
            self._build_locked(lambda writer: self._fill_from_batches(writer, batches, show_progress))
        return self

    def open_or_build_from_batches(
        self, make_batches: Callable[[], Iterable[Batch]], show_progress: bool = False
    ) -> TeacherOutputCache:
        """Load the cache if it validates, else build it from ``make_batches()``; safe from several processes.

        ``make_batches`` is called (under the lock) only when no valid cache exists.
        """
        with file_lock(self.lock_path):
            if not self.validate():
                self._build_locked(lambda writer: self._fill_from_batches(writer, make_batches(), show_progress))
        return self.load()

    def _fill_by_view(self, writer: ArrayWriter, compute_view: ComputeView, show_progress: bool) -> None:
        with _progress_bar(self.key, show_progress) as bar:
            for view in range(self.num_views):
                batches = compute_view(view)
                if bar.total is None and hasattr(batches, "__len__"):
                    bar.total = len(batches) * self.num_views
                    bar.refresh()
                for batch in batches:
                    where = f"compute_view({view})"
                    indices, outputs = _unpack(batch, 2, f"{where} must yield (indices, outputs) pairs")
                    writer.add(indices, view, outputs, where)
                    bar.update(1)
        writer.check_complete(
            "compute_view",
            f"it must yield every sample index 0..{self.num_samples - 1} for every view 0..{self.num_views - 1}",
        )

    def _fill_from_batches(self, writer: ArrayWriter, batches: Iterable[Batch], show_progress: bool) -> None:
        with _progress_bar(self.key, show_progress) as bar:
            if hasattr(batches, "__len__"):
                bar.total = len(batches)
                bar.refresh()
            for position, batch in enumerate(batches):
                where = f"batch {position}"
                indices, views, outputs = _unpack(batch, 3, f"{where} must be an (indices, views, outputs) triple")
                writer.add(indices, views, outputs, where)
                bar.update(1)
        writer.check_complete(
            "the batches",
            f"together they must give every sample index 0..{self.num_samples - 1} "
            f"for every view 0..{self.num_views - 1}",
        )

    def _build_locked(self, fill: Callable[[ArrayWriter], None]) -> None:
        """Build into a fresh temporary directory with ``fill(writer)``, then publish it (call under the lock)."""
        self._remove_stale_temporaries()
        temporary = self.root / f".{self.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.mkdir(temporary)
        writer = ArrayWriter(temporary, self.num_samples, self.num_views, self.dtype)
        try:
            fill(writer)
            parts = {} if self.parts is None else {"parts": self.parts}
            write_manifest(temporary, {**self._header(), **parts, "outputs": writer.finish()})
            fsync_dir(temporary)
            self._publish(temporary)
        finally:
            writer.close()
            remove(temporary)  # no-op once renamed; removes partial output on any error
        self._manifest = None
        self._arrays = None

    def _remove_stale_temporaries(self) -> None:
        """Delete temporary directories left by killed builds (call only while holding the lock)."""
        for stale in self.root.glob(f".{self.name}.tmp-*"):
            log.info("removing unfinished teacher-output cache %s", stale)
            remove(stale)

    def _publish(self, temporary: Path) -> None:
        """Rename the finished temporary directory to the final path (atomic on POSIX)."""
        try:
            os.rename(temporary, self.path)
        except OSError:
            if self.is_complete():  # another process finished first: keep theirs
                log.info("teacher-output cache %s was completed by another process", self.path)
                return
            remove(self.path)  # an incomplete leftover (e.g. a crashed copy) occupies the name
            os.rename(temporary, self.path)
        fsync_dir(self.root)
        log.info("teacher-output cache written to %s", self.path)


def _unpack(batch, size: int, requirement: str) -> tuple:
    """``batch`` as a tuple of ``size`` items, or ValueError stating the ``requirement``."""
    try:
        items = tuple(batch)
    except TypeError:
        items = ()
    if len(items) != size:
        raise ValueError(f"{requirement}, got {type(batch).__name__}")
    return items


def _progress_bar(key: str, show_progress: bool):
    """A tqdm bar over batches (its total set later if known); silent unless ``show_progress``."""
    from tqdm.auto import tqdm

    return tqdm(total=None, desc=f"teacher outputs {key}", unit="batch", disable=not show_progress)
