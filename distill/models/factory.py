"""Students by name, on top of the registry: ``"mobilenet_v1"`` (the paper's MobileNetV1) or any timm model name.

``student_builder`` translates a name into the registry's (builder key, arguments), which is what a student
checkpoint stores; ``create_student`` builds from it. Kept for configs that name a student rather than a
``_target_``.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from torch import nn

from distill.models.mobilenet import MobileNetV1
from distill.models.registry import build_model, builder_path
from distill.models.timm_models import MOBILENET_V1_TIMM_NAMES, create_timm_model

__all__ = ["create_student", "list_students", "student_builder"]

# Students implemented in this package; every other name is looked up in timm.
_STUDENTS = {"mobilenet_v1": MobileNetV1}


def list_students(include_timm: bool = False) -> list[str]:
    """Names accepted by ``create_student``: ours, plus every timm model name if ``include_timm``."""
    names = sorted(_STUDENTS)
    if include_timm:
        import timm

        names += timm.list_models()
    return names


def student_builder(name: str, kwargs: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(registry key, builder arguments) of the student ``name`` with ``kwargs``; errors say what is allowed.

    ``"mobilenet_v1"`` -> MobileNetV1(**kwargs); a timm name -> create_timm_model(model_name=name, **kwargs).
    """
    kwargs = dict(kwargs or {})
    if not isinstance(name, str) or not name:
        raise ValueError(f"student name must be a non-empty string, got {name!r}")
    if name in _STUDENTS:
        cls = _STUDENTS[name]
        allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(f"unknown argument(s) {unknown} for student {name!r}; allowed: {allowed}")
        return builder_path(cls), kwargs
    import timm

    if timm.is_model(name):
        if "width_multiplier" in kwargs and name not in MOBILENET_V1_TIMM_NAMES:
            raise ValueError(
                f"width_multiplier is not an argument of timm model {name!r}: timm puts the width in the "
                "model name (e.g. mobilenetv2_050, mobilenetv3_large_075); choose the name instead"
            )
        return builder_path(create_timm_model), {"model_name": name, **kwargs}
    close = difflib.get_close_matches(name, list_students(include_timm=True), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown student {name!r}: use one of {list_students()} or any timm model name "
        f"(see timm.list_models()).{hint}"
    )


def create_student(name: str, **kwargs: Any) -> nn.Module:
    """Build a student with random weights.

    ``"mobilenet_v1"`` -> ``MobileNetV1(**kwargs)``; any timm model name ->
    ``timm.create_model(name, pretrained=False, **kwargs)``. timm encodes the width in the
    name (``mobilenetv2_050``), so ``width_multiplier`` is refused for timm models (except our
    ``mobilenet_v1_*``, whose width an argument may override).
    """
    builder, builder_kwargs = student_builder(name, kwargs)
    return build_model(builder, **builder_kwargs)
