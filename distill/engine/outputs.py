"""Stage 2, the teacher's outputs: ``trainer.predict`` over every (sample, augmentation view), stored once.

Each rank predicts its shard of the (index, view) pairs and writes it to a shard file; after a barrier, rank 0
assembles the shards into the teacher-output cache (``distill.engine.cache``) and publishes it atomically under
the cache's lock; after a second barrier every rank opens the published cache. A cache that already exists is
opened without predicting anything. The cache's key digests ``distill.engine.keys.teacher_output_key_parts`` (data,
teacher weights, layers, resolution, views, augmentation, memory format, dtype); a miss logs which parts changed since
the most recently used cache.

Two one-process runs that want the same outputs at once (the jobs of a parallel sweep share a teacher) do not both
predict them: the first holds the cache's prediction lock while it predicts and publishes, the other waits for it
and then reads the published cache. The ranks of a multi-process job start inside ``trainer.predict``, so such a
job predicts without that lock; two of them at once each predict into their own shard folders and the second to
publish finds the cache built.

Memory does not grow with the data set: a rank's pairs are computed from their position (``PairDataset``, no list
of pairs), and each batch's outputs are copied at once into this rank's shard files, arrays on disk sized for the
whole shard (``ShardWriter``), never kept as tensors. Holding one small tensor per batch pinned the memory of every
batch's activations (freed memory between them cannot be returned): with 80,000 pairs that kept about 440 MB.
Rank 0 then reads the shards back in slices of ``READ_ROWS`` rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from distill.core.fingerprint import fingerprint
from distill.core.io import atomic_write_json
from distill.engine.cache import TeacherOutputCache, file_lock
from distill.engine.cache.files import fsync_file
from distill.engine.features import first_tensor
from distill.engine.keys import explain_miss, newest_manifest_parts, teacher_output_key_parts

__all__ = ["READ_ROWS", "PairDataset", "ShardWriter", "TeacherOutputPredictor", "cache_teacher_outputs",
           "one_predictor", "pair_count", "read_shards", "teacher_output_key"]

log = logging.getLogger(__name__)


READ_ROWS = 4096  # rows of a rank's shard handed to the cache writer at a time


def pair_count(num_samples: int, num_views: int, rank: int, world_size: int) -> int:
    """How many of the ``num_samples`` x ``num_views`` (index, view) pairs rank ``rank`` of ``world_size`` predicts."""
    return len(range(int(rank), int(num_samples) * int(num_views), int(world_size)))


class PairDataset(Dataset):
    """One rank's share of the (index, view) pairs, served as the training dataset serves them: every
    ``world_size``-th pair, from ``rank`` on, of the view-major order (every index of view 0, then of view 1, ...).
    A pair is computed from its position: nothing is kept per pair."""

    def __init__(self, dataset: Dataset, num_views: int, rank: int = 0, world_size: int = 1) -> None:
        self.dataset = dataset
        self.num_samples, self.num_views = len(dataset), int(num_views)
        self.rank, self.world_size = int(rank), int(world_size)
        self.count = pair_count(self.num_samples, self.num_views, self.rank, self.world_size)

    def __len__(self) -> int:
        return self.count

    def pair(self, item: int) -> tuple[int, int]:
        """The (index, view) at position ``item`` of this rank's share."""
        if not 0 <= item < self.count:
            raise IndexError(f"pair {item} out of range for {self.count} pairs")
        view, index = divmod(self.rank + int(item) * self.world_size, self.num_samples)
        return index, view

    def __getitem__(self, item: int):
        return self.dataset[self.pair(item)]


