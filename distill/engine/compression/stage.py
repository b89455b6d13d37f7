"""The compress stage: after evaluation, the distilled student is compressed by each method of ``compress.methods``
in turn, and every result is judged as it ships (see ``judge``). Also the loading of a finished run for
``python -m distill.compress <run folder>`` (its config, data, cached teacher and student.ckpt).

Files written beside student.ckpt (atomically):

- ``student.onnx``: the student's float32 ONNX graph (the baseline every size ratio is taken against);
- ``prune``: ``student.pruned.ckpt`` (the one checkpoint format, builder ``build_pruned``) and
  ``student.pruned.onnx``;
- ``int8_ptq``: ``student.int8.onnx`` (ONNX Runtime QDQ) or, with ``compress.backend=torchao``,
  ``student.int8.pt2`` (``torch.export.load``);
- ``int8_qat``: ``student.qat.int8.onnx``.
After a prune the int8 files are ``student.pruned.int8.onnx`` etc.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from distill.core.deploy import OnnxRuntimeModel, TensorCalibrationReader, export_onnx
from distill.core.io import atomic_write_json
from distill.engine.build import Models, build_data_and_task, build_models
from distill.engine.compression.calibration import calibration_batches
from distill.engine.compression.finetune import finetune
from distill.engine.compression.judge import judge
from distill.engine.compression.prune import prune_to_target
from distill.engine.compression.quantize import (
           convert_qat,
           prepare_qat,
           ptq_onnxruntime,
           ptq_torchao,
           save_pt2,
           write_int8_onnx,
)
from distill.engine.compression.request import CompressRequest, check_request, parse_request
from distill.engine.distillation import parse_loss_terms
from distill.engine.outputs import cache_teacher_outputs
from distill.engine.trainers import stage_trainer
from distill.models.checkpoint import load_student, save_student
from distill.models.registry import build_model
from distill.tasks.base import Task

__all__ = ["check_compression", "compress_student", "load_run", "apply_overrides", "record_results"]

log = logging.getLogger(__name__)

_CHECK_IMAGES = 32  # real images an int8 file is checked on against its float model


def _request_of(cfg: DictConfig) -> CompressRequest:
    settings = cfg.get("compress")
    return parse_request(OmegaConf.to_container(settings, resolve=True) if settings is not None else None)


def check_compression(cfg: DictConfig, task: Task | None = None) -> CompressRequest:
    """The run's compression request, refused now (ValueError) if it cannot be done; the task is built from the
    config when not given (only when there is something to check)."""
    request = _request_of(cfg)
    if request.methods:
        terms = parse_loss_terms(OmegaConf.to_container(cfg.loss.terms, resolve=True))
        check_request(request, task if task is not None else instantiate(cfg.task), terms)
    return request


def _fresh_copy(student: nn.Module, builder: str, kwargs: dict[str, Any]) -> nn.Module:
    """The student rebuilt from its builder with its weights: free of the training module's hooks and never
    aliasing the weights that student.ckpt saves."""
    copy = build_model(builder, **kwargs)
    copy.load_state_dict({k: v.detach().cpu().clone() for k, v in student.state_dict().items()})
    return copy.eval()


def compress_student(cfg: DictConfig, run_dir: Path, task: Task, datamodule: Any, models: Models,
                     request: CompressRequest, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """Run ``request.methods`` in order on the run's student; returns the results.json ``compressed`` entries.

    A method that fails (an export or quantiser that does not handle this model, a pruning that cannot reach its
    target) gives an entry ``{"method", "error"}`` and ends the chain, so the run's own results are still written.
    """
    if not request.methods:
        return []
    run_dir = Path(run_dir)
    resolution = models.student_resolution
    meta = {"recipe": cfg.get("recipe_name", "custom"), "task": task.name, "name": models.student_name,
            "resolution": resolution, **task.preprocessing(datamodule)}
    log.info("Compressing the student: %s", " -> ".join(request.methods))
    state = _Chain(cfg, run_dir, task, datamodule, models, request, device, meta)
    entries = []
    for method in request.methods:
        state.chain.append(method)
        label = "+".join(state.chain)
        try:
            entry = state.step(method, label)
        except Exception as error:  # reported in results.json; the run's own results still count
            log.error("compress %s failed: %s: %s", label, type(error).__name__, error)
            entries.append({"method": label, "artifact": None, "error": f"{type(error).__name__}: {error}"})
            break
        primary = task.primary_metric
        log.info("%s: %s %.4f, %.2f M mult-adds, %s (%s bytes)", label, primary,
                 entry["metrics"].get(primary, float("nan")), (entry["mult_adds"] or 0) / 1e6, entry["artifact"],
                 entry["file_size_bytes"])
        entries.append(entry)
    return entries


class _Chain:
    """What one method hands the next: the current network (student, then pruned), its builder and float32 file."""

    def __init__(self, cfg: DictConfig, run_dir: Path, task: Task, datamodule: Any, models: Models,
                 request: CompressRequest, device: torch.device | str, meta: dict[str, Any]) -> None:
        self.cfg, self.run_dir, self.task, self.datamodule, self.request = cfg, run_dir, task, datamodule, request
        self.template, self.device, self.meta = models.module, device, meta
        self.resolution = models.student_resolution
        self.threads = request.threads or torch.get_num_threads()
        self.builder, self.kwargs = models.student_builder, models.student_kwargs
        self.current = _fresh_copy(models.module.student, self.builder, self.kwargs)
        self.student_onnx: Path | None = None
        self.current_onnx: Path | None = None
        self.stem, self.chain = "student", []
        self.base_mult_adds = task.cost(self.current, self.resolution)["mult_adds"]

    def _judge(self, label: str, **kwargs: Any) -> dict[str, Any]:
        return judge(self.task, self.datamodule, self.request, method=label, resolution=self.resolution,
                     student_onnx=self.student_onnx, **kwargs)

    def step(self, method: str, label: str) -> dict[str, Any]:
        request, resolution, meta = self.request, self.resolution, {**self.meta, "compressed": label}
        if self.student_onnx is None:  # the student's float32 graph: the baseline of every size ratio
            self.student_onnx = self.current_onnx = export_onnx(self.current, self.run_dir / "student.onnx",
                                                                resolution, meta=self.meta)
        if method == "prune":
            result = prune_to_target(self.current, self.builder, self.kwargs, resolution,
                                     target=request.target_mult_adds, tolerance=request.tolerance,
                                     importance=request.importance, max_layer_pruning=request.max_layer_pruning,
                                     steps=request.pruning_steps, round_to=request.round_to)
            pruned = finetune(self.cfg, self.run_dir, self.template, result.model, self.task, self.datamodule,
                              epochs=request.prune_epochs, lr_scale=request.prune_lr_scale, name="prune").eval()
            self.builder, self.kwargs, self.stem = result.builder, result.kwargs, "student.pruned"
            checkpoint = self.run_dir / f"{self.stem}.ckpt"
            save_student(checkpoint, pruned, self.builder, self.kwargs, meta=meta)
            self.current = pruned
            self.current_onnx = export_onnx(pruned, self.run_dir / f"{self.stem}.onnx", resolution, meta=meta)
            entry = self._judge(label, shipped=pruned, artifact=checkpoint, fp32_model=pruned,
                                fp32_onnx=self.current_onnx, int8_onnx=None, device=self.device, details={
                                    "mult_adds_ratio": round(result.mult_adds_after / self.base_mult_adds, 4),
                                    "target_mult_adds": request.target_mult_adds, "pruning_steps": result.steps,
                                    "importance": request.importance, "round_to": request.round_to,
                                    "epochs": request.prune_epochs, "lr_scale": request.prune_lr_scale})
            save_student(checkpoint, pruned, self.builder, self.kwargs,
                         meta={**meta, "metrics": _scalars(entry["metrics"])})
            return entry
        if method == "int8_ptq":
            batches = calibration_batches(self.datamodule, resolution, request.calibration_images)
            details = {"backend": request.backend, "calibration_images": sum(len(b) for b in batches),
                       "per_channel": request.per_channel}
            if request.backend == "torchao":
                converted = ptq_torchao(self.current, resolution, batches)
                out = save_pt2(converted, self.run_dir / f"{self.stem}.int8.pt2", resolution, meta=meta)
                return self._judge(label, shipped=converted, artifact=out, fp32_model=self.current,
                                   fp32_onnx=self.current_onnx, int8_onnx=None, details=details)
            out, similarity = ptq_onnxruntime(self.current, resolution, TensorCalibrationReader(batches),
                                              self.current_onnx, self.run_dir / f"{self.stem}.int8.onnx",
                                              per_channel=request.per_channel, float_convs=request.float_convs,
                                              meta=meta)
            return self._judge(label, shipped=OnnxRuntimeModel(out, self.threads), artifact=out,
                               fp32_model=self.current, fp32_onnx=self.current_onnx, int8_onnx=out,
                               details={**details, "float_convs": request.float_convs,
                                        "cosine_to_fp32": round(similarity, 5)})
        if method == "int8_qat":
            prepared = prepare_qat(self.current, resolution)
            trained = finetune(self.cfg, self.run_dir, self.template, prepared, self.task, self.datamodule,
                               epochs=request.epochs, lr_scale=request.lr_scale, name="int8_qat")
            converted = convert_qat(trained)
            check = torch.cat(calibration_batches(self.datamodule, resolution, _CHECK_IMAGES))
            out, similarity = write_int8_onnx(converted, self.run_dir / f"{self.stem}.qat.int8.onnx", resolution,
                                              check, meta=meta)
            return self._judge(label, shipped=OnnxRuntimeModel(out, self.threads), artifact=out,
                               fp32_model=self.current, fp32_onnx=self.current_onnx, int8_onnx=out,
                               details={"quantizer": "torchao pt2e X86InductorQuantizer (QAT)",
                                        "epochs": request.epochs, "cosine_to_pt2e": round(similarity, 5)})
        raise ValueError(f"unknown compression method {method!r}")  # parse_request refuses it before


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# --- python -m distill.compress <run folder> -----------------------------------------------------------------------
def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> DictConfig:
    """The run's config with ``key=value`` overrides: ``method=int8_ptq`` (or ``methods=[prune,int8_qat]``) and
    other bare keys set ``compress.<key>``; dotted keys (``trainer.accelerator=cpu``) set the config's own."""
    cfg = OmegaConf.create(config)
    if cfg.get("compress") is None:
        cfg.compress = {}
    dotlist = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("+")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        if key == "method":
            key = "methods"
            value = value if value.strip().startswith("[") else f"[{value}]"
        dotlist.append(f"{key if '.' in key else 'compress.' + key}={value}")
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))


