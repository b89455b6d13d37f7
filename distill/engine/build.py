"""Building a run from its config: the task and data, the teacher (stage 1), the student and the
DistillationModule that pairs them."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from distill.core.paths import default_cache_dir
from distill.engine.distillation import DistillationModule, parse_loss_terms
from distill.engine.teacher import prepare_teacher
from distill.engine.trainers import configured_logger, single_device_trainer, trainer_device
from distill.tasks.base import GROUND_TRUTH, Task

__all__ = ["Models", "build_data_and_task", "build_models", "run_folder", "warn_unlabelled_without_teacher"]

log = logging.getLogger(__name__)


@dataclass
class Models:
    """What the later stages need of the built models."""

    module: DistillationModule
    student_builder: str
    student_kwargs: dict[str, Any]
    student_name: str
    student_resolution: int
    teacher_resolution: int
    teacher_info: dict[str, Any]
    cache_root: Path | None  # where teacher outputs are cached; None: computed live


def run_folder(run_dir: str | os.PathLike | None) -> Path:
    """The run's folder: the one given, else Hydra's output folder, else the working directory."""
    if run_dir is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            run_dir = HydraConfig.get().runtime.output_dir
        except ValueError:  # not inside a Hydra app (e.g. a test composing the config)
            run_dir = Path.cwd()
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_data_and_task(cfg: DictConfig) -> tuple[Task, Any]:
    task = instantiate(cfg.task)
    datamodule = instantiate(cfg.data)
    datamodule.teacher_resolution = int(cfg.teacher.get("resolution") or cfg.data.resolution)
    if getattr(datamodule, "align_device", "") is None:  # face alignment (MTCNN) on the Trainer's device
        datamodule.align_device = trainer_device(cfg)
    datamodule.setup()
    check_data = getattr(task, "check_data", None)  # a task's checks of the data, before any training
    if check_data is not None:
        check_data(datamodule)
    return task, datamodule


def _memory_format(model: nn.Module, cfg: DictConfig) -> nn.Module:
    """``channels_last: true`` stores the conv weights NHWC: oneDNN then runs the convs NHWC, faster for
    MobileNet's depthwise convs on small CPU inputs. Weight values and checkpoints do not change; the summation
    order does, so the fitted teacher's and the teacher outputs' cache keys hold the memory format."""
    return model.to(memory_format=torch.channels_last) if cfg.get("channels_last", False) else model


def _teacher(cfg: DictConfig, task: Task, datamodule: Any, run_dir: Path, resolution: int) -> tuple[nn.Module, dict]:
    builder = OmegaConf.to_container(cfg.teacher.builder, resolve=True)
    weights = cfg.teacher.get("weights")
    extra = {"weights": str(weights)} if weights else {}
    teacher, target, kwargs = task.build_model(builder, num_classes=task.teacher_num_classes(datamodule),
                                               resolution=resolution, **extra)
    teacher = _memory_format(teacher, cfg)
    fit_dir = default_cache_dir(cfg.cache.get("dir")) if cfg.cache.enabled else run_dir / "teacher_fit"
    return prepare_teacher(
        teacher, task, datamodule, weights=weights,
        fit_cfg=OmegaConf.to_container(cfg.teacher.fit, resolve=True), cache_dir=fit_dir,
        # the model as built (what its checkpoint records): for a detector, its kind and options with the backbone
        key_parts={"teacher": {"_target_": target, **kwargs}, "resolution": resolution, "seed": int(cfg.seed),
                   "channels_last": bool(cfg.get("channels_last", False))},
        make_trainer=lambda epochs: single_device_trainer(
            cfg, run_dir, max_epochs=epochs, logger=configured_logger(cfg, run_dir, name="teacher_fit")),
        seed=int(cfg.seed))


def warn_unlabelled_without_teacher(terms: list, datamodule: Any) -> int:
    """Warn when the student's split holds images without labels but no loss term reads the teacher: those images
    then teach nothing and only cost steps. Returns their number (0 when there is nothing to warn about)."""
    if any(spec.name != GROUND_TRUTH for spec in terms):
        return 0
    summary = getattr(datamodule, "summary", None)
    unlabelled = int((summary() if callable(summary) else {}).get("unlabelled") or 0)
    if unlabelled:
        log.warning("the student's split holds %d images without labels, but loss.terms has no term that reads the "
                    "teacher: they teach nothing and only take steps (data.num_unlabelled=0, or "
                    "data.unlabelled_ann_file=null for COCO data, trains on the labelled images alone)", unlabelled)
    return unlabelled


def build_models(cfg: DictConfig, task: Task, datamodule: Any, run_dir: Path) -> Models:
    """Stage 1 (the teacher), then the student and the DistillationModule."""
    resolution = int(cfg.data.resolution)
    teacher_resolution = int(datamodule.teacher_resolution)
    terms = parse_loss_terms(OmegaConf.to_container(cfg.loss.terms, resolve=True))
    warn_unlabelled_without_teacher(terms, datamodule)
    if any(spec.name == GROUND_TRUTH and spec.weight > 0 for spec in terms):
        task.check_ground_truth(datamodule)
    teacher, teacher_info = _teacher(cfg, task, datamodule, run_dir, teacher_resolution)

    student_cfg = OmegaConf.to_container(cfg.student, resolve=True)
    num_classes = task.student_num_classes(datamodule, task.output_dim(teacher, teacher_resolution))
    torch.manual_seed(int(cfg.seed))  # the student's initial weights depend on the seed only
    student, builder, kwargs = task.build_model(student_cfg, num_classes=num_classes, resolution=resolution)
    module = DistillationModule(
        _memory_format(student, cfg), teacher, task, terms,
        optimizer=instantiate(cfg.optimizer.optimizer), scheduler=cfg.optimizer.get("scheduler", "cosine"),
        warmup_steps=int(cfg.optimizer.get("warmup_steps", 0)), student_resolution=resolution,
        teacher_resolution=teacher_resolution, seed=int(cfg.seed))
    cached = bool(cfg.cache.enabled and module.specs and task.caches_teacher_outputs
                  and not module.teacher_reads_context)
    cache_root = default_cache_dir(cfg.cache.get("dir")) / "teacher_outputs" if cached else None
    return Models(module, builder, kwargs, str(student_cfg.get("name") or builder.rsplit(".", 1)[-1]), resolution,
                  teacher_resolution, teacher_info, cache_root)
