"""Fit a teacher on the recipe's labelled data when no pretrained weights are given, and cache it.

The cache key covers the teacher's config, the data's fingerprint and the seed, so a later run with the
same settings reuses the fitted teacher, and any change fits a new one.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from distill.core.fingerprint import fingerprint
from distill.core.io import atomic_torch_save
from distill.tasks.base import Task

__all__ = ["fit_teacher", "load_or_fit_teacher"]

log = logging.getLogger(__name__)


def fit_teacher(model: nn.Module, task: Task, loader, *, epochs: int, lr: float, weight_decay: float = 0.05,
                progress: bool = True) -> dict[str, float]:
    """A plain supervised loop (AdamW, one-cycle schedule).

    Returns the last epoch's loss, and its training accuracy for single-label targets.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = max(1, epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
    model.train()
    stats: dict[str, float] = {"loss": float("nan")}
    bar = tqdm(total=total, desc="fitting teacher", disable=not progress, leave=False)
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        single_label = True
        for batch in loader:
            output = model(batch["image"])
            loss = task.fit_loss(output, batch["target"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"teacher fitting diverged at epoch {epoch} (loss {loss.item()}); lower teacher.fit.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(output)
            if output.ndim == 2 and batch["target"].ndim == 1:
                correct += (output.argmax(1) == batch["target"]).sum().item()
            else:  # multi-label targets: top-1 accuracy means nothing
                single_label = False
            seen += len(output)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        stats = {"loss": loss_sum / seen}
        if single_label:
            stats["train_accuracy"] = correct / seen
            log.info("teacher fit epoch %d: loss %.4f, train accuracy %.3f", epoch, stats["loss"], stats["train_accuracy"])
        else:
            log.info("teacher fit epoch %d: loss %.4f", epoch, stats["loss"])
    bar.close()
    model.eval()
    return stats


def load_or_fit_teacher(teacher: nn.Module, task: Task, datamodule: Any, *, fit_cfg: dict[str, Any],
                        cache_dir: Path | None, key_parts: dict[str, Any], progress: bool = True) -> tuple[nn.Module, dict]:
    """Return (teacher, info). ``info["source"]`` says whether it was fitted now or read from the cache."""
    key = fingerprint(**key_parts, data=datamodule.fingerprint(), fit=fit_cfg)
    path = Path(cache_dir) / "teachers" / f"{key}.pt" if cache_dir else None
    fitted = task.teacher_for_fitting(teacher, datamodule)
    if path is not None and path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            fitted.load_state_dict(payload["state_dict"])
            log.info("Teacher: fitted earlier on %s, loaded from cache %s", type(datamodule).__name__, path)
            return task.teacher_from_fitted(fitted).eval(), {"source": "cache", "path": str(path), **payload.get("meta", {})}
        except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
            warnings.warn(f"cached teacher {path} is unreadable ({error}); fitting it again", RuntimeWarning)
    log.info("Teacher: no weights given; fitting it on %s (cached for later runs)", type(datamodule).__name__)
    loader = datamodule.teacher_train_dataloader(batch_size=fit_cfg.get("batch_size"))
    stats = fit_teacher(fitted, task, loader, epochs=int(fit_cfg.get("epochs", 3)), lr=float(fit_cfg.get("lr", 2e-3)),
                        weight_decay=float(fit_cfg.get("weight_decay", 0.05)), progress=progress)
    meta = {"key": key, **stats}
    if path is not None:
        atomic_torch_save({"state_dict": fitted.state_dict(), "meta": meta}, path)
    return task.teacher_from_fitted(fitted).eval(), {"source": "fitted", "path": str(path) if path else None, **meta}
