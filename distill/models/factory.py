"""One factory for student networks: the paper-exact MobileNetV1, or any timm architecture by name."""

from __future__ import annotations

import difflib
import inspect

from torch import nn

from distill.models.mobilenet import MobileNetV1

__all__ = ["create_student", "list_students"]

# Students implemented in this package; every other name is looked up in timm.
_STUDENTS = {"mobilenet_v1": MobileNetV1}


def list_students(include_timm: bool = False) -> list[str]:
    """Names accepted by ``create_student``: ours, plus every timm model name if ``include_timm``."""
    names = sorted(_STUDENTS)
    if include_timm:
        import timm  # imported on use: timm takes a while to import

        names += timm.list_models()
    return names


def create_student(name: str, **kwargs) -> nn.Module:
    """Build a student with random weights.

    ``"mobilenet_v1"`` -> ``MobileNetV1(**kwargs)``; any timm model name ->
    ``timm.create_model(name, pretrained=False, **kwargs)``. timm encodes the width in the
    name (``mobilenetv2_050``), so ``width_multiplier`` is refused for timm models.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"student name must be a non-empty string, got {name!r}")
    if name in _STUDENTS:
        cls = _STUDENTS[name]
        allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(f"unknown argument(s) {unknown} for student {name!r}; allowed: {allowed}")
        return cls(**kwargs)
    import timm  # imported on use: timm takes a while to import

    if timm.is_model(name):
        if "width_multiplier" in kwargs:
            raise ValueError(
                f"width_multiplier is not an argument of timm model {name!r}: timm puts the width in the "
                "model name (e.g. mobilenetv2_050, mobilenetv3_large_075); choose the name instead"
            )
        try:
            return timm.create_model(name, pretrained=False, **kwargs)
        except TypeError as error:  # an argument the timm model does not take
            raise ValueError(f"bad argument(s) {sorted(kwargs)} for timm model {name!r}: {error}") from error
    close = difflib.get_close_matches(name, list_students(include_timm=True), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown student {name!r}: use one of {list_students()} or any timm model name "
        f"(see timm.list_models()).{hint}"
    )
