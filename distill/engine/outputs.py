"""Stage 2, the teacher's outputs: ``trainer.predict`` over every (sample, augmentation view), stored once.

Each rank predicts its shard of the (index, view) pairs and writes it to a shard file; after a barrier, rank 0
assembles the shards into the teacher-output cache (``distill.engine.cache``) and publishes it atomically under
the cache's lock; after a second barrier every rank opens the published cache. A cache that already exists is
opened without predicting anything. The cache's key digests ``distill.engine.keys.teacher_output_key_parts`` (data,
teacher weights, layers, resolution, views, augmentation, memory format, dtype); a miss logs which parts changed since
the most recently used cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from distill.core.fingerprint import fingerprint
from distill.core.io import atomic_torch_save
from distill.engine.cache import TeacherOutputCache
from distill.engine.features import first_tensor
from distill.engine.keys import explain_miss, newest_manifest_parts, teacher_output_key_parts

__all__ = ["TeacherOutputPredictor", "cache_teacher_outputs", "teacher_output_key", "PairDataset"]

log = logging.getLogger(__name__)


class PairDataset(Dataset):
    """The (index, view) pairs of one rank's shard, served as the training dataset serves them."""

    def __init__(self, dataset: Dataset, pairs: list[tuple[int, int]]) -> None:
        self.dataset, self.pairs = dataset, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int):
        return self.dataset[self.pairs[item]]


class TeacherOutputPredictor(pl.LightningModule):
    """Wraps the distillation module's teacher forward for ``trainer.predict`` (no gradients, teacher in eval)."""

    def __init__(self, module) -> None:
        super().__init__()
        self.module = module
        self.collected: list[tuple[torch.Tensor, torch.Tensor, dict]] = []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.module.teacher.eval()
        outputs = self.module.teacher_forward(batch)
        self.collected.append((batch["index"].cpu(), batch["view"].cpu(),
                               {name: first_tensor(value).float().cpu() for name, value in outputs.items()}))


def teacher_output_key(module, datamodule, *, dtype: str = "float32", channels_last: bool | None = None) -> str:
    """Everything that shapes the cached outputs: data, teacher weights, layers, resolution, views, augmentation,
    the teacher's memory format and the stored dtype (``distill.engine.keys.teacher_output_key_parts``)."""
    return fingerprint(**teacher_output_key_parts(module, datamodule, dtype=dtype, channels_last=channels_last))


def _shard_pairs(num_samples: int, num_views: int, rank: int, world_size: int) -> list[tuple[int, int]]:
    pairs = [(index, view) for view in range(num_views) for index in range(num_samples)]
    return pairs[rank::world_size]


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
    if trainer.is_global_zero:
        explain_miss("teacher-output", parts, newest_manifest_parts(Path(cache_root), cache.path))
        log.info("Teacher outputs: building the cache %s (%d samples x %d views)", cache.path, len(dataset),
                 datamodule.num_views)
    predictor = TeacherOutputPredictor(module)
    world_size = max(1, int(getattr(trainer, "world_size", 1)))
    # The loader is built lazily on each rank: trainer.predict may start the other ranks.
    shards = Path(cache_root) / ".shards" / cache.name
    trainer.predict(predictor, dataloaders=_LazyShardLoader(dataset, datamodule, trainer, world_size),
                    return_predictions=False)
    _write_shard(predictor.collected, shards / f"rank{trainer.global_rank}.pt")
    trainer.strategy.barrier("teacher-output shards written")
    if trainer.is_global_zero:
        cache.open_or_build_from_batches(lambda: _read_shards(shards, world_size), show_progress=progress)
        shutil.rmtree(shards, ignore_errors=True)
    trainer.strategy.barrier("teacher-output cache published")
    return _opened(cache, trainer)


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
        pairs = _shard_pairs(len(self.dataset), self.datamodule.num_views, self.trainer.global_rank, self.world_size)
        return DataLoader(PairDataset(self.dataset, pairs), batch_size=self.datamodule.eval_batch_size,
                          num_workers=self.datamodule.num_workers, collate_fn=default_collate)

    def __len__(self) -> int:
        return len(self._loader())

    def __iter__(self) -> Iterator:
        return iter(self._loader())


def _write_shard(collected: list, path: Path) -> None:
    if not collected:
        atomic_torch_save({"index": torch.zeros(0, dtype=torch.long)}, path)
        return
    names = collected[0][2].keys()
    atomic_torch_save({"index": torch.cat([c[0] for c in collected]), "view": torch.cat([c[1] for c in collected]),
                       "outputs": {n: torch.cat([c[2][n] for c in collected]) for n in names}}, path)


def _read_shards(shards: Path, world_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict]]:
    for rank in range(world_size):
        path = shards / f"rank{rank}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"teacher-output shard {path} is missing: rank {rank} did not finish predicting")
        shard = torch.load(path, map_location="cpu", weights_only=True)
        if len(shard["index"]):
            yield shard["index"], shard["view"], shard["outputs"]
