"""Stage 1, the teacher: local weights, or fitted once on the task's own loss and cached by a key.

The fit is a Lightning ``trainer.fit`` of a ``TeacherFitModule`` on a single-device Trainer built from
``cfg.trainer`` (same accelerator and precision). Across processes (the ranks of a DDP job, parallel sweep jobs) the
fit happens once: one process fits under a file lock on the key, the others wait for the lock and load the result.
The key's parts (``distill.engine.keys.teacher_key_parts``) are kept beside the cached teacher; a miss logs which
of them changed since the newest cached teacher.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn

from distill.core.fingerprint import fingerprint
from distill.core.io import atomic_torch_save
from distill.engine.cache import file_lock
from distill.engine.keys import explain_miss, newest_sidecar_parts, parts_path, teacher_key_parts, write_parts
from distill.engine.training import TrainingModule
from distill.tasks.base import Task

__all__ = ["TeacherFitModule", "prepare_teacher", "fit_teacher"]

log = logging.getLogger(__name__)


class TeacherFitModule(TrainingModule):
    """A model trained on the task's own losses, with no teacher: how a teacher is fitted when no weights are given."""

    def __init__(self, model: nn.Module, task: Task, *, lr: float, weight_decay: float = 0.05,
                 schedule: str = "one_cycle", warmup_steps: int = 0, seed: int = 0) -> None:
        optimizer = functools.partial(torch.optim.AdamW, lr=float(lr), weight_decay=float(weight_decay))
        # The fit is never resumed, so its random state simply runs on from the seeded start of the run.
        super().__init__(optimizer=optimizer, scheduler=schedule, warmup_steps=warmup_steps, seed=seed,
                         reseed_each_step=False)
        self.model = model
        self.task = task

    def compute_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.task.fit_losses(self.model, batch)

    def batch_size(self, batch: Any) -> int:
        return self.task.batch_size(batch)


def fit_teacher(model: nn.Module, task: Task, loader, trainer: pl.Trainer, fit_cfg: dict[str, Any],
                seed: int) -> dict[str, float]:
    """Fit ``model`` in place with ``trainer``; returns the last epoch's mean loss."""
    module = TeacherFitModule(model, task, lr=float(fit_cfg.get("lr", 2e-3)),
                              weight_decay=float(fit_cfg.get("weight_decay", 0.05)),
                              schedule=str(fit_cfg.get("schedule", "one_cycle")),
                              warmup_steps=int(fit_cfg.get("warmup_steps", 0)), seed=seed)
    trainer.fit(module, train_dataloaders=loader)
    model.eval()
    loss = trainer.callback_metrics.get("train/loss_epoch")
    return {"loss": round(float(loss), 5)} if loss is not None else {}


def prepare_teacher(teacher: nn.Module, task: Task, datamodule: Any, *, weights: str | None, fit_cfg: dict[str, Any],
                    cache_dir: Path | None, key_parts: dict[str, Any], make_trainer: Callable[[int], pl.Trainer],
                    seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """Return (teacher in eval mode, info); ``info["source"]`` is "weights", "cache" or "fitted".

    ``weights``: the file the task already loaded into ``teacher`` when it built it (nothing to fit then).
    ``make_trainer(epochs)`` gives the single-device Trainer a fit runs on.
    """
    if weights:
        log.info("Teacher: weights from %s", weights)
        return teacher.eval(), {"source": "weights", "path": str(weights)}
    fitted = task.teacher_for_fitting(teacher, datamodule)
    parts = teacher_key_parts(key_parts, datamodule, fit_cfg)
    key = fingerprint(**parts)
    if cache_dir is None:
        return _fit(fitted, task, datamodule, fit_cfg, make_trainer, seed, key, None)
    path = Path(cache_dir) / "teachers" / f"{key}.pt"
    with file_lock(path.with_name(f".{key}.lock")):
        loaded = _load_cached(fitted, path)
        if loaded is not None:
            log.info("Teacher: fitted earlier on %s, loaded from cache %s", type(datamodule).__name__, path)
            return task.teacher_from_fitted(fitted).eval(), {"source": "cache", "path": str(path), **loaded}
        explain_miss("teacher", parts, newest_sidecar_parts(path.parent, key))
        result = _fit(fitted, task, datamodule, fit_cfg, make_trainer, seed, key, path)
        write_parts(parts_path(path.parent, key), parts)
        return result


def _load_cached(fitted: nn.Module, path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        _check_matches(fitted, payload["state_dict"])
        fitted.load_state_dict(payload["state_dict"])
        with contextlib.suppress(OSError):
            os.utime(path)  # last used: what `python -m distill.cache prune` goes by
        return dict(payload.get("meta", {}))
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
        log.warning("cached teacher %s is unreadable (%s); fitting it again", path, error)
        return None


def _check_matches(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Raise ValueError unless ``state`` has exactly ``model``'s tensors, names and shapes: checked before loading,
    because ``load_state_dict`` copies every matching tensor before it reports a mismatch, and a teacher fitted
    from such half-loaded weights would start from another model's."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"it holds another model's weights ({len(missing)} tensors missing, e.g. "
                         f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    shapes = [name for name, tensor in expected.items() if tuple(state[name].shape) != tuple(tensor.shape)]
    if shapes:
        raise ValueError(f"it holds another model's weights ({len(shapes)} tensors of other shapes, e.g. {shapes[:2]})")


def _fit(fitted: nn.Module, task: Task, datamodule: Any, fit_cfg: dict[str, Any],
         make_trainer: Callable[[int], pl.Trainer], seed: int, key: str, path: Path | None) -> tuple[nn.Module, dict]:
    log.info("Teacher: no weights given; fitting the teacher on %s (cached for later runs)", type(datamodule).__name__)
    started = time.time()
    loader = datamodule.teacher_train_dataloader(batch_size=fit_cfg.get("batch_size"))
    stats = fit_teacher(fitted, task, loader, make_trainer(int(fit_cfg.get("epochs", 3))), fit_cfg, seed)
    meta = {"key": key, **stats, "fit_seconds": round(time.time() - started, 1)}
    fitted.cpu()
    if path is not None:
        atomic_torch_save({"state_dict": fitted.state_dict(), "meta": meta}, path)
    return task.teacher_from_fitted(fitted).eval(), {"source": "fitted", "path": str(path) if path else None, **meta}