class ShardWriter:
    """One rank's teacher outputs in ``folder``, written as they come: ``rank<r>-index.npy``, ``rank<r>-view.npy``
    and ``rank<r>-out-<name>.npy`` (float32, one row per pair), created for ``count`` rows on the first batch;
    ``finish`` flushes them and writes ``rank<r>.json`` (the rows written and the output names), which
    ``read_shards`` requires."""

    def __init__(self, folder: Path, rank: int, count: int) -> None:
        self.folder, self.rank, self.count = Path(folder), int(rank), int(count)
        self.rows = 0
        self.arrays: dict[str, np.ndarray] = {}
        self.names: list[str] = []

    def _file(self, part: str) -> Path:
        return self.folder / f"rank{self.rank}-{part}.npy"

    def _open(self, outputs: dict[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names = sorted(outputs)
        shapes = {"index": (), "view": (), **{f"out-{name}": outputs[name].shape[1:] for name in self.names}}
        for part, shape in shapes.items():
            dtype = np.int64 if part in ("index", "view") else np.float32
            self.arrays[part] = np.lib.format.open_memmap(self._file(part), mode="w+", dtype=dtype,
                                                          shape=(self.count, *shape))

    def add(self, indices: torch.Tensor, views: torch.Tensor, outputs: dict[str, torch.Tensor]) -> None:
        values = {name: tensor.detach().float().cpu().numpy() for name, tensor in outputs.items()}
        if not self.arrays:
            self._open(values)
        if sorted(values) != self.names:
            raise ValueError(f"teacher outputs {sorted(values)} in a batch, {self.names} in the first")
        start, end = self.rows, self.rows + len(indices)
        if end > self.count:
            raise ValueError(f"rank {self.rank} predicted more than its {self.count} (index, view) pairs")
        self.arrays["index"][start:end] = indices.cpu().numpy()
        self.arrays["view"][start:end] = views.cpu().numpy()
        for name, value in values.items():
            self.arrays[f"out-{name}"][start:end] = value
        self.rows = end

    def finish(self) -> None:
        for part in list(self.arrays):
            array = self.arrays.pop(part)
            array.flush()
            del array
            fsync_file(self._file(part))
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / f"rank{self.rank}.json", {"rows": self.rows, "outputs": self.names})


def run_token() -> str:
    """A name no other process picks: this process's id and a random suffix."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


class TeacherOutputPredictor(pl.LightningModule):
    """Wraps the distillation module's teacher forward for ``trainer.predict`` (no gradients, teacher in eval); each
    batch's outputs go straight into this rank's ``ShardWriter``, sized for the rank's share of the
    ``num_samples`` x ``num_views`` pairs.

    The shards go to a folder of this run's own under ``shards_root`` (``self.shards``): two runs that build the same
    cache at once (a parallel sweep sharing one teacher) must not write, or remove, each other's files. The ranks of
    one run agree on the folder in ``setup``, where rank 0's name is broadcast."""

    def __init__(self, module, shards_root: str | os.PathLike, num_samples: int, num_views: int,
                 world_size: int = 1) -> None:
        super().__init__()
        self.module = module
        self.shards_root = Path(shards_root)
        self.shards = self.shards_root / run_token()
        self.num_samples, self.num_views, self.world_size = int(num_samples), int(num_views), int(world_size)
        self.writer: ShardWriter | None = None

    def setup(self, stage: str) -> None:
        if self.world_size > 1:
            self.shards = self.shards_root / self.trainer.strategy.broadcast(self.shards.name, src=0)

    def shard_writer(self) -> ShardWriter:
        """This rank's writer (made on first use: the rank is known once the predict stage runs)."""
        if self.writer is None:
            rank = self.trainer.global_rank
            self.writer = ShardWriter(self.shards, rank, pair_count(self.num_samples, self.num_views, rank,
                                                                    self.world_size))
        return self.writer

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.module.teacher.eval()
        outputs = self.module.teacher_forward(batch)
        missing = [name for name, value in outputs.items() if value is None]
        if missing:  # a cache holds one output per image: a layer that runs on some batches only cannot fill it
            terms = [spec.id for spec in self.module.specs if spec.teacher in missing]
            raise RuntimeError(f"caching the teacher's outputs: its layer(s) {missing} (loss terms {terms}) did not "
                               f"run on batch {batch_idx}; a term whose teacher layer does not run on every batch "
                               f"needs cache.enabled=false")
        self.shard_writer().add(batch["index"], batch["view"],
                                {name: first_tensor(value) for name, value in outputs.items()})


def teacher_output_key(module, datamodule, *, dtype: str = "float32", channels_last: bool | None = None) -> str:
    """Everything that shapes the cached outputs: data, teacher weights, layers, resolution, views, augmentation,
    the teacher's memory format and the stored dtype (``distill.engine.keys.teacher_output_key_parts``)."""
    return fingerprint(**teacher_output_key_parts(module, datamodule, dtype=dtype, channels_last=channels_last))


def cache_teacher_outputs(module, datamodule, trainer: pl.Trainer, cache_root: Path, *, dtype: str = "float32",
                          progress: bool = True) -> TeacherOutputCache:
    """Open the teacher-output cache for ``module``'s teacher, predicting and publishing it first if needed."""
    dataset = datamodule.dataset("train", with_teacher_image=True)
    parts = teacher_output_key_parts(module, datamodule, dtype=dtype)
    cache = TeacherOutputCache(Path(cache_root), fingerprint(**parts), len(dataset), datamodule.num_views,
                               dtype=dtype, parts=parts)
    if cache.validate():
        log.info("Teacher outputs: read from cache %s", cache.path)
        return _opened(cache, trainer)
    world_size = max(1, int(getattr(trainer, "world_size", 1)))
    with one_predictor(cache, world_size):
        if world_size == 1 and cache.validate():  # another run predicted it while this one waited
            log.info("Teacher outputs: read from cache %s, built by another run meanwhile", cache.path)
            return _opened(cache, trainer)
        _predict_and_publish(module, datamodule, trainer, cache, dataset, parts, world_size, progress)
    return _opened(cache, trainer)


def one_predictor(cache: TeacherOutputCache, world_size: int) -> contextlib.AbstractContextManager:
    """The cache's prediction lock for a one-process job (see the module docstring); nothing for a multi-process
    job, whose other ranks do not exist yet."""
    return file_lock(cache.predict_lock_path) if world_size == 1 else contextlib.nullcontext()


def _predict_and_publish(module, datamodule, trainer: pl.Trainer, cache: TeacherOutputCache, dataset,
                         parts: dict[str, Any], world_size: int, progress: bool) -> None:
    if trainer.is_global_zero:
        explain_miss("teacher-output", parts, newest_manifest_parts(cache.root, cache.path))
        log.info("Teacher outputs: building the cache %s (%d samples x %d views)", cache.path, len(dataset),
                 datamodule.num_views)
    predictor = TeacherOutputPredictor(module, cache.root / ".shards" / cache.name, len(dataset),
                                       datamodule.num_views, world_size)
    # The loader is built lazily on each rank: trainer.predict may start the other ranks.
    trainer.predict(predictor, dataloaders=_LazyShardLoader(dataset, datamodule, trainer, world_size),
                    return_predictions=False)
    shards = predictor.shards
    (predictor.writer or ShardWriter(shards, trainer.global_rank, 0)).finish()  # no batches: an empty shard
    trainer.strategy.barrier("teacher-output shards written")
    if trainer.is_global_zero:
        cache.open_or_build_from_batches(lambda: read_shards(shards, world_size), show_progress=progress)
        shutil.rmtree(shards, ignore_errors=True)
        with contextlib.suppress(OSError):
            predictor.shards_root.rmdir()  # only when no other run is predicting into it
    trainer.strategy.barrier("teacher-output cache published")


def _opened(cache: TeacherOutputCache, trainer: pl.Trainer) -> TeacherOutputCache:
    cache.load()
    with contextlib.suppress(OSError):
        os.utime(cache.manifest_path)  # last used: what `python -m distill.cache prune` goes by
    digest = hashlib.sha256()
    for name, entry in sorted(cache.manifest["outputs"].items()):
        digest.update(f"{name}:{entry['sha256']}".encode())
    log.info("Teacher outputs: rank %d reads cache %s (digest %s)", trainer.global_rank, cache.key,
             digest.hexdigest()[:16])
    return cache


class _LazyShardLoader:
    """Iterable that builds this rank's DataLoader when iterated (after the ranks exist)."""

    def __init__(self, dataset, datamodule, trainer: pl.Trainer, world_size: int) -> None:
        self.dataset, self.datamodule, self.trainer, self.world_size = dataset, datamodule, trainer, world_size

    def _loader(self) -> DataLoader:
        pairs = PairDataset(self.dataset, self.datamodule.num_views, self.trainer.global_rank, self.world_size)
        return DataLoader(pairs, batch_size=self.datamodule.eval_batch_size,
                          num_workers=self.datamodule.num_workers, collate_fn=default_collate)

    def __len__(self) -> int:
        return len(self._loader())

    def __iter__(self) -> Iterator:
        return iter(self._loader())


def read_shards(shards: Path, world_size: int, rows: int = READ_ROWS
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]:
    """Every rank's ``ShardWriter`` files as (indices, views, {name: outputs}) batches of at most ``rows`` rows."""
    for rank in range(world_size):
        done = shards / f"rank{rank}.json"
        if not done.is_file():
            raise FileNotFoundError(f"teacher-output shard {done} is missing: rank {rank} did not finish predicting")
        written = json.loads(done.read_text(encoding="utf-8"))
        count = int(written["rows"])
        if not count:
            continue
        parts = ["index", "view", *(f"out-{name}" for name in written["outputs"])]
        arrays = {part: np.load(shards / f"rank{rank}-{part}.npy", mmap_mode="r") for part in parts}
        for start in range(0, count, rows):
            piece = {part: torch.from_numpy(np.array(array[start:min(count, start + rows)]))
                     for part, array in arrays.items()}
            yield piece.pop("index"), piece.pop("view"), {part[4:]: value for part, value in piece.items()}
        del arrays
