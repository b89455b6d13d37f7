"""Structurally pruned students in the one checkpoint format: a registered builder that rebuilds the base model and
shrinks its layers to the channel counts a pruning recorded, so ``load_student`` rebuilds a pruned student with
``torch.load(weights_only=True)`` and no pickled module.

The record (``channels``) is plain data, ``{"<module name>.<attribute>": count}`` for every size that differs from
the base model: ``in_channels`` / ``out_channels`` / ``groups`` of convolutions, ``in_features`` / ``out_features``
of linear layers, ``num_features`` of batch norms, e.g. ``{"stage1.0.pw.conv.out_channels": 40,
"stage1.0.pw.bn.num_features": 40, "stage2.0.dw.conv.in_channels": 40, ...}``. Layers are shrunk in place
(their class, and so their forward, stays the model's own), which is what structured pruning (Torch-Pruning's
DepGraph) does to them. The result is a plain ``nn.Module``: ``distill.cost.profile`` counts it exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from distill.models.registry import build_model, builder_path, register_builder

__all__ = ["build_pruned", "pruned_channels", "PRUNABLE_ATTRIBUTES"]

# The sizes a pruning may change, by layer kind.
PRUNABLE_ATTRIBUTES = {
    "conv": ("in_channels", "out_channels", "groups"),
    "linear": ("in_features", "out_features"),
    "batch_norm": ("num_features",),
}


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, _ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _BatchNorm):
        return "batch_norm"
    return None


def pruned_channels(base: nn.Module, pruned: nn.Module) -> dict[str, int]:
    """The record of every layer size in which ``pruned`` differs from ``base`` (same module names).

    Raises ValueError for a pruned layer this format cannot rebuild (a kind other than conv, linear, batch norm).
    """
    base_modules = dict(base.named_modules())
    record: dict[str, int] = {}
    for name, module in pruned.named_modules():
        original = base_modules.get(name)
        if original is None:
            raise ValueError(f"the pruned model has a module {name!r} that the base model does not")
        kind = _kind(module)
        if kind is None:
            changed = [key for key, value in list(module.named_parameters(recurse=False))
                       + list(module.named_buffers(recurse=False))
                       if getattr(original, key, None) is not None and getattr(original, key).shape != value.shape]
            if changed:
                raise ValueError(f"pruning changed {type(module).__name__} {name!r} ({changed}); pruned checkpoints "
                                 f"rebuild convolutions, linear layers and batch norms only")
            continue
        for attribute in PRUNABLE_ATTRIBUTES[kind]:
            value = int(getattr(module, attribute))
            if value != int(getattr(original, attribute)):
                record[f"{name}.{attribute}" if name else attribute] = value
    return record


def _shrink(module: nn.Module, sizes: dict[str, int], name: str) -> None:
    """Resize ``module``'s weights in place to ``sizes`` (new values: zeros; the checkpoint's weights follow)."""
    kind = _kind(module)
    if kind is None:
        raise ValueError(f"pruned channel record names {type(module).__name__} {name!r}: only convolutions, linear "
                         f"layers and batch norms can be resized")
    unknown = sorted(set(sizes) - set(PRUNABLE_ATTRIBUTES[kind]))
    if unknown:
        raise ValueError(f"pruned channel record: {name!r} ({type(module).__name__}) has no resizable {unknown}")
    for attribute, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"pruned channel record: {name}.{attribute} must be a positive int, got {value!r}")
        setattr(module, attribute, int(value))
    if kind == "conv":
        if module.in_channels % module.groups or module.out_channels % module.groups:
            raise ValueError(f"pruned channel record: {name} has {module.in_channels} in / {module.out_channels} out "
                             f"channels, not divisible by its {module.groups} groups")
        transposed = getattr(module, "transposed", False)
        shape = ((module.in_channels, module.out_channels // module.groups) if transposed
                 else (module.out_channels, module.in_channels // module.groups))
        _replace_parameter(module, "weight", (*shape, *module.weight.shape[2:]))
        _replace_parameter(module, "bias", (module.out_channels,))
    elif kind == "linear":
        _replace_parameter(module, "weight", (module.out_features, module.in_features))
        _replace_parameter(module, "bias", (module.out_features,))
    else:
        for key in ("weight", "bias"):
            _replace_parameter(module, key, (module.num_features,))
        for key in ("running_mean", "running_var"):
            if getattr(module, key, None) is not None:
                setattr(module, key, torch.zeros(module.num_features) if key == "running_mean"
                        else torch.ones(module.num_features))


def _replace_parameter(module: nn.Module, key: str, shape: tuple[int, ...]) -> None:
    current = getattr(module, key, None)
    if current is None:
        return
    setattr(module, key, nn.Parameter(torch.zeros(shape, dtype=current.dtype), requires_grad=current.requires_grad))


@register_builder
def build_pruned(base_builder: str, base_kwargs: dict[str, Any], channels: dict[str, int]) -> nn.Module:
    """The model ``build_model(base_builder, **base_kwargs)`` with its layers shrunk to ``channels`` (the record of
    ``pruned_channels``); its weights are placeholders until a checkpoint's state dict is loaded."""
    if not isinstance(channels, dict):
        raise ValueError(f"channels must be a dict {{'<module>.<attribute>': count}}, got {type(channels).__name__}")
    model = build_model(builder_path(base_builder), **dict(base_kwargs or {}))
    modules = dict(model.named_modules())
    by_module: dict[str, dict[str, int]] = {}
    for key, value in channels.items():
        name, _, attribute = str(key).rpartition(".")
        if name not in modules:
            raise ValueError(f"pruned channel record names {name!r}, which {base_builder} has no module of")
        by_module.setdefault(name, {})[attribute] = value
    for name, sizes in by_module.items():
        _shrink(modules[name], sizes, name)
    model.pruned_from = {"builder": builder_path(base_builder), "kwargs": dict(base_kwargs or {})}
    return model
