"""Structured channel pruning with Torch-Pruning (DepGraph): whole channels leave every layer they couple (a
depthwise conv, its batch norm, the next pointwise conv's inputs), so the pruned student is a smaller dense network
that ``distill.core.cost.profile`` counts exactly and any runtime speeds up on.

Global pruning by group L2 (or L1) norm, in small steps, until the student's mult-adds are within ``tolerance`` of
``target`` x the original; the layer that makes the model's output is never pruned (the output keeps its size).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from distill.core.cost import profile
from distill.models.pruned import build_pruned, pruned_channels
from distill.models.registry import build_model, builder_path

__all__ = ["PruningError", "PruneResult", "prune_to_target", "output_layer", "PRUNED_BUILDER"]

log = logging.getLogger(__name__)

PRUNED_BUILDER = builder_path(build_pruned)


class PruningError(RuntimeError):
    """The pruning cannot reach its target, or its result cannot be rebuilt from a checkpoint."""


@dataclass
class PruneResult:
    model: nn.Module
    builder: str  # the registered builder that rebuilds the pruned model (build_pruned)
    kwargs: dict[str, Any]  # its arguments: the base builder and kwargs, and the channel record
    mult_adds_before: int
    mult_adds_after: int
    steps: int

    @property
    def ratio(self) -> float:
        return self.mult_adds_after / self.mult_adds_before


def output_layer(model: nn.Module, resolution: int) -> nn.Module:
    """The last convolution or linear layer a forward pass calls: the one whose outputs are the model's output."""
    called: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda module, _i, _o: called.append(module))
               for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, resolution, resolution))
    finally:
        for handle in handles:
            handle.remove()
    if not called:
        raise PruningError(f"{type(model).__name__} has no convolution or linear layer to prune")
    return called[-1]


def prune_to_target(model: nn.Module, builder: str, kwargs: dict[str, Any], resolution: int, *, target: float,
                    tolerance: float = 0.02, importance: str = "l2", max_layer_pruning: float = 0.8,
                    steps: int = 100, round_to: int = 8) -> PruneResult:
    """Prune ``model`` (in place; rebuilt by ``builder(**kwargs)``) to ``target`` of its mult-adds (+- tolerance).

    ``round_to``: every pruned layer keeps a multiple of this many channels (where it had one): runtimes block
    channels in groups of 8 or 16, and a pruned network with odd counts can run slower than the unpruned one.
    """
    try:
        import torch_pruning as tp
    except ImportError as error:
        raise PruningError('compress=prune needs Torch-Pruning: pip install "distill[compress]"') from error
    model = model.cpu().eval()
    size = (3, resolution, resolution)
    before = profile(model, size).mult_adds
    with torch.no_grad():
        expected_shape = model(torch.zeros(1, *size)).shape
    scorer = tp.importance.GroupMagnitudeImportance(p=1 if importance == "l1" else 2)
    pruner = tp.pruner.MetaPruner(
        model, torch.randn(1, *size, generator=torch.Generator().manual_seed(0)), importance=scorer,
        global_pruning=True, pruning_ratio=max_layer_pruning, max_pruning_ratio=max_layer_pruning,
        iterative_steps=steps, ignored_layers=[output_layer(model, resolution)],
        round_to=round_to if round_to > 1 else None)
    after, taken = before, 0
    while after > (target + tolerance) * before and taken < steps:
        with torch.no_grad():
            pruner.step()
        taken += 1
        after = profile(model, size).mult_adds
    if after > (target + tolerance) * before:
        raise PruningError(f"pruning reached {after / before:.3f} of the student's mult-adds, not "
                           f"{target} +- {tolerance}, with at most {max_layer_pruning:.0%} of each layer's channels "
                           f"removed; raise compress.max_layer_pruning or compress.target_mult_adds")
    if after < (target - tolerance) * before:
        log.warning("pruning overshot: %.3f of the mult-adds (target %s +- %s); use more compress.pruning_steps",
                    after / before, target, tolerance)
    with torch.no_grad():
        shape = model(torch.zeros(1, *size)).shape
    if shape != expected_shape:
        raise PruningError(f"pruning changed the output's shape from {tuple(expected_shape)} to {tuple(shape)}")
    channels = pruned_channels(build_model(builder, **kwargs), model)
    pruned_kwargs = {"base_builder": builder_path(builder), "base_kwargs": dict(kwargs), "channels": channels}
    try:  # the record must rebuild exactly this network, or the checkpoint would not load
        build_pruned(**pruned_kwargs).load_state_dict(model.state_dict())
    except (RuntimeError, ValueError) as error:
        raise PruningError(f"the pruned {type(model).__name__} cannot be rebuilt from its channel record: "
                           f"{error}") from error
    log.info("Pruned %s to %.3f of its mult-adds (%.2f M -> %.2f M) in %d steps", type(model).__name__,
             after / before, before / 1e6, after / 1e6, taken)
    return PruneResult(model, PRUNED_BUILDER, pruned_kwargs, before, after, taken)
