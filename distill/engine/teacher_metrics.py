"""The fitted teacher's test metrics, kept beside it in the cache.

A run that loads a cached teacher and scores it on the same test split, with the same code and settings, reads its
metrics back instead of evaluating it again (a Faster R-CNN teacher runs its box head on 300 proposals per test
image: more than a minute on 2 CPU cores). The file is ``<cache>/teachers/<teacher key>.metrics-<key>.json``, so
``python -m distill.cache`` lists and prunes it with its teacher.

The key holds everything that shapes the metrics: the teacher's weights, the task's and the teacher's settings (a
detector's test-time options live in the task's; a task with ``evaluation_key_parts`` gives only those), the whole
data key and data settings (the test split's files, the evaluation batch size; a data module with
``test_key_parts`` gives only what shapes its test split), the Trainer's precision, the teacher's resolution, the
device type and memory format it runs in, the versions of torch, torchvision and torchmetrics, and a digest of the
distill package's source (a change to the metric code is a miss).
"""

from __future__ import annotations

import functools
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from distill.core.fingerprint import fingerprint, module_fingerprint, plain_parts, source_tree_digest
from distill.core.io import atomic_write_json
from distill.engine.keys import data_key_parts, memory_format

__all__ = ["load_teacher_metrics", "save_teacher_metrics", "source_digest", "teacher_metrics_path"]

log = logging.getLogger(__name__)

_PACKAGES = ("torch", "torchvision", "torchmetrics")


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """Digest of every ``.py`` file of the distill package (``distill.core.fingerprint.source_tree_digest``)."""
    return source_tree_digest(Path(__file__).resolve().parents[1])


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def teacher_metrics_path(cfg: DictConfig, teacher: torch.nn.Module, teacher_info: dict[str, Any], datamodule: Any,
                         resolution: int, device: torch.device, task: Any = None) -> Path | None:
    """Where this teacher's metrics on this test split are kept; None when they are not cached (``cache.enabled``
    false, or a teacher from a weights file: only a fitted, cached teacher has a place to keep them).

    A data module with ``test_key_parts()`` (what shapes its test split's batches) is keyed by those instead of its
    whole key and settings, and a task with ``evaluation_key_parts()`` (what shapes its evaluation) by those instead
    of its settings: then a run that changes only the student's data or schedule (a labels-only twin, scenes
    without boxes) reads the teacher's metrics back."""
    path, key = teacher_info.get("path"), teacher_info.get("key")
    if not cfg.cache.get("enabled", True) or teacher_info.get("source") not in ("fitted", "cache") or not path \
            or not key:
        return None
    test_parts = getattr(datamodule, "test_key_parts", None)
    data = {"data": test_parts()} if callable(test_parts) else {
        "data": data_key_parts(datamodule), "data_cfg": OmegaConf.to_container(cfg.data, resolve=True)}
    evaluation_parts = getattr(task, "evaluation_key_parts", None)
    task_parts = evaluation_parts() if callable(evaluation_parts) else OmegaConf.to_container(cfg.task, resolve=True)
    parts = plain_parts(
        teacher=module_fingerprint(teacher), task=task_parts,
        teacher_cfg=OmegaConf.to_container(cfg.teacher, resolve=True), **data,
        precision=OmegaConf.select(cfg, "trainer.precision", default=None),
        resolution=int(resolution), device=torch.device(device).type, memory_format=memory_format(teacher),
        versions={package: _version(package) for package in _PACKAGES}, code=source_digest())
    return Path(path).with_name(f"{key}.metrics-{fingerprint(**parts)}.json")


def load_teacher_metrics(path: Path | None) -> dict[str, Any] | None:
    """The metrics kept at ``path``, or None (no file, or one that cannot be read: then the teacher is evaluated)."""
    if path is None or not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("cached teacher metrics %s are unreadable (%s); evaluating the teacher", path, error)
        return None
    if not isinstance(metrics, dict):
        log.warning("cached teacher metrics %s hold no metrics; evaluating the teacher", path)
        return None
    return metrics


def save_teacher_metrics(path: Path | None, metrics: dict[str, Any]) -> bool:
    """Keep ``metrics`` at ``path`` (written to a temporary name, then renamed); nothing when ``path`` is None.

    A file that cannot be written costs only the next run's evaluation, never this run's results: it is logged
    (WARNING) and False returned."""
    if path is None:
        return False
    try:
        atomic_write_json(path, metrics)
    except (OSError, TypeError, ValueError) as error:
        log.warning("the teacher's metrics were not kept at %s (%s: %s); a later run evaluates it again", path,
                    type(error).__name__, error)
        return False
    return True
