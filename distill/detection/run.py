"""The coco recipe (Table 13): data, teacher detector (weights, cache or fit), distilled student, evaluation, cost.

Writes into the run folder: results.json (DESIGN.md's contract; metrics "map", "map_50", ...), student.ckpt (a
detector checkpoint, ``distill.detection.load_detector``) and the CSV training log.
"""

from __future__ import annotations

import functools
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from distill.core.fingerprint import fingerprint
from distill.detection.checkpoint import save_detector
from distill.detection.cost import detector_cost
from distill.detection.detectors import DETECTOR_KINDS, build_detector
from distill.detection.evaluate import evaluate_detector
from distill.detection.module import DetectionDistillModule
from distill.core.io import atomic_torch_save, atomic_write_json
from distill.models.teachers.weights import load_weights_file
from distill.core.paths import default_cache_dir

__all__ = ["run_detection", "detector_settings", "load_or_fit_teacher_detector"]

log = logging.getLogger(__name__)


def detector_settings(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """(kind, options of that kind) from ``cfg.detector``."""
    kind = str(cfg.detector.kind)
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"detector.kind must be one of {list(DETECTOR_KINDS)}, got {kind!r}")
    return kind, OmegaConf.to_container(cfg.detector.get(kind) or {}, resolve=True)


