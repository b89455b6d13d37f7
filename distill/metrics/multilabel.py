"""Multi-label scores: mean average precision over attributes (the face-attribute metric)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torchmetrics.classification import BinaryAveragePrecision, MultilabelAveragePrecision

__all__ = ["multilabel_average_precision"]


def multilabel_average_precision(
    probs_or_logits, target, names: Sequence[str] | None = None
) -> dict:
    """Average precision of each attribute and their macro mean.

    ``probs_or_logits``: (N, L) scores (AP only depends on their order, so probabilities and logits
    give the same result); ``target``: (N, L) of 0/1. An attribute with no positive sample has no
    AP: it is reported as None and left out of ``mAP`` (None too when no attribute has a positive), and a
    ``RuntimeWarning`` names it, so a macro mean over fewer attributes than the data has never passes unseen.
    ``chance_mAP`` is what a random scorer gets on average over the same attributes: each one's share of positives
    (the baseline a model must beat; ``None`` with ``mAP``).
    Returns ``{"mAP": float | None, "chance_mAP": float | None, "attributes_averaged": int,
    "attributes_without_positives": [names], "ap_per_attribute": {name: float | None}}``; names default to the
    column indices as strings.
    """
    scores = torch.as_tensor(probs_or_logits).detach()
    target = torch.as_tensor(target).detach()
    if scores.ndim != 2 or not scores.is_floating_point():
        raise ValueError(
            f"probs_or_logits: expected a floating (N, L) tensor, got shape {tuple(scores.shape)} "
            f"and dtype {scores.dtype}"
        )
    if tuple(target.shape) != tuple(scores.shape):
        raise ValueError(
            f"target: expected shape {tuple(scores.shape)} to match probs_or_logits, "
            f"got {tuple(target.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("probs_or_logits: expected at least one sample, got 0")
    if not torch.isfinite(scores).all():
        raise ValueError("probs_or_logits: contains NaN or infinity")
    if target.is_complex() or not ((target == 0) | (target == 1)).all():
        raise ValueError("target: expected 0/1 (or boolean) labels")
    num_labels = scores.shape[1]
    if names is None:
        names = [str(i) for i in range(num_labels)]
    elif len(names) != num_labels:
        raise ValueError(f"names: expected {num_labels} names (one per column), got {len(names)}")
    target = target.long().to(scores.device)

    scored = torch.nonzero(target.sum(dim=0) > 0).flatten()
    per_attribute = {name: None for name in names}
    without = [str(names[i]) for i in torch.nonzero(target.sum(dim=0) == 0).flatten().tolist()]
    counts = {"attributes_averaged": int(scored.numel()), "attributes_without_positives": without}
    if without:
        shown = ", ".join(without[:10]) + (f" and {len(without) - 10} more" if len(without) > 10 else "")
        warnings.warn(f"mean average precision over {scored.numel()} of {num_labels} attributes: {len(without)} have "
                      f"no positive sample among the {scores.shape[0]} images and no AP ({shown})", RuntimeWarning,
                      stacklevel=2)
    if scored.numel() == 0:
        return {"mAP": None, "chance_mAP": None, **counts, "ap_per_attribute": per_attribute}
    # Only attributes with a positive are passed on: for the others torchmetrics warns and
    # returns a placeholder value instead of an undefined AP. Its multi-label form needs two or
    # more labels, so a single one goes through the binary form (the same computation).
    if scored.numel() == 1:
        metric = BinaryAveragePrecision().to(scores.device)
    else:
        metric = MultilabelAveragePrecision(num_labels=scored.numel(), average=None)
        metric = metric.to(scores.device)
    ap = metric(scores[:, scored], target[:, scored]).reshape(-1).cpu().tolist()
    for column, value in zip(scored.tolist(), ap, strict=True):
        per_attribute[names[column]] = float(value)
    chance = float(target[:, scored].float().mean(dim=0).mean())
    return {"mAP": float(sum(ap) / len(ap)), "chance_mAP": chance, **counts, "ap_per_attribute": per_attribute}
