"""Loading a teacher's weights from a local file, with errors that say which file and which keys are wrong."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.core.io import read_torch_file

__all__ = ["load_weights_file"]


def load_weights_file(model: nn.Module, path: Path, *, ignore_prefixes: tuple[str, ...] = ()) -> nn.Module:
    """Load a state dict (plain, or under 'state_dict'/'model' as in training checkpoints) into ``model``."""
    path = Path(path).expanduser()
    state = read_torch_file(path, "teacher weights file")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"teacher weights file {path} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(ignore_prefixes)]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
             for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"teacher weights file {path} does not fit {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    model.load_state_dict(state, strict=not ignore_prefixes)
    return model