def _trainer(cfg: DictConfig, run_dir: Path, *, logger, max_epochs: int | None = None,
             callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    extra = {"max_epochs": int(max_epochs)} if max_epochs is not None else {}
    return instantiate(cfg.trainer, default_root_dir=str(run_dir), logger=logger, callbacks=list(callbacks or []),
                       enable_checkpointing=False, enable_progress_bar=bool(cfg.get("progress", True)), **extra)


def load_or_fit_teacher_detector(cfg: DictConfig, datamodule, kind: str, options: dict[str, Any], size: int,
                                 cache_dir: Path, run_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher detector: from ``teacher.weights``, else fitted on the teacher split once and cached by config."""
    builder = OmegaConf.to_container(cfg.teacher.builder, resolve=True)
    backbone = builder.pop("backbone", "resnet")
    torch.manual_seed(int(cfg.seed))  # a fitted teacher's initial weights depend on the seed only
    teacher = build_detector(kind, backbone=backbone, num_classes=datamodule.num_classes, size=size,
                             backbone_kwargs=builder, options=options)
    weights = cfg.teacher.get("weights")
    if weights:
        load_weights_file(teacher, Path(str(weights)))
        log.info("Teacher: %s detector with weights from %s", cfg.teacher.name, weights)
        return teacher.eval(), {"source": "weights", "path": str(weights)}
    fit_cfg = OmegaConf.to_container(cfg.teacher.fit, resolve=True)
    key = fingerprint(detector=teacher.spec, data=datamodule.fingerprint(), fit=fit_cfg, seed=int(cfg.seed))
    path = cache_dir / "teachers" / f"detector-{key}.pt" if cfg.cache.enabled else None
    if path is not None and path.is_file():
        try:
            load_weights_file(teacher, path)
            log.info("Teacher: fitted earlier, loaded from cache %s", path)
            return teacher.eval(), {"source": "cache", "path": str(path)}
        except ValueError as error:
            log.warning("cached teacher %s is unusable (%s); fitting it again", path, error)
    log.info("Teacher: no weights given; fitting the %s %s detector (cached for later runs)", cfg.teacher.name, kind)
    optimizer = functools.partial(torch.optim.AdamW, lr=float(fit_cfg.get("lr", 2e-3)),
                                  weight_decay=float(fit_cfg.get("weight_decay", 1e-4)))
    module = DetectionDistillModule(teacher, None, optimizer=optimizer,
                                    warmup_steps=int(fit_cfg.get("warmup_steps", 0)))
    started = time.time()
    fit_logger = CSVLogger(str(run_dir), name="teacher_fit", version="")
    _trainer(cfg, run_dir, logger=fit_logger, max_epochs=int(fit_cfg.get("epochs", 10))).fit(
        module, train_dataloaders=datamodule.teacher_train_dataloader(batch_size=fit_cfg.get("batch_size")))
    meta = {"key": key, "fit_seconds": round(time.time() - started, 1)}
    if path is not None:
        atomic_torch_save({"state_dict": teacher.state_dict(), "meta": meta}, path)
    return teacher.eval(), {"source": "fitted", "path": str(path) if path else None, **meta}


@torch.no_grad()
def _latency_ms(detector: nn.Module, image: torch.Tensor, runs: int) -> float:
    """Median wall time of the whole detector (resize, network, box decoding, NMS) on one test image."""
    detector.eval()
    for _ in range(2):
        detector([image])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector([image])
        times.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(times), 3)


def _model_block(detector: nn.Module, size: int, metrics: dict, image: torch.Tensor, latency_runs: int) -> dict:
    cost = detector_cost(detector, size)
    block = {"detector": detector.spec["kind"], "resolution": size, "mult_adds": cost.mult_adds,
             "params": cost.params, "total_params": cost.total_params}
    if latency_runs > 0:
        block["latency_ms"] = _latency_ms(detector, image, latency_runs)
    return {**block, "metrics": metrics}


def run_detection(cfg: DictConfig, *, run_dir: Path, callbacks: list[pl.Callback] | None = None,
                  started: float | None = None) -> dict[str, Any]:
    """Train and evaluate one coco-recipe configuration; returns the results.json content (empty on non-zero ranks)."""
    started = started or time.time()
    if cfg.get("channels_last", False):
        raise ValueError("channels_last=true is not supported by the detection recipes (their box heads and "
                         "losses are measured in the default layout); set channels_last=false")
    run_dir = Path(run_dir)
    cache_dir = default_cache_dir(cfg.cache.get("dir"))
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    size = int(cfg.data.resolution)
    kind, options = detector_settings(cfg)
    if cfg.student.name != "mobilenet_v1":
        raise ValueError(f"the coco recipe's student backbone is mobilenet_v1, got student.name={cfg.student.name!r}")
    teacher, teacher_info = load_or_fit_teacher_detector(cfg, datamodule, kind, options, size, cache_dir, run_dir)

    width = float(cfg.student.width_multiplier)
    torch.manual_seed(int(cfg.seed))  # the student's initial weights depend on the seed only
    student = build_detector(kind, backbone="mobilenet_v1", num_classes=datamodule.num_classes, size=size,
                             backbone_kwargs={"width_multiplier": width}, options=options)
    module = DetectionDistillModule(
        student, teacher, feature_weight=float(cfg.loss.feature_weight), head_weight=float(cfg.loss.head_weight),
        mask=bool(cfg.loss.mask), temperature=float(cfg.loss.temperature),
        optimizer=instantiate(cfg.optimizer.optimizer), scheduler=cfg.optimizer.get("scheduler", "cosine"),
        warmup_steps=int(cfg.optimizer.get("warmup_steps", 0)))
    trainer = _trainer(cfg, run_dir, logger=CSVLogger(str(run_dir), name="logs", version=""), callbacks=callbacks)
    trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
    if not trainer.is_global_zero:
        return {}

    student, teacher = module.student.cpu().eval(), teacher.cpu().eval()
    log.info("Evaluating teacher and student on the test split (COCO mAP)")
    names = datamodule.class_names
    teacher_metrics = evaluate_detector(teacher, datamodule.test_dataloader(), names)
    student_metrics = evaluate_detector(student, datamodule.test_dataloader(), names)

    checkpoint_path = run_dir / "student.ckpt"
    save_detector(checkpoint_path, student, meta={
        "recipe": cfg.get("recipe_name", "custom"), "task": "detection", "resolution": size, "class_names": names,
        "metrics": {k: v for k, v in student_metrics.items() if isinstance(v, (int, float))}})
    probe = datamodule.test_dataloader().dataset[0][0]
    latency_runs = int(cfg.get("latency_runs", 20))
    results = {
        "recipe": cfg.get("recipe_name", "custom"),
        "teacher": {"name": str(cfg.teacher.name), **_model_block(teacher, size, teacher_metrics, probe, latency_runs),
                    "source": teacher_info.get("source")},
        "student": {"name": "mobilenet_v1", "width_multiplier": width,
                    **_model_block(student, size, student_metrics, probe, latency_runs)},
        "primary_metric": "map",
        "data": datamodule.summary(),
        "distillation": {"feature_weight": module.feature_weight, "head_weight": module.head_weight,
                         "mask": bool(cfg.loss.mask), "temperature": module.temperature},
        "student_checkpoint": str(checkpoint_path),
        "wall_time_s": round(time.time() - started, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    atomic_write_json(run_dir / "results.json", results)
    log.info("map: teacher %.4f, student %.4f (%s %s, width %s); results in %s", teacher_metrics["map"],
             student_metrics["map"], kind, "mobilenet_v1", width, run_dir / "results.json")
    return results