def load_run(run_dir: Path, overrides: Iterable[str] = ()) -> tuple[DictConfig, CompressRequest, Task, Any, Models]:
    """A finished run, ready to compress: its config (``run_config.json``) with ``overrides``, the request (checked
    before any data is loaded), the task and data, the teacher (from the cache) with its cached outputs, and the
    run's student.ckpt weights in the training module."""
    run_dir = Path(run_dir)
    recorded = run_dir / "run_config.json"
    if not recorded.is_file():
        raise FileNotFoundError(f"{recorded} not found: give the folder of a distill run (it holds run_config.json, "
                                f"student.ckpt and results.json)")
    checkpoint = run_dir / "student.ckpt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint} not found: the run did not finish (no student to compress)")
    cfg = apply_overrides(json.loads(recorded.read_text(encoding="utf-8")), overrides)
    request = check_compression(cfg)
    if not request.methods:
        raise ValueError("compress: no method given; pass method=int8_ptq | int8_qat | prune, or "
                         "methods=[prune,int8_qat]")
    task, datamodule = build_data_and_task(cfg)
    models = build_models(cfg, task, datamodule, run_dir)
    module = models.module
    trained = load_student(checkpoint)
    module.student.load_state_dict(trained.state_dict())
    if models.cache_root is not None:
        module.teacher_cache = cache_teacher_outputs(module, datamodule, stage_trainer(cfg, run_dir, fit=False),
                                                     models.cache_root, dtype=str(cfg.cache.get("dtype", "float32")),
                                                     progress=bool(cfg.get("progress", True)))
    return cfg, request, task, datamodule, models


def record_results(run_dir: Path, entries: list[dict[str, Any]]) -> Path | None:
    """Add ``entries`` to the run's results.json ``compressed`` list (an entry of the same method is replaced)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text(encoding="utf-8"))
    methods = {entry["method"] for entry in entries}
    kept = [entry for entry in results.get("compressed") or [] if entry.get("method") not in methods]
    results["compressed"] = kept + entries
    return atomic_write_json(path, results)
