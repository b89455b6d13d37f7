"""What a finished run leaves behind: student.ckpt (importable with ``distill.load_student``), the task's
artefacts, and results.json (the contract in DESIGN.md), each written atomically."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.core.io import atomic_write_json
from distill.engine.evaluation import model_cost
from distill.models.checkpoint import save_student
from distill.tasks.base import Task

__all__ = ["save_outputs"]

log = logging.getLogger(__name__)


def active_terms(terms: Any) -> Any:
    """``loss.terms`` without the terms switched off (``weight: null``, e.g. a detector's term the other detector
    has no layer for): the terms the run trained on. The whole configuration is kept under ``config``."""
    if not isinstance(terms, dict):
        return terms
    return {name: term for name, term in terms.items()
            if not (isinstance(term, dict) and "weight" in term and term["weight"] is None)}


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def save_outputs(cfg: DictConfig, run_dir: Path, task: Task, datamodule: Any, models, metrics: dict[str, dict],
                 started: float, compressed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write student.ckpt, the artefacts and results.json; returns the results.

    ``compressed``: the compress stage's entries (one per compressed model: method, metrics, cost, file sizes,
    side-by-side latency), stored as results.json's ``compressed`` list.
    """
    module = models.module
    student, teacher = module.student.cpu().eval(), module.teacher.cpu().eval()
    recipe = cfg.get("recipe_name", "custom")
    artifacts = task.save_artifacts(datamodule, run_dir)
    checkpoint_path = run_dir / "student.ckpt"
    save_student(checkpoint_path, student, models.student_builder, models.student_kwargs, meta={
        "recipe": recipe, "task": task.name, "name": models.student_name, "resolution": models.student_resolution,
        **task.preprocessing(datamodule), "metrics": _scalars(metrics["student"]),
        **({"artifacts": artifacts} if artifacts else {}),
    })
    latency_runs = int(cfg.get("latency_runs", 20))
    ort = bool(cfg.get("latency_ort", True))
    results = {
        "status": "ok",  # results.json exists only for a finished run; anything else is never written here
        "recipe": recipe,
        "teacher": {"name": cfg.teacher.name, "resolution": models.teacher_resolution,
                    **model_cost(teacher, task, datamodule, models.teacher_resolution, latency_runs, onnx_runtime=ort),
                    "metrics": metrics["teacher"], "source": models.teacher_info.get("source"),
                    "metrics_source": models.teacher_info.get("metrics_source", "evaluated")},
        "student": {"name": models.student_name, "width_multiplier": models.student_kwargs.get("width_multiplier",
                    models.student_kwargs.get("backbone_kwargs", {}).get("width_multiplier")),
                    "resolution": models.student_resolution,
                    **model_cost(student, task, datamodule, models.student_resolution, latency_runs, onnx_runtime=ort),
                    "metrics": metrics["student"]},
        "compressed": list(compressed or []),
        "primary_metric": task.primary_metric,
        "data": datamodule.summary(),
        "loss_terms": active_terms(OmegaConf.to_container(cfg.loss.terms, resolve=True)),
        **({"artifacts": artifacts} if artifacts else {}),
        "student_checkpoint": str(checkpoint_path),
        "wall_time_s": round(time.time() - started, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    atomic_write_json(run_dir / "results.json", results)
    primary = task.primary_metric
    log.info("%s: teacher %.4f, student %.4f (%s); results in %s", primary,
             metrics["teacher"].get(primary, float("nan")), metrics["student"].get(primary, float("nan")),
             models.student_name, run_dir / "results.json")
    return results
