"""Face verification on pairs: the LFW protocol as FaceNet evaluates it.

Each pair of unit embeddings is scored by its squared L2 distance (0 for identical faces, 4 for
opposite ones) and called "same" when the distance is below a threshold. The pairs are cut into
``n_folds`` consecutive folds, in order, because LFW's ``pairs.txt`` lists its 10 folds one after
another; every threshold is chosen on the other folds and measured on the held-out one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.interpolate import interp1d
from scipy.stats import rankdata

__all__ = [
    "ACCURACY_THRESHOLDS",
    "VAL_THRESHOLDS",
    "check_folds",
    "pair_distances",
    "verify_distances",
    "verify_pairs",
    "tar_at_far",
    "roc_auc",
]

# FaceNet's grids: a coarse one for the accuracy threshold, a finer one for VAL at a small FAR.
ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)

# Below this many different-identity pairs a FAR of 1e-4 is less than one false accept.
_MIN_NEGATIVES_FOR_1E4 = 10_000


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name}: expected a rectangular array or tensor: {exc}") from exc
    if arr.dtype == object:
        raise ValueError(f"{name}: expected a numeric array or tensor, got {type(x).__name__}")
    return arr


def _as_issame(issame, n: int | None = None) -> np.ndarray:
    """Boolean labels of shape (N,), accepting bools or 0/1 numbers."""
    arr = _to_numpy(issame, "issame")
    if arr.ndim != 1:
        raise ValueError(f"issame: expected shape (N,), got {tuple(arr.shape)}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"issame: expected {n} labels (one per pair), got {arr.shape[0]}")
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("issame: expected booleans or 0/1 values")
        arr = arr.astype(bool)
    return arr


def _check_both_classes(issame: np.ndarray, where: str) -> None:
    n_same = int(issame.sum())
    n_diff = int(issame.size - n_same)
    if n_same == 0 or n_diff == 0:
        raise ValueError(
            f"{where}: needs both same and different pairs, "
            f"got {n_same} same and {n_diff} different"
        )


def check_folds(issame, n_folds: int, fold_of=None) -> list[np.ndarray]:
    """The protocol's folds of N pairs, checked: a ValueError names the first fold that lacks same or different
    pairs, which the protocol cannot score.

    ``fold_of`` None: consecutive folds, the first ones one larger (``np.array_split``), as LFW's ``pairs.txt`` lists
    them. ``fold_of``: each pair's fold (N,) in 0..n_folds-1, e.g. the file's folds after pairs with an unreadable
    image were left out, which would shift consecutive folds.
    """
    same = _as_issame(issame)
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool) or n_folds < 2:
        raise ValueError(f"n_folds: expected an integer >= 2, got {n_folds!r}")
    if same.size < n_folds:
        raise ValueError(f"{same.size} pairs cannot be split into n_folds={n_folds} folds")
    if fold_of is None:
        folds = np.array_split(np.arange(same.size), int(n_folds))
        for i, idx in enumerate(folds):
            _check_both_classes(same[idx], f"fold {i} of {n_folds} (pairs {idx[0]}:{idx[-1] + 1})")
        return folds
    fold_of = _to_numpy(fold_of, "fold_of")
    if fold_of.shape != same.shape or not np.issubdtype(fold_of.dtype, np.integer):
        raise ValueError(f"fold_of: expected {same.size} integer fold ids (one per pair), got {fold_of.dtype} "
                         f"{tuple(fold_of.shape)}")
    if fold_of.size and (fold_of.min() < 0 or fold_of.max() >= n_folds):
        raise ValueError(f"fold_of: fold ids must lie in 0..{n_folds - 1}, got {fold_of.min()}..{fold_of.max()}")
    folds = [np.flatnonzero(fold_of == i) for i in range(int(n_folds))]
    for i, idx in enumerate(folds):
        _check_both_classes(same[idx], f"fold {i} of {n_folds} ({idx.size} pairs)")
    return folds


def pair_distances(emb1, emb2) -> np.ndarray:
    """Squared L2 distance between the L2-normalised rows of two (N, D) embedding arrays.

    Normalising here is a no-op for unit embeddings and keeps distances in [0, 4], the range the
    threshold grids cover, for any others.
    """
    a = _to_numpy(emb1, "emb1").astype(np.float64)
    b = _to_numpy(emb2, "emb2").astype(np.float64)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"emb1, emb2: expected (N, D) arrays, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape != b.shape:
        raise ValueError(f"emb1, emb2: shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("emb1, emb2: embeddings contain NaN or infinity")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum((a - b) ** 2, axis=1)


def _count_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly below each threshold (a pair is accepted when dist < t)."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def _accuracy_curve(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    pos = np.sort(dist[issame])
    neg = np.sort(dist[~issame])
    true_accepts = _count_below(pos, thresholds)
    true_rejects = neg.size - _count_below(neg, thresholds)
    return (true_accepts + true_rejects) / dist.size


def _val_far(dist: np.ndarray, issame: np.ndarray, threshold: float) -> tuple[float, float]:
    accepted = dist < threshold
    val = np.sum(accepted & issame) / np.sum(issame)
    far = np.sum(accepted & ~issame) / np.sum(~issame)
    return float(val), float(far)


def _threshold_at_far(
    dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray, far_target: float
) -> float:
    """Threshold whose FAR equals ``far_target``, interpolated linearly along the FAR curve.

    Thresholds ascend, so the FAR curve never decreases and is already sorted; where it is flat,
    interpolation runs from the largest threshold of the lower FAR to the smallest of the higher
    one. FaceNet's rule: when no threshold reaches the target, the threshold is 0 (accept nothing).
    """
    neg = np.sort(dist[~issame])
    far_curve = _count_below(neg, thresholds) / neg.size
    if far_curve.max() < far_target:
        return 0.0
    if far_curve[0] >= far_target:
        return float(thresholds[0])
    curve = interp1d(far_curve, thresholds, kind="linear", assume_sorted=True)
    return float(curve(far_target))


def roc_auc(dist, issame) -> float:
    """ROC AUC with score = -distance: P(same pair closer than different pair), ties count half."""
    dist = _to_numpy(dist, "dist").astype(np.float64).ravel()
    same = _as_issame(issame, dist.size)
    _check_both_classes(same, "roc_auc")
    ranks = rankdata(-dist)  # average ranks for ties: a tie adds half a win (Mann-Whitney U)
    n_pos = int(same.sum())
    n_neg = same.size - n_pos
    u = ranks[same].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def tar_at_far(dist, issame, far: float) -> float:
    """True accept rate at the largest threshold whose false accept rate is <= ``far``, all pairs.

    With k = floor(far * n_different) false accepts allowed, that threshold is the (k+1)-th
    smallest different-pair distance (pairs with dist < threshold are accepted).
    """
    dist = _to_numpy(dist, "dist").astype(np.float64).ravel()
    same = _as_issame(issame, dist.size)
    _check_both_classes(same, "tar_at_far")
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far: expected a rate in [0, 1], got {far}")
    neg = np.sort(dist[~same])
    allowed = int(math.floor(far * neg.size + 1e-9))
    if allowed >= neg.size:
        return 1.0
    threshold = neg[allowed]
    return float(np.mean(dist[same] < threshold))


def verify_distances(
    dist,
    issame,
    n_folds: int = 10,
    far_target: float = 1e-3,
    thresholds=None,
    fold_of=None,
) -> dict:
    """The LFW protocol on precomputed squared distances; see :func:`verify_pairs`."""
    dist = _to_numpy(dist, "dist").astype(np.float64)
    if dist.ndim != 1:
        raise ValueError(f"dist: expected shape (N,), got {tuple(dist.shape)}")
    if not np.isfinite(dist).all():
        raise ValueError("dist: distances contain NaN or infinity")
    same = _as_issame(issame, dist.size)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds: expected an integer >= 2, got {n_folds!r}")
    if dist.size < n_folds:
        raise ValueError(f"dist: {dist.size} pairs cannot be split into n_folds={n_folds} folds")
    if not 0.0 < far_target < 1.0:
        raise ValueError(f"far_target: expected a rate in (0, 1), got {far_target}")
    _check_both_classes(same, "issame")
    if thresholds is None:
        acc_thresholds, val_thresholds = ACCURACY_THRESHOLDS, VAL_THRESHOLDS
    else:
        acc_thresholds = np.sort(_to_numpy(thresholds, "thresholds").astype(np.float64).ravel())
        if acc_thresholds.size == 0:
            raise ValueError("thresholds: expected at least one threshold")
        val_thresholds = acc_thresholds

    folds = check_folds(same, n_folds, fold_of)  # consecutive, first folds one larger; or each pair's fold

    accuracies, best_thresholds, vals, fars = [], [], [], []
    for i, test in enumerate(folds):
        train = np.concatenate([idx for j, idx in enumerate(folds) if j != i])
        acc_train = _accuracy_curve(dist[train], same[train], acc_thresholds)
        best = float(acc_thresholds[int(np.argmax(acc_train))])  # first maximum, as FaceNet
        best_thresholds.append(best)
        accuracies.append(float(np.mean((dist[test] < best) == same[test])))

        val_threshold = _threshold_at_far(dist[train], same[train], val_thresholds, far_target)
        val, far = _val_far(dist[test], same[test], val_threshold)
        vals.append(val)
        fars.append(far)

    n_diff = int((~same).sum())
    tar_1e4 = tar_at_far(dist, same, 1e-4) if n_diff >= _MIN_NEGATIVES_FOR_1E4 else None
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "val": float(np.mean(vals)),
        "val_std": float(np.std(vals)),
        "far": float(np.mean(fars)),
        "threshold": float(np.mean(best_thresholds)),
        "auc": roc_auc(dist, same),
        "tar_at_far_1e-4": tar_1e4,
    }


def verify_pairs(
    emb1,
    emb2,
    issame,
    n_folds: int = 10,
    far_target: float = 1e-3,
    thresholds=None,
    fold_of=None,
) -> dict:
    """Verification scores of embedding pairs under the LFW protocol (FaceNet's convention).

    ``emb1``, ``emb2``: (N, D) arrays or tensors, row i of each forming pair i; ``issame``: (N,)
    booleans. Returns plain floats: ``accuracy``/``accuracy_std`` (mean/std over folds, each
    fold's threshold maximising accuracy on the others), ``threshold`` (mean chosen threshold),
    ``val``/``val_std``/``far`` (true and false accept rates on the held-out fold at the threshold
    whose FAR on the other folds is ``far_target``), ``auc`` (ROC AUC over all pairs) and
    ``tar_at_far_1e-4`` (over all pairs; None with fewer than 10000 different pairs).
    ``thresholds`` replaces both default grids (0 to 4 by 0.01 for accuracy, by 0.001 for VAL).
    ``fold_of``: each pair's fold (0..n_folds-1) instead of ``n_folds`` consecutive folds (see :func:`check_folds`).
    """
    dist = pair_distances(emb1, emb2)
    return verify_distances(
        dist, issame, n_folds=n_folds, far_target=far_target, thresholds=thresholds, fold_of=fold_of
    )
