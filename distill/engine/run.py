"""run(cfg): one pipeline for every recipe — teacher, teacher outputs, distillation, evaluation, and compression when
``compress.methods`` asks for it — then the results.

Writes into the run folder: results.json (the contract in DESIGN.md), student.ckpt (``distill.load_student``),
checkpoints/last.ckpt (for ``resume=true``), the training log, and the compressed students (``compress=...``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from distill.engine.build import Models, build_data_and_task, build_models, run_folder
from distill.engine.compression import check_compression, compress_student
from distill.engine.evaluation import evaluate_models
from distill.engine.outputs import cache_teacher_outputs
from distill.engine.quiet import quiet_third_party
from distill.engine.results import save_outputs
from distill.engine.resume import resume_checkpoint
from distill.engine.run_folder import prepare_run_folder
from distill.engine.teacher_metrics import load_teacher_metrics, save_teacher_metrics, teacher_metrics_path
from distill.engine.trainers import configured_callbacks, configured_logger, stage_trainer

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: str | os.PathLike | None = None,
        callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Train and evaluate one recipe configuration; returns the results.json content (empty on non-zero ranks).

    ``callbacks`` are added to the distillation Trainer's own (for programmatic use: early stopping, tests).
    """
    started = time.time()
    quiet_third_party()
    compression = check_compression(cfg)  # a compression that cannot be done is refused before any work
    run_dir = run_folder(run_dir)
    resume = cfg.get("resume")
    prepare_run_folder(run_dir, OmegaConf.to_container(cfg, resolve=True), resuming=resume not in (False, None, ""),
                       force=bool(cfg.get("resume_force", False)))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    task, datamodule = build_data_and_task(cfg)

    # 1. the teacher: local weights, or fitted once (single device, under a file lock) and cached
    models: Models = build_models(cfg, task, datamodule, run_dir)
    module = models.module
    trainer = stage_trainer(cfg, run_dir, fit=True, logger=configured_logger(cfg, run_dir),
                            callbacks=[*configured_callbacks(cfg, run_dir), *(callbacks or [])])
    # 2. the teacher's outputs on every (sample, view), predicted by all ranks and published once
    if models.cache_root is not None:
        module.teacher_cache = cache_teacher_outputs(module, datamodule, stage_trainer(cfg, run_dir, fit=False),
                                                     models.cache_root, dtype=str(cfg.cache.get("dtype", "float32")),
                                                     progress=bool(cfg.get("progress", True)))
    # 3. distillation
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(resume, run_dir))
    if not trainer.is_global_zero:
        return {}
    # 4. evaluation of teacher and student, on the Trainer's device, once (a cached teacher's metrics are read back)
    device = trainer.strategy.root_device
    kept = teacher_metrics_path(cfg, module.teacher, models.teacher_info, datamodule, models.teacher_resolution, device,
                                task=task)
    known = load_teacher_metrics(kept)
    metrics = evaluate_models(task, datamodule, {"teacher": (module.teacher, models.teacher_resolution),
                                                 "student": (module.student, models.student_resolution)},
                              device, known={"teacher": known} if known is not None else None)
    if known is None:
        save_teacher_metrics(kept, metrics["teacher"])
    models.teacher_info["metrics_source"] = "cache" if known is not None else "evaluated"
    # 5. compression (compress.methods): each compressed student judged on the test split as it ships
    compressed = compress_student(cfg, run_dir, task, datamodule, models, compression, trainer.strategy.root_device)
    return save_outputs(cfg, run_dir, task, datamodule, models, metrics, started, compressed=compressed)
