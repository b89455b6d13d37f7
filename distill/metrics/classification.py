"""Single-label classification scores: top-k accuracy and the most frequent confusions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

__all__ = ["topk_accuracy", "most_confused_pairs"]


def _check_logits_target(logits, target) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits)
    target = torch.as_tensor(target)
    if logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError(
            f"logits: expected a floating (N, C) tensor, got shape {tuple(logits.shape)} "
            f"and dtype {logits.dtype}"
        )
    if target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target: expected shape ({logits.shape[0]},) to match logits {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target: expected integer class indices, got dtype {target.dtype}")
    if logits.shape[0] == 0:
        raise ValueError("logits: expected at least one sample, got 0")
    num_classes = logits.shape[1]
    if target.min() < 0 or target.max() >= num_classes:
        raise ValueError(
            f"target: class indices must lie in [0, {num_classes - 1}], "
            f"got [{int(target.min())}, {int(target.max())}]"
        )
    return logits.detach(), target.detach().long().to(logits.device)


def topk_accuracy(logits, target, ks: Sequence[int] = (1, 5)) -> dict:
    """Share of samples whose true class is among the k highest logits, for each k in ``ks``.

    Returns ``{"top1": ..., "top5": ...}`` as floats. With k >= the number of classes every true
    class is in the top k, so the score is 1 (torchmetrics refuses such a k).
    """
    logits, target = _check_logits_target(logits, target)
    num_classes = logits.shape[1]
    result = {}
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks: expected positive integers, got {k!r}")
        if k >= num_classes:
            result[f"top{k}"] = 1.0
            continue
        metric = MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro").to(
            logits.device
        )
        result[f"top{k}"] = float(metric(logits, target))
    return result


def most_confused_pairs(
    logits, target, class_names: Sequence[str] | None = None, k: int = 10
) -> list:
    """The ``k`` most frequent (true, predicted) mistakes of the arg-max prediction.

    Returns a list of ``{"true", "predicted", "count"}`` dicts, largest count first (ties by class
    index), naming classes by ``class_names`` when given, else by index; pairs never confused are
    left out.
    """
    logits, target = _check_logits_target(logits, target)
    num_classes = logits.shape[1]
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"class_names: expected {num_classes} names (one per logit column), "
            f"got {len(class_names)}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    metric = MulticlassConfusionMatrix(num_classes=num_classes).to(logits.device)
    confusion = metric(logits.argmax(dim=1), target).cpu()  # rows: true class, columns: predicted
    confusion.fill_diagonal_(0)
    rows, cols = torch.nonzero(confusion, as_tuple=True)
    counts = confusion[rows, cols]
    entries = sorted(
        zip(counts.tolist(), rows.tolist(), cols.tolist(), strict=True),
        key=lambda entry: (-entry[0], entry[1], entry[2]),
    )

    def name(index: int):
        return class_names[index] if class_names is not None else index

    return [
        {"true": name(true), "predicted": name(pred), "count": int(count)}
        for count, true, pred in entries[:k]
    ]
