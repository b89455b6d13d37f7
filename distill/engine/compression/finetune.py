"""Distillation fine-tuning of a compressed student: the run's own loss terms, its frozen teacher (and its cached
teacher outputs), the run's optimizer at ``lr x lr_scale``, on a single-device Trainer of the configured kind."""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from distill.engine.distillation import DistillationModule, parse_loss_terms
from distill.engine.trainers import configured_logger, single_device_trainer
from distill.tasks.base import Task

__all__ = ["finetune"]

log = logging.getLogger(__name__)


def _copy_matching(target: nn.Module, source: nn.Module) -> None:
    """Load what fits of ``source``'s state (the run's learned adapters and loss parameters) into ``target``."""
    own = target.state_dict()
    fitting = {key: value for key, value in source.state_dict().items()
               if key in own and own[key].shape == value.shape}
    target.load_state_dict(fitting, strict=False)


def finetune(cfg: DictConfig, run_dir: Any, template: DistillationModule, student: nn.Module, task: Task,
             datamodule: Any, *, epochs: int, lr_scale: float, name: str) -> nn.Module:
    """Train ``student`` for ``epochs`` against ``template``'s teacher with the run's loss terms; returns it.

    ``template`` is the run's DistillationModule (its teacher, cached teacher outputs, adapters and loss state are
    reused); the training log goes to ``<run dir>/compress_<name>/``.
    """
    if epochs < 1:
        return student
    optimizer_cfg = cfg.optimizer.optimizer
    lr = float(OmegaConf.select(optimizer_cfg, "lr", default=1e-3)) * float(lr_scale)
    module = DistillationModule(
        student, template.teacher, task, parse_loss_terms(OmegaConf.to_container(cfg.loss.terms, resolve=True)),
        optimizer=instantiate(optimizer_cfg, lr=lr), scheduler=cfg.optimizer.get("scheduler", "cosine"),
        warmup_steps=0, student_resolution=template.student_resolution,
        teacher_resolution=template.teacher_resolution, seed=int(cfg.seed))
    module.teacher_cache = template.teacher_cache
    _copy_matching(module.adapters, template.adapters)
    _copy_matching(module.losses, template.losses)
    log.info("Fine-tuning the %s student from the teacher: %d epoch(s) at lr %.3g", name, epochs, lr)
    trainer = single_device_trainer(cfg, run_dir, max_epochs=epochs,
                                    logger=configured_logger(cfg, run_dir, name=f"compress_{name}"))
    trainer.fit(module, datamodule=datamodule)
    return module.student.cpu()
