"""Mult-adds and parameter counts in the MobileNet paper's convention, for any ``nn.Module``.

Convention (PAPER.md, "Cost"): mult-adds are the multiply-accumulates of convolution and
fully connected layers only (no BatchNorm, activation, pooling or bias); parameters are the
weights of those layers. This convention reproduces the paper's tables exactly.

The count comes from one real forward pass (batch 1, zeros) with hooks on every conv and linear
module, so it follows whatever path the model really takes: resolution-dependent layers, modules
called twice, any architecture. Arithmetic done outside such modules (e.g. attention matmuls via
``torch.matmul``) is not counted.

Command line: ``python -m distill.cost mobilenet_v1 width_multiplier=0.5 resolution=160``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["CostProfile", "LAYER_TYPES", "format_table", "layer_type", "profile"]

LAYER_TYPES = ("conv1x1", "conv_dw", "conv3x3", "fc", "other")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class CostProfile:
    """Cost of one forward pass of one image of size ``input_size`` = (C, H, W)."""

    mult_adds: int
    params: int
    total_params: int
    by_layer_type: dict[str, tuple[int, int]]
    input_size: tuple[int, int, int]

    @property
    def mult_adds_m(self) -> float:
        """Mult-adds in millions, the unit of the paper's tables."""
        return self.mult_adds / 1e6

    @property
    def params_m(self) -> float:
        """Conv + FC weights in millions, the unit of the paper's tables."""
        return self.params / 1e6

    def shares(self) -> dict[str, tuple[float, float]]:
        """Percent of mult-adds and of params per layer type, as in the paper's Table 2."""
        return {
            kind: (_percent(mult_adds, self.mult_adds), _percent(params, self.params))
            for kind, (mult_adds, params) in self.by_layer_type.items()
        }

    def as_dict(self) -> dict:
        """Plain JSON-ready data (lists instead of tuples)."""
        return {
            "mult_adds": self.mult_adds,
            "params": self.params,
            "total_params": self.total_params,
            "by_layer_type": {kind: list(value) for kind, value in self.by_layer_type.items()},
            "input_size": list(self.input_size),
        }


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def layer_type(module: nn.Module) -> str:
    """The Table 2 category of a conv or linear module."""
    if isinstance(module, nn.Linear):
        return "fc"
    if isinstance(module, _TRANSPOSED_CONVS):
        return "other"
    if module.groups == module.in_channels and module.in_channels > 1:
        return "conv_dw"
    if module.groups == 1 and tuple(module.kernel_size) == (1, 1):
        return "conv1x1"
    if module.groups == 1 and tuple(module.kernel_size) == (3, 3):
        return "conv3x3"
    return "other"


def _mult_adds(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """Multiply-accumulates of one call of ``module``, from its real tensor shapes.

    The profiled input has batch size 1, so whole tensors are counted: a model that folds
    patches or tokens into the batch dimension of an inner layer is still counted in full.
    """
    if isinstance(module, nn.Linear):
        # Every output element is a dot product of length in_features.
        return output.numel() * module.in_features
    kernel = math.prod(module.kernel_size)
    if isinstance(module, _TRANSPOSED_CONVS):
        # Every input element is scattered through out_channels/groups kernels.
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    # Every output element is a dot product over in_channels/groups channels and the kernel window.
    return output.numel() * (module.in_channels // module.groups) * kernel


def _check_input_size(input_size) -> tuple[int, int, int]:
    if (
        not isinstance(input_size, (tuple, list))
        or len(input_size) != 3
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in input_size)
    ):
        raise ValueError(
            f"input_size must be (C, H, W): a tuple of 3 positive ints, e.g. (3, 224, 224); got {input_size!r}"
        )
    return tuple(int(v) for v in input_size)


def _dummy_input(model: nn.Module, input_size: tuple[int, int, int]) -> torch.Tensor:
    """Zeros on the model's device, in its floating-point dtype (float32 for a model without tensors)."""
    device, dtype = torch.device("cpu"), torch.float32
    for tensor in list(model.parameters()) + list(model.buffers()):
        device = tensor.device
        if tensor.is_floating_point():
            dtype = tensor.dtype
            break
    return torch.zeros((1, *input_size), device=device, dtype=dtype)


def profile(model: nn.Module, input_size=(3, 224, 224)) -> CostProfile:
    """Count mult-adds and params of ``model`` on one ``input_size`` = (C, H, W) image.

    Runs one forward pass in eval mode under ``torch.no_grad``; the training mode of every
    submodule is restored afterwards. A module called twice counts its mult-adds twice, its
    weights once. ``params`` counts the weights of conv and linear modules that the forward
    pass uses; ``total_params`` counts every parameter of the model (BN, biases, unused layers).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    input_size = _check_input_size(input_size)

    counts = {kind: [0, 0] for kind in LAYER_TYPES}
    seen_weights: set[int] = set()

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        kind = layer_type(module)
        counts[kind][0] += _mult_adds(module, inputs, output)
        if id(module.weight) not in seen_weights:  # shared or re-used weights count once
            seen_weights.add(id(module.weight))
            counts[kind][1] += module.weight.numel()

    modes = {module: module.training for module in model.modules()}
    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, _CONVS + _TRANSPOSED_CONVS + (nn.Linear,))
    ]
    try:
        model.eval()
        x = _dummy_input(model, input_size)
        with torch.no_grad():
            try:
                model(x)
            except Exception as error:  # any failure means this input does not suit this model
                raise ValueError(
                    f"forward pass of {type(model).__name__} failed on input of size "
                    f"(1, {', '.join(map(str, input_size))}): {type(error).__name__}: {error}"
                ) from error
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    by_layer_type = {kind: (mult_adds, params) for kind, (mult_adds, params) in counts.items()}
    return CostProfile(
        mult_adds=sum(v[0] for v in by_layer_type.values()),
        params=sum(v[1] for v in by_layer_type.values()),
        total_params=sum(p.numel() for p in model.parameters()),
        by_layer_type=by_layer_type,
        input_size=input_size,
    )


def format_table(cost: CostProfile) -> str:
    """Table 2 style: mult-adds and params per layer type with their shares, then totals."""
    header = f"{'layer type':<10} {'mult-adds (M)':>14} {'share %':>8} {'params (M)':>11} {'share %':>8}"
    lines = [header, "-" * len(header)]
    shares = cost.shares()
    for kind, (mult_adds, params) in cost.by_layer_type.items():
        ma_share, p_share = shares[kind]
        lines.append(f"{kind:<10} {mult_adds / 1e6:>14.2f} {ma_share:>8.2f} {params / 1e6:>11.3f} {p_share:>8.2f}")
    lines.append("-" * len(header))
    lines.append(f"{'total':<10} {cost.mult_adds_m:>14.2f} {100.0:>8.2f} {cost.params_m:>11.3f} {100.0:>8.2f}")
    lines.append(f"all parameters (with BN and biases): {cost.total_params / 1e6:.3f} M")
    return "\n".join(lines)
