"""run(cfg): build the data, teacher and student; distil; evaluate both with the same code; save.

Writes into the run folder: results.json (the contract in DESIGN.md), student.ckpt (importable with
distill.load_student), checkpoints/last.ckpt (for resume=true) and the CSV training log.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from distill.engine.cache import TeacherOutputCache
from distill.core.fingerprint import fingerprint, module_fingerprint
from distill.checkpoint import save_student
from distill.cost import profile
from distill.core.io import atomic_write_json
from distill.core.paths import default_cache_dir
from distill.core.latency import measure_latency_ms
from distill.models import create_student
from distill.models.teachers.fit import load_or_fit_teacher
from distill.module import DistillationModule, parse_loss_terms

__all__ = ["run"]

log = logging.getLogger(__name__)

# The teacher is kept in eval mode on purpose (frozen BN statistics); Lightning's notice about it is noise here.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)


def _run_dir(run_dir: str | os.PathLike | None) -> Path:
    if run_dir is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            run_dir = HydraConfig.get().runtime.output_dir
        except ValueError:  # not inside a Hydra app (e.g. a test composing the config)
            run_dir = Path.cwd()
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _resume_checkpoint(resume: Any, run_dir: Path) -> str | None:
    if resume in (False, None, "false", ""):
        return None
    candidate = run_dir if resume is True or resume == "true" else Path(str(resume)).expanduser()
    if candidate.is_dir():
        candidate = candidate / "checkpoints" / "last.ckpt"
    if not candidate.is_file():
        raise FileNotFoundError(
            f"resume={resume}: no checkpoint at {candidate}. Point hydra.run.dir at the interrupted run's folder "
            f"(or pass resume=<run folder or .ckpt file>)."
        )
    log.info("Resuming from %s", candidate)
    return str(candidate)


def _build_teacher(cfg: DictConfig, task, datamodule, cache_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    teacher_cfg = cfg.teacher
    weights = teacher_cfg.get("weights")
    teacher = instantiate(teacher_cfg.builder, num_classes=task.teacher_num_classes(datamodule), weights=weights)
    teacher = _to_memory_format(teacher, cfg)
    if weights:
        log.info("Teacher: %s with weights from %s", teacher_cfg.name, weights)
        return teacher.eval(), {"source": "weights", "path": str(weights)}
    return load_or_fit_teacher(
        teacher, task, datamodule,
        fit_cfg=OmegaConf.to_container(teacher_cfg.fit, resolve=True),
        cache_dir=cache_dir if cfg.cache.enabled else None,
        key_parts={"teacher": OmegaConf.to_container(teacher_cfg.builder, resolve=True),
                   "resolution": datamodule.teacher_resolution, "seed": int(cfg.seed)},
        progress=bool(cfg.get("progress", True)),
    )


def _to_memory_format(model: torch.nn.Module, cfg: DictConfig) -> torch.nn.Module:
    """``channels_last: true`` stores the conv weights NHWC: oneDNN then runs the convs NHWC, faster for
    MobileNet's depthwise convs on small CPU inputs. Weight values, checkpoints and cache keys do not change."""
    if cfg.get("channels_last", False):
        return model.to(memory_format=torch.channels_last)
    return model


def _build_teacher_cache(module: DistillationModule, datamodule, cache_dir: Path, cfg: DictConfig) -> TeacherOutputCache:
    key = fingerprint(
        data=datamodule.fingerprint(),
        teacher=module_fingerprint(module.teacher),
        layers=module.teacher_layers,
        teacher_resolution=module.teacher_resolution,
        num_views=datamodule.num_views,
        augment=bool(datamodule.augment),
        seed=datamodule.seed,
    )
    num_samples = len(datamodule.split("train"))
    cache = TeacherOutputCache(cache_dir / "teacher_outputs", key, num_samples, datamodule.num_views,
                               dtype=str(cfg.cache.get("dtype", "float32")))

    def compute_view(view: int):
        for batch in datamodule.view_dataloader(view):
            yield batch["index"], module.teacher_forward(batch.get("teacher_image", batch["image"]))

    return cache.open_or_build(compute_view)


def _cost(model: torch.nn.Module, resolution: int, latency_runs: int) -> dict[str, float]:
    """Paper-convention cost, plus the measured CPU latency at batch 1 (median of ``latency_runs``)."""
    cost = profile(model, input_size=(3, resolution, resolution))
    measured = {"mult_adds": cost.mult_adds, "params": cost.params}
    if latency_runs > 0:
        measured["latency_ms"] = measure_latency_ms(model, resolution, runs=latency_runs)
    return measured


