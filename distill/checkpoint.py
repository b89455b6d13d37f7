"""Student checkpoints that users can import without Lightning, Hydra or pickled objects.

A student.ckpt is a plain dict: {"format", "version", "student": {"name", "kwargs"}, "state_dict", "meta"}.
Everything in it is tensors, strings, numbers, lists and dicts, so it loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from distill.core.io import atomic_torch_save, read_torch_file
from distill.models import create_student

__all__ = ["FORMAT", "VERSION", "CheckpointError", "save_student", "read_student_checkpoint", "load_student"]

FORMAT = "distill.student"
VERSION = 1


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


def save_student(path: str | os.PathLike, student: nn.Module, name: str, kwargs: dict[str, Any],
                 meta: dict[str, Any] | None = None) -> Path:
    """Write the student's weights and the plain arguments of ``create_student(name, **kwargs)``."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "student": {"name": str(name), "kwargs": _plain(dict(kwargs), "student.kwargs")},
        "state_dict": {k: v.detach().cpu().clone() for k, v in student.state_dict().items()},
        "meta": _plain(dict(meta or {}), "meta"),
    }
    return atomic_torch_save(payload, path)


def read_student_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check the payload; every failure names the file and says what was expected."""
    path = Path(path)
    payload = read_torch_file(path, "student checkpoint", CheckpointError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and "state_dict" in payload and "pytorch-lightning_version" in payload:
            hint = " It looks like a Lightning training checkpoint; use the run's student.ckpt instead."
        raise CheckpointError(f"{path} is not a distill student checkpoint (expected format {FORMAT!r}).{hint}")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has student checkpoint version {payload.get('version')}, this distill reads {VERSION}")
    for key in ("student", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path} has no {key!r} entry")
    return payload


def load_student(path: str | os.PathLike) -> nn.Module:
    """Rebuild the student from a student.ckpt and return it in eval mode (a plain nn.Module).

    The checkpoint's ``meta`` (input resolution, normalisation, recipe, metrics) is attached as ``model.distill_meta``.
    """
    payload = read_student_checkpoint(path)
    spec = payload["student"]
    try:
        model = create_student(spec["name"], **spec.get("kwargs", {}))
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: cannot rebuild student {spec.get('name')!r}: {error}") from error
    expected = model.state_dict()
    stored = payload["state_dict"]
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    mismatched = [k for k, v in stored.items() if k in expected and expected[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path}: weights do not fit {spec['name']} {spec.get('kwargs', {})}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {mismatched[:5]}"
        )
    model.load_state_dict(stored)
    model.distill_meta = payload.get("meta", {})
    return model.eval()
