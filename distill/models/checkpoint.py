"""Student checkpoints that users can load without Lightning, Hydra or pickled objects: one format for every
student, classifiers, embedders and detectors alike.

A student.ckpt (version 2) is a plain dict::

    {"format": "distill.student", "version": 2, "builder": "distill.models.mobilenet.MobileNetV1",
     "kwargs": {...}, "state_dict": {...}, "meta": {...}}

``builder`` is a key of the model registry (``distill.models.registry``) and ``kwargs`` its plain arguments, so
the model is rebuilt by ``build_model(builder, **kwargs)``: only registered builders run, never code a file names.
Everything is tensors, strings, numbers, lists and dicts, so the file loads with ``torch.load(weights_only=True)``.

Older files are still read: version 1 (``"student": {"name", "kwargs"}``, a name of ``create_student``) and the
detector files of ``distill.detection.checkpoint`` (``"format": "distill.detector"``, the ``build_detector``
arguments under ``"detector"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from distill.core.io import atomic_torch_save, read_torch_file
from distill.models.factory import student_builder
from distill.models.preprocess import Preprocess
from distill.models.registry import UnknownBuilderError, build_model, builder_path

__all__ = ["FORMAT", "VERSION", "CheckpointError", "save_student", "read_student_checkpoint", "load_student"]

FORMAT = "distill.student"
VERSION = 2
# The detector files written before version 2 (distill.detection.checkpoint.save_detector), version 1.
_DETECTOR_FORMAT = "distill.detector"
_DETECTOR_BUILDER = "distill.models.detection.detectors.build_detector"
_DETECTOR_ARGS = ("kind", "backbone", "num_classes", "size", "backbone_kwargs", "options")


class CheckpointError(ValueError):
    """A file that is not a usable student checkpoint."""


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where} holds a {type(value).__name__}; checkpoints hold plain data only")


def save_student(path: str | os.PathLike, model: nn.Module, builder: str | Callable[..., Any],
                 kwargs: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights with the registered ``builder`` and the plain ``kwargs`` that rebuild it.

    ``builder``: a registered builder or its dotted path (a Hydra ``_target_``); the canonical key is stored.
    ``meta``: plain data for users (input resolution, normalisation, recipe, metrics). The write is atomic.
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "builder": builder_path(builder),  # UnknownBuilderError: a file that could not be loaded is not written
        "kwargs": _plain(dict(kwargs), "kwargs"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": _plain(dict(meta or {}), "meta"),
    }
    return atomic_torch_save(payload, path)


def _from_version_1(path: Path, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    spec = payload.get("student")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise CheckpointError(f"{path} has no 'student' entry with a 'name' (version 1 student checkpoint)")
    try:
        return student_builder(spec["name"], spec.get("kwargs") or {})
    except ValueError as error:
        raise CheckpointError(f"{path}: cannot rebuild student {spec['name']!r}: {error}") from error


def _from_detector_file(path: Path, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    spec = payload.get("detector")
    if not isinstance(spec, dict) or any(key not in spec for key in _DETECTOR_ARGS):
        raise CheckpointError(f"{path} has no 'detector' entry with {list(_DETECTOR_ARGS)} (detector checkpoint)")
    return _DETECTOR_BUILDER, {key: spec[key] for key in _DETECTOR_ARGS}


def read_student_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a student checkpoint of any version; every failure names the file and what was expected.

    Returns the version-2 layout {"format", "version" (as stored), "builder", "kwargs", "state_dict", "meta"}.
    """
    path = Path(path)
    payload = read_torch_file(path, "student checkpoint", CheckpointError)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a distill student checkpoint (expected a dict with format {FORMAT!r}, "
                              f"found a {type(payload).__name__})")
    stored_format, version = payload.get("format"), payload.get("version")
    if stored_format == _DETECTOR_FORMAT and version == 1:
        builder, kwargs = _from_detector_file(path, payload)
    elif stored_format != FORMAT:
        hint = ""
        if "pytorch-lightning_version" in payload:
            hint = " It is a Lightning training checkpoint; use the run's student.ckpt instead."
        elif stored_format == _DETECTOR_FORMAT:
            hint = f" It is a detector checkpoint of version {version!r}; this distill reads version 1."
        raise CheckpointError(f"{path} is not a distill student checkpoint (expected format {FORMAT!r}).{hint}")
    elif version == 1:
        builder, kwargs = _from_version_1(path, payload)
    elif version == VERSION:
        builder, kwargs = payload.get("builder"), payload.get("kwargs", {})
        if not isinstance(builder, str) or not isinstance(kwargs, dict):
            raise CheckpointError(f"{path} has no 'builder' string and 'kwargs' dict (student checkpoint version 2)")
    else:
        raise CheckpointError(f"{path} has student checkpoint version {version!r}; this distill reads versions 1 "
                              f"and {VERSION} (a newer distill wrote it?)")
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} has no 'state_dict' entry (the student's weights)")
    return {"format": FORMAT, "version": version, "builder": builder, "kwargs": kwargs, "state_dict": state_dict,
            "meta": payload.get("meta") or {}}


def load_student(path: str | os.PathLike) -> nn.Module:
    """Rebuild the student of a student.ckpt through the model registry; returns it in eval mode.

    The checkpoint's ``meta`` (input resolution, normalisation, recipe, metrics) is attached as ``model.distill_meta``
    and the preprocessing it describes as ``model.preprocess`` (``distill.models.preprocess.Preprocess``), so
    ``model(model.preprocess(image_or_path_or_list))`` works without reading the meta.
    """
    payload = read_student_checkpoint(path)
    builder, kwargs = payload["builder"], payload["kwargs"]
    try:
        model = build_model(builder, **kwargs)
    except UnknownBuilderError as error:
        raise CheckpointError(f"{path}: unknown builder: {error}") from error
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: cannot rebuild the student with {builder}(**{kwargs}): {error}") from error
    expected = model.state_dict()
    stored = payload["state_dict"]
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    mismatched = [k for k, v in stored.items()
                  if k in expected and (not isinstance(v, torch.Tensor) or v.shape != expected[k].shape)]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path}: weights do not fit {builder}(**{kwargs}): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {mismatched[:5]}"
        )
    model.load_state_dict(stored)
    model.distill_meta = payload["meta"]
    model.preprocess = Preprocess(payload["meta"])
    return model.eval()
