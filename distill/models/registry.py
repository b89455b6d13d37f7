"""The one registry of model builders: what a Hydra ``_target_`` may build and what a checkpoint may rebuild.

A builder is a callable (class or function) returning an ``nn.Module`` from plain keyword arguments. It is
registered with ``@register_builder`` and keyed by its dotted import path, ``f"{fn.__module__}.{fn.__qualname__}"``
(``distill.models.mobilenet.MobileNetV1``), the same string a Hydra ``_target_`` names. A checkpoint stores that
key and its arguments; ``build_model`` only ever calls registered builders, so loading a checkpoint never imports
or runs code that a file names. Strings are resolved by importing inside ``distill.models`` only, which lets a
re-export (``distill.models.MobileNetV1``) map to its canonical key.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import types
from typing import Any, Callable, TypeVar

from torch import nn

__all__ = ["UnknownBuilderError", "register_builder", "builder_path", "build_model", "list_builders"]

F = TypeVar("F", bound=Callable[..., Any])

_BUILDERS: dict[str, Callable[..., Any]] = {}
# The modules of this package that register builders. They are imported on the first lookup rather than with
# distill.models, because some import heavy libraries (facenet-pytorch, torchvision's detection models).
_BUILDER_MODULES = (
    "distill.models.mobilenet",
    "distill.models.timm_models",
    "distill.models.teachers.facenet",
    "distill.models.teachers.timm_teacher",
    "distill.models.detection.detectors",
    "distill.models.pruned",
)
# Dotted paths under this package may be imported to resolve a string; nothing else is ever imported by name.
_RESOLVABLE_PACKAGE = "distill.models"


class UnknownBuilderError(ValueError):
    """A builder that is not registered (a checkpoint or config naming code the registry does not vouch for)."""


def _key(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def register_builder(fn: F) -> F:
    """Decorator: register ``fn`` under its dotted import path and return it unchanged."""
    if not callable(fn) or not hasattr(fn, "__qualname__"):
        raise TypeError(f"a model builder must be a class or function, got {fn!r}")
    key = _key(fn)
    if "<locals>" in key or "<lambda>" in key:
        raise ValueError(f"builder {key} is not importable by its dotted path; define it at module level")
    _BUILDERS[key] = fn  # a re-imported module (importlib.reload) replaces its own entry
    return fn


def _import_builder_modules() -> None:
    for module in _BUILDER_MODULES:
        importlib.import_module(module)


def _unknown(what: str) -> UnknownBuilderError:
    names = list_builders()
    close = difflib.get_close_matches(what, names, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownBuilderError(
        f"{what!r} is not a registered model builder (register it with distill.models.registry.register_builder); "
        f"registered: {', '.join(names)}.{hint}"
    )


def _resolve(path: str) -> Any:
    """The object a dotted path under ``distill.models`` names (importing submodules as needed), or None."""
    if path != _RESOLVABLE_PACKAGE and not path.startswith(_RESOLVABLE_PACKAGE + "."):
        return None
    parts = path.split(".")
    obj: Any = importlib.import_module(_RESOLVABLE_PACKAGE)
    for index in range(len(_RESOLVABLE_PACKAGE.split(".")), len(parts)):
        part = parts[index]
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        if not isinstance(obj, types.ModuleType) or not hasattr(obj, "__path__"):  # only packages have submodules
            return None
        name = f"{obj.__name__}.{part}"
        if importlib.util.find_spec(name) is None:
            return None
        obj = importlib.import_module(name)
    return obj


def builder_path(fn_or_path: Callable[..., Any] | str) -> str:
    """The canonical registry key of a builder given as a callable or a dotted path (a Hydra ``_target_``).

    Raises UnknownBuilderError for anything not registered.
    """
    if isinstance(fn_or_path, str):
        path = fn_or_path.strip()
        if path in _BUILDERS:
            return path
        _import_builder_modules()
        if path in _BUILDERS:
            return path
        target = _resolve(path)
        if target is None or not callable(target):
            raise _unknown(path)
        return builder_path(target)
    if not callable(fn_or_path) or not hasattr(fn_or_path, "__qualname__"):
        raise TypeError(f"a builder is a registered callable or its dotted path, got {fn_or_path!r}")
    key = _key(fn_or_path)
    if _BUILDERS.get(key) is not fn_or_path:
        _import_builder_modules()
        if _BUILDERS.get(key) is not fn_or_path:
            raise _unknown(key)
    return key


def build_model(builder: str | Callable[..., Any], **kwargs: Any) -> nn.Module:
    """Call the registered builder with ``kwargs``; anything unregistered is refused (UnknownBuilderError)."""
    fn = _BUILDERS[builder_path(builder)]
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"builder {builder_path(builder)} returned a {type(model).__name__}, not an nn.Module")
    return model


def list_builders() -> list[str]:
    """Every registered builder key, sorted (the package's own builders are imported first)."""
    _import_builder_modules()
    return sorted(_BUILDERS)
