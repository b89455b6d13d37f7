"""Registry of distillation losses: config names -> loss classes, and the common base class."""

from __future__ import annotations

import difflib
import inspect

import torch
from torch import nn

__all__ = ["DistillationLoss", "LOSSES", "register_loss", "create_loss", "list_losses"]

KINDS = ("logits", "embedding", "features")


class DistillationLoss(nn.Module):
    """Base class of every distillation loss.

    Subclasses are called as ``loss(student_out, teacher_out)`` and return a scalar tensor.
    Two class attributes tell the training engine what to feed:

    - ``kind``: ``"logits"`` (classifier outputs), ``"embedding"`` (one vector per sample) or
      ``"features"`` (intermediate feature maps);
    - ``uses_target``: ``True`` when ``forward`` also accepts ``target=`` (ground-truth labels);
    - ``same_shape``: ``True`` when student and teacher tensors must have equal shapes, so the engine inserts a
      learnable adapter where they differ (relational losses compare samples with each other and need none);
    - ``always_adapt``: ``True`` when the method itself trains a regressor on the student side (FitNets);
    - ``uses_context``: ``True`` when ``forward`` also accepts ``context=`` (what the task knows about the batch, e.g.
      the boxes and the input size of a detection batch);
    - ``structured``: ``True`` when the loss takes a layer's whole output (a dict or tuple of tensors, e.g. a detector's
      head) rather than its first tensor;
    - ``optional_per_batch``: ``True`` when its layer may not run on some batches (a Faster R-CNN's box head on a
      batch without a labelled image): the term is then left out of that batch's loss, where any other term's
      missing layer is an error.

    A loss that owns learnable parts sized by the features (per-level adapters) builds them in ``setup``, which the
    engine calls once with probe features before training.
    """

    kind: str = "logits"
    uses_target: bool = False
    same_shape: bool = True
    always_adapt: bool = False
    uses_context: bool = False
    structured: bool = False
    optional_per_batch: bool = False

    def setup(self, student_feature, teacher_feature) -> None:
        """Called once with probe features of both models before the optimizer is built; nothing by default."""

    def _check_hyperparameter(self, name: str, value: float, allow_zero: bool = False) -> float:
        """Return ``float(value)``; raise ValueError unless it is positive (or zero when allowed)."""
        value = float(value)
        if not (value > 0 or (allow_zero and value == 0)):
            expected = "a non-negative number" if allow_zero else "a positive number"
            raise ValueError(f"{type(self).__name__}: {name} must be {expected}, got {value}")
        return value

    def _check_same_shape(self, student: torch.Tensor, teacher: torch.Tensor, hint: str = "") -> None:
        """Raise ValueError naming both shapes unless student and teacher shapes are equal."""
        if student.shape != teacher.shape:
            message = (
                f"{type(self).__name__}: student output of shape {tuple(student.shape)} and teacher output "
                f"of shape {tuple(teacher.shape)} must have the same shape"
            )
            raise ValueError(message + (f"; {hint}" if hint else ""))

    def _check_same_batch(self, student: torch.Tensor, teacher: torch.Tensor) -> None:
        """Raise ValueError unless both tensors hold the same number of samples (dimension 0)."""
        if student.dim() < 2 or teacher.dim() < 2:
            raise ValueError(
                f"{type(self).__name__}: expected batched tensors of at least 2 dimensions (batch, ...), "
                f"got student shape {tuple(student.shape)} and teacher shape {tuple(teacher.shape)}"
            )
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: student output of shape {tuple(student.shape)} and teacher output "
                f"of shape {tuple(teacher.shape)} must have the same batch size"
            )

    def _check_ndim(self, tensor: torch.Tensor, ndim: int, what: str) -> None:
        """Raise ValueError unless ``tensor`` has exactly ``ndim`` dimensions."""
        if tensor.dim() != ndim:
            raise ValueError(
                f"{type(self).__name__}: expected {what} with {ndim} dimensions, got shape {tuple(tensor.shape)}"
            )


LOSSES: dict[str, type[DistillationLoss]] = {}


def register_loss(name: str):
    """Class decorator that records a loss class under the config name ``name``."""

    def decorator(cls: type[DistillationLoss]) -> type[DistillationLoss]:
        if not (isinstance(cls, type) and issubclass(cls, DistillationLoss)):
            raise TypeError(f"register_loss({name!r}): {cls!r} is not a DistillationLoss subclass")
        if cls.kind not in KINDS:
            raise ValueError(f"register_loss({name!r}): kind {cls.kind!r} is not one of {KINDS}")
        if name in LOSSES and LOSSES[name] is not cls:
            raise ValueError(f"register_loss: the name {name!r} is already used by {LOSSES[name].__name__}")
        LOSSES[name] = cls
        return cls

    return decorator


def list_losses() -> list[str]:
    """Sorted config names of all registered losses."""
    return sorted(LOSSES)


def create_loss(name: str, **kwargs) -> DistillationLoss:
    """Instantiate the loss registered as ``name`` with the given hyper-parameters.

    Unknown names and unknown keyword arguments raise ValueError listing what is accepted, so a
    typo in a config fails before training starts.
    """
    if name not in LOSSES:
        close = difflib.get_close_matches(str(name), LOSSES, n=1)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown loss {name!r}; known losses: {', '.join(list_losses())}.{suggestion}")
    cls = LOSSES[name]
    parameters = inspect.signature(cls.__init__).parameters
    accepted = [p for p in parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {', '.join(unknown)} for loss {name!r} ({cls.__name__}); "
            f"accepted arguments: {', '.join(accepted) if accepted else 'none'}"
        )
    return cls(**kwargs)
