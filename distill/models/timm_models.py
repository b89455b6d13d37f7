"""timm in both directions: any timm architecture as a registered builder, and our MobileNetV1 as timm models.

``create_timm_model`` is the registry's builder for timm students (a checkpoint stores its ``model_name``).

The paper's MobileNetV1 (Table 1) is registered with timm as ``mobilenet_v1_100``, ``mobilenet_v1_075``,
``mobilenet_v1_050`` and ``mobilenet_v1_025`` (on ``import distill.models``), so ``timm.create_model`` and tools
built on it can make it. timm ships its own, different MobileNetV1 as ``mobilenetv1_100`` / ``mobilenetv1_125``
(no underscore before ``v1``: a timm-trained variant with other layer names); ours keep the underscore and the
registration refuses to overwrite any timm model, so neither shadows the other.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import timm
from timm.models import register_model
from torch import nn

from distill.models.mobilenet import MobileNetV1
from distill.models.registry import register_builder

__all__ = ["MOBILENET_V1_TIMM_NAMES", "create_timm_model", "width_variant", "mobilenet_v1_100", "mobilenet_v1_075",
           "mobilenet_v1_050", "mobilenet_v1_025"]

# timm name -> width multiplier of the paper's MobileNetV1 it builds by default.
MOBILENET_V1_TIMM_NAMES = {"mobilenet_v1_100": 1.0, "mobilenet_v1_075": 0.75, "mobilenet_v1_050": 0.5,
                           "mobilenet_v1_025": 0.25}
# Arguments timm's create_model passes to every entrypoint; MobileNetV1 has no pretrained config to use them.
_TIMM_FACTORY_ARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def width_variant(model_name: str, width_multiplier: float) -> str:
    """The timm model of ``model_name``'s family at another width: timm writes the width into the name
    (``mobilenetv2_100`` at 0.5 is ``mobilenetv2_050``), so a width sweep picks the name."""
    stem, sep, digits = model_name.rpartition("_")
    if not sep or not (digits.isdigit() and len(digits) == 3):
        raise ValueError(f"width_multiplier={width_multiplier}: timm model {model_name!r} has no width in its name "
                         f"(a family like mobilenetv2_100 / mobilenetv3_large_075 has); leave width_multiplier out")
    wanted = f"{stem}_{round(float(width_multiplier) * 100):03d}"
    if not timm.is_model(wanted):
        widths = sorted(int(n.rpartition("_")[2]) / 100 for n in timm.list_models(f"{stem}_[0-9][0-9][0-9]"))
        raise ValueError(f"width_multiplier={width_multiplier}: timm has no {wanted!r}; the widths of {stem}_* are "
                         f"{widths}")
    return wanted


@register_builder
def create_timm_model(model_name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(model_name, pretrained=False, **kwargs)``: random weights, nothing downloaded.

    ``width_multiplier`` works for every family: our ``mobilenet_v1_*`` take it as an argument, timm's own families
    switch to the name of that width (``width_variant``).
    """
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be a non-empty timm model name, got {model_name!r}")
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown timm model {model_name!r} (see timm.list_models()).{hint}")
    if "width_multiplier" in kwargs and model_name not in MOBILENET_V1_TIMM_NAMES:
        model_name = width_variant(model_name, kwargs.pop("width_multiplier"))
    if "pretrained" in kwargs:
        raise ValueError(f"timm model {model_name!r}: pretrained weights are never downloaded; leave 'pretrained' "
                         "out and load a local weights file instead")
    try:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    except TypeError as error:  # an argument the timm model does not take
        raise ValueError(f"bad argument(s) {sorted(kwargs)} for timm model {model_name!r}: {error}") from error


def _mobilenet_v1(name: str, pretrained: bool, kwargs: dict[str, Any]) -> MobileNetV1:
    if pretrained:
        raise ValueError(f"{name}: distill ships no pretrained MobileNetV1 weights; create it with pretrained=False "
                         "and load a trained student with distill.load_student(path)")
    for key in _TIMM_FACTORY_ARGS:
        kwargs.pop(key, None)
    if "drop_rate" in kwargs:  # timm's name for classifier dropout
        if "dropout" in kwargs:
            raise ValueError(f"{name}: give dropout or drop_rate, not both")
        kwargs["dropout"] = kwargs.pop("drop_rate")
    kwargs.setdefault("width_multiplier", MOBILENET_V1_TIMM_NAMES[name])  # an explicit width wins over the name's
    allowed = list(inspect.signature(MobileNetV1).parameters)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {unknown}; MobileNetV1 takes {allowed}")
    return MobileNetV1(**kwargs)


def _register_with_timm(fn):
    """timm's register_model, refusing to overwrite a model timm itself (or anyone else) registered."""
    if timm.is_model(fn.__name__):
        owner = timm.models.model_entrypoint(fn.__name__)
        if (owner.__module__, owner.__qualname__) != (fn.__module__, fn.__qualname__):
            raise RuntimeError(f"timm already has a model named {fn.__name__!r} ({owner.__module__}); "
                               "distill will not overwrite it")
    return register_model(fn)


@_register_with_timm
def mobilenet_v1_100(pretrained: bool = False, **kwargs: Any) -> MobileNetV1:
    """The paper's MobileNetV1, width 1.0 (569M mult-adds, 4.2M params at 224 px)."""
    return _mobilenet_v1("mobilenet_v1_100", pretrained, kwargs)


@_register_with_timm
def mobilenet_v1_075(pretrained: bool = False, **kwargs: Any) -> MobileNetV1:
    """The paper's MobileNetV1, width 0.75 (325M mult-adds, 2.6M params at 224 px)."""
    return _mobilenet_v1("mobilenet_v1_075", pretrained, kwargs)


@_register_with_timm
def mobilenet_v1_050(pretrained: bool = False, **kwargs: Any) -> MobileNetV1:
    """The paper's MobileNetV1, width 0.5 (149M mult-adds, 1.3M params at 224 px)."""
    return _mobilenet_v1("mobilenet_v1_050", pretrained, kwargs)


@_register_with_timm
def mobilenet_v1_025(pretrained: bool = False, **kwargs: Any) -> MobileNetV1:
    """The paper's MobileNetV1, width 0.25 (41M mult-adds, 0.5M params at 224 px)."""
    return _mobilenet_v1("mobilenet_v1_025", pretrained, kwargs)
