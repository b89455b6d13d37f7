"""The Trainers of the four stages, all built from ``cfg.trainer`` (same accelerator, devices, strategy, precision).

- ``stage_trainer``: the run's Trainer (all ranks) for predicting teacher outputs and for distilling;
- ``single_device_trainer``: the same accelerator and precision on one device, for work one process does alone
  (fitting a teacher under a file lock).
The ``callbacks`` and ``logger`` config groups add their objects to the distillation Trainer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

__all__ = ["stage_trainer", "single_device_trainer", "configured_callbacks", "configured_logger", "trainer_device"]

# Trainer arguments that only make sense for training (a predict-only Trainer drops them).
_FIT_ONLY = ("max_epochs", "gradient_clip_val", "log_every_n_steps", "num_sanity_val_steps")


def configured_callbacks(cfg: DictConfig, run_dir: Path) -> list[pl.Callback]:
    """The ``callbacks`` group's objects; a ModelCheckpoint without a folder writes to ``<run dir>/checkpoints``."""
    callbacks = []
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None:
            continue
        overrides = {}
        target = str(spec.get("_target_", ""))
        if target.endswith("ModelCheckpoint") and not spec.get("dirpath"):
            overrides["dirpath"] = str(run_dir / "checkpoints")
        try:
            callbacks.append(instantiate(spec, **overrides))
        except Exception as error:  # a wrong key in a callback config: name it
            raise ValueError(f"callbacks.{name}: cannot build {target or spec}: {error}") from error
    return callbacks


def configured_logger(cfg: DictConfig, run_dir: Path, name: str = "logs") -> Any:
    """The ``logger`` group's logger writing under the run folder (False when ``logger=none``)."""
    spec = cfg.get("logger")
    if not spec:
        return False
    try:
        return instantiate(spec, save_dir=str(run_dir), name=name)
    except Exception as error:  # e.g. logger=tensorboard without the tensorboard package
        raise ValueError(f"logger: cannot build {spec.get('_target_')}: {error}. For logger=tensorboard: "
                         f"pip install tensorboard") from error


def stage_trainer(cfg: DictConfig, run_dir: Path, *, fit: bool, callbacks: list[pl.Callback] | None = None,
                  logger: Any = False, **overrides: Any) -> pl.Trainer:
    """The run's Trainer: ``cfg.trainer`` as configured, for fitting (``fit=True``) or for prediction."""
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    if not fit:
        for key in _FIT_ONLY:
            settings.pop(key, None)
    settings.update(overrides)
    return instantiate(settings, default_root_dir=str(run_dir), logger=logger, callbacks=list(callbacks or []),
                       enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks or []),
                       use_distributed_sampler=False,  # the data module's samplers shard by rank themselves
                       enable_progress_bar=bool(cfg.get("progress", True)))


def single_device_trainer(cfg: DictConfig, run_dir: Path, *, max_epochs: int, logger: Any = False) -> pl.Trainer:
    """One device of the configured accelerator (this process's local GPU under a multi-GPU job)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    devices: Any = 1
    if accelerator in ("gpu", "cuda", "auto") and "LOCAL_RANK" in os.environ:
        devices = [int(os.environ["LOCAL_RANK"])]
    return stage_trainer(cfg, run_dir, fit=True, logger=logger, max_epochs=int(max_epochs), devices=devices,
                         num_nodes=1, strategy="auto")


def trainer_device(cfg: DictConfig) -> str:
    """The device this process's Trainer will run on, for work done before it exists (e.g. aligning faces)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"