def run(cfg: DictConfig, run_dir: str | os.PathLike | None = None,
        callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Train and evaluate one recipe configuration; returns the results.json content (empty on non-zero ranks).

    ``callbacks`` are added to the Trainer's own (for programmatic use: early stopping, custom logging, tests).
    """
    started = time.time()
    run_dir = _run_dir(run_dir)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    cache_dir = default_cache_dir(cfg.cache.get("dir"))

    task = instantiate(cfg.task)
    own_run = getattr(task, "run_recipe", None)
    if own_run is not None:  # e.g. detection: batches of boxes do not fit the image-to-tensor engine
        return own_run(cfg, run_dir=run_dir, callbacks=callbacks, started=started)
    datamodule = instantiate(cfg.data)
    resolution = int(cfg.data.resolution)
    teacher_resolution = int(cfg.teacher.get("resolution") or resolution)
    datamodule.teacher_resolution = teacher_resolution
    datamodule.setup()
    ground_truth_weight = float(cfg.loss.get("ground_truth_weight", 0.0))
    if ground_truth_weight > 0 and datamodule.split("train").targets is None:
        raise ValueError(
            f"loss.ground_truth_weight={ground_truth_weight} needs labels on the student's training images, but "
            f"{type(datamodule).__name__} serves its 'train' split without labels; set loss.ground_truth_weight=0 "
            f"or data that labels them (e.g. data.student_labels=true where the data module has that option)"
        )

    teacher, teacher_info = _build_teacher(cfg, task, datamodule, cache_dir)
    with torch.no_grad():
        teacher_dim = teacher.eval()(torch.zeros(2, 3, teacher_resolution, teacher_resolution)).shape[1]

    student_cfg = OmegaConf.to_container(cfg.student, resolve=True)
    student_name = student_cfg.pop("name")
    student_cfg["num_classes"] = task.student_num_classes(datamodule, teacher_dim)
    # The student's initial weights depend on the seed only, not on whether the teacher was fitted or cached.
    torch.manual_seed(int(cfg.seed))
    student = _to_memory_format(create_student(student_name, **student_cfg), cfg)

    module = DistillationModule(
        student, teacher, task, parse_loss_terms(OmegaConf.to_container(cfg.loss.terms, resolve=True)),
        optimizer=instantiate(cfg.optimizer.optimizer),
        scheduler=cfg.optimizer.get("scheduler", "cosine"),
        warmup_steps=int(cfg.optimizer.get("warmup_steps", 0)),
        ground_truth_weight=float(cfg.loss.get("ground_truth_weight", 0.0)),
        student_resolution=resolution,
        teacher_resolution=teacher_resolution,
        seed=int(cfg.seed),
    )
    if cfg.cache.enabled and module.specs:
        module.teacher_cache = _build_teacher_cache(module, datamodule, cache_dir, cfg)

    trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=CSVLogger(str(run_dir), name="logs", version=""),
        callbacks=[ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="last", save_top_k=1, monitor=None,
                                   enable_version_counter=False),
                   *(callbacks or [])],
        use_distributed_sampler=False,  # ViewSampler shards by rank itself
        enable_progress_bar=bool(cfg.get("progress", True)),
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_checkpoint(cfg.get("resume"), run_dir))
    if not trainer.is_global_zero:
        return {}

    student = module.student.cpu().eval()
    teacher = module.teacher.cpu().eval()
    log.info("Evaluating teacher and student on the test split")
    teacher_metrics = task.evaluate(teacher, datamodule, teacher_resolution)
    student_metrics = task.evaluate(student, datamodule, resolution)

    checkpoint_path = run_dir / "student.ckpt"
    config = OmegaConf.to_container(cfg, resolve=True)
    artifacts = task.save_artifacts(datamodule, run_dir)
    save_student(checkpoint_path, student, student_name, student_cfg, meta={
        "recipe": cfg.get("recipe_name", "custom"),
        "task": task.name,
        "resolution": resolution,
        "mean": list(datamodule.dataset("test").mean.flatten().tolist()),
        "std": list(datamodule.dataset("test").std.flatten().tolist()),
        "metrics": {k: v for k, v in student_metrics.items() if isinstance(v, (int, float))},
        **({"artifacts": artifacts} if artifacts else {}),
    })
    latency_runs = int(cfg.get("latency_runs", 20))
    results = {
        "recipe": cfg.get("recipe_name", "custom"),
        "teacher": {"name": cfg.teacher.name, "resolution": teacher_resolution,
                    **_cost(teacher, teacher_resolution, latency_runs),
                    "metrics": teacher_metrics, "source": teacher_info.get("source")},
        "student": {"name": student_name, "width_multiplier": student_cfg.get("width_multiplier"),
                    "resolution": resolution, **_cost(student, resolution, latency_runs), "metrics": student_metrics},
        "primary_metric": task.primary_metric,
        "data": datamodule.summary(),
        **({"artifacts": artifacts} if artifacts else {}),
        "student_checkpoint": str(checkpoint_path),
        "wall_time_s": round(time.time() - started, 2),
        "config": config,
    }
    atomic_write_json(run_dir / "results.json", results)
    primary = task.primary_metric
    log.info("%s: teacher %.4f, student %.4f (%s); results in %s", primary, teacher_metrics.get(primary, float("nan")),
             student_metrics.get(primary, float("nan")), student_name, run_dir / "results.json")
    return results
