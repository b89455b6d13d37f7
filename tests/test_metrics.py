"""Tests of distill.metrics against hand computations and independent reference formulas."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from distill.metrics import (
    EARTH_RADIUS_KM,
    GEO_SCALES_KM,
    GeolocationAccuracy,
    great_circle_km,
    most_confused_pairs,
    multilabel_average_precision,
    tar_at_far,
    topk_accuracy,
    verify_distances,
    verify_pairs,
)

KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180


# ---------------------------------------------------------------- verification (LFW protocol)


def _unit_pairs_at_angles(angles):
    """2-d unit embeddings whose pair i is ``angles[i]`` radians apart: dist = 2 - 2 cos(angle)."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 2 * np.pi, size=len(angles))
    emb1 = np.stack([np.cos(base), np.sin(base)], axis=1)
    emb2 = np.stack([np.cos(base + angles), np.sin(base + angles)], axis=1)
    return emb1, emb2


# 20 pairs, 2 folds of 10; in each fold 5 same pairs then 5 different ones. Distances sit off the
# threshold grids so no distance equals a threshold.
HAND_DIST = np.array(
    [0.2055, 0.4055, 0.6055, 0.8055, 1.5051, 0.7055, 1.2055, 1.4055, 1.8055, 2.0055]
    + [0.3055, 0.5055, 0.5555, 1.1055, 1.3055, 1.0055, 1.5055, 1.7055, 1.9055, 2.1055]
)
HAND_SAME = np.array(([True] * 5 + [False] * 5) * 2)


def test_hand_made_two_folds_accuracy_and_threshold():
    # Test fold 0, thresholds chosen on fold 1: accepting dist < t scores 9/10 for t in
    # (1.3055, 1.5055] (all 5 same, 4 of 5 different rejected), so t = 1.31 (first grid value).
    # On fold 0, t = 1.31 accepts 4 same pairs and 2 different ones (0.7055, 1.2055): 7/10.
    # Test fold 1, thresholds chosen on fold 0: 8/10 for t in (0.6055, 0.7055] and again in
    # (0.8055, 1.2055]; the first maximum is t = 0.61. On fold 1 it accepts 3 same pairs and no
    # different one: 8/10.
    result = verify_distances(HAND_DIST, HAND_SAME, n_folds=2, far_target=0.25)
    assert result["accuracy"] == pytest.approx((0.7 + 0.8) / 2)
    assert result["accuracy_std"] == pytest.approx(0.05)
    assert result["threshold"] == pytest.approx((1.31 + 0.61) / 2)


def test_hand_made_two_folds_val_far():
    # VAL grid is 0.001 apart. Test fold 0: fold 1's different pairs give FAR 0.2 up to t = 1.505
    # and 0.4 from t = 1.506, so FAR 0.25 sits a quarter of the way: t = 1.50525. On fold 0 it
    # accepts all 5 same pairs (1.5051 only thanks to the interpolation) and 3 of 5 different
    # ones (0.7055, 1.2055, 1.4055).
    # Test fold 1: fold 0's FAR is 0.2 up to t = 1.205, 0.4 from 1.206 -> t = 1.20525; on fold 1
    # it accepts 4 of 5 same pairs and 1 of 5 different (1.0055).
    result = verify_distances(HAND_DIST, HAND_SAME, n_folds=2, far_target=0.25)
    assert result["val"] == pytest.approx((1.0 + 0.8) / 2)
    assert result["val_std"] == pytest.approx(0.1)
    assert result["far"] == pytest.approx((0.6 + 0.2) / 2)


def test_a_pair_at_the_threshold_is_rejected():
    # Same pairs at exactly 0.5, different ones at exactly 1.0 (both on the 0.01 grid). A pair is
    # "same" when dist < t, so t = 0.5 rejects the same pairs and the first perfect t is 0.51.
    dist = np.array([0.5, 0.5, 1.0, 1.0] * 2)
    same = np.array([True, True, False, False] * 2)
    result = verify_distances(dist, same, n_folds=2)
    assert result["threshold"] == pytest.approx(0.51)
    assert result["accuracy"] == 1.0


def test_val_threshold_is_zero_when_training_far_never_reaches_target():
    # With thresholds below every different-pair distance, FAR on the training folds stays 0 < 0.25,
    # so the threshold is 0: nothing is accepted on the test fold.
    result = verify_distances(
        HAND_DIST, HAND_SAME, n_folds=2, far_target=0.25, thresholds=np.arange(0, 0.5, 0.01)
    )
    assert result["val"] == 0.0
    assert result["far"] == 0.0


def test_embeddings_give_the_same_scores_as_their_distances():
    angles = np.arccos(1 - HAND_DIST / 2)  # 2 - 2 cos(angle) = dist
    emb1, emb2 = _unit_pairs_at_angles(angles)
    from_embeddings = verify_pairs(emb1, emb2, HAND_SAME, n_folds=2, far_target=0.25)
    from_distances = verify_distances(HAND_DIST, HAND_SAME, n_folds=2, far_target=0.25)
    assert from_embeddings == pytest.approx(from_distances)
    as_tensors = verify_pairs(
        torch.tensor(emb1), torch.tensor(emb2), torch.tensor(HAND_SAME), n_folds=2, far_target=0.25
    )
    assert as_tensors == pytest.approx(from_distances)


def test_embeddings_are_normalised_before_the_distance():
    angles = np.arccos(1 - HAND_DIST / 2)
    emb1, emb2 = _unit_pairs_at_angles(angles)
    scaled = verify_pairs(3.0 * emb1, 0.5 * emb2, HAND_SAME, n_folds=2, far_target=0.25)
    assert scaled == pytest.approx(verify_pairs(emb1, emb2, HAND_SAME, n_folds=2, far_target=0.25))


def test_perfectly_separable_pairs():
    rng = np.random.default_rng(0)
    same = np.tile([True] * 30 + [False] * 30, 10)  # LFW layout: 10 folds, half same in each
    angles = np.where(same, rng.uniform(0.0, 0.3, same.size), rng.uniform(1.2, 2.0, same.size))
    emb1, emb2 = _unit_pairs_at_angles(angles)
    result = verify_pairs(emb1, emb2, same)
    assert result["accuracy"] == 1.0
    assert result["accuracy_std"] == 0.0
    assert result["val"] == 1.0
    assert result["auc"] == 1.0
    # The chosen thresholds lie in the gap between same (<= 0.09) and different (>= 1.27) distances.
    assert 2 - 2 * math.cos(0.3) < result["threshold"] <= 2 - 2 * math.cos(1.2) + 0.01
    assert result["tar_at_far_1e-4"] is None  # 300 different pairs: FAR 1e-4 is not measurable
    assert json.dumps(result)  # plain python values


def test_random_embeddings_are_at_chance():
    rng = np.random.default_rng(0)
    emb1 = rng.normal(size=(2000, 64))
    emb2 = rng.normal(size=(2000, 64))
    same = np.tile([True] * 100 + [False] * 100, 10)
    result = verify_pairs(emb1, emb2, same)
    assert abs(result["accuracy"] - 0.5) < 0.05
    assert abs(result["auc"] - 0.5) < 0.05
    assert result["val"] < 0.02  # at FAR 1e-3 chance accepts about 1e-3 of the same pairs
    assert result["far"] < 0.01


def _reference_lfw(dist, same, n_folds, far_target):
    """Straightforward per-threshold loops of FaceNet's evaluation, for comparison."""
    n = len(dist)
    acc_grid = [i * 0.01 for i in range(400)]
    val_grid = [i * 0.001 for i in range(4000)]
    sizes = [n // n_folds + (1 if i < n % n_folds else 0) for i in range(n_folds)]
    starts = [sum(sizes[:i]) for i in range(n_folds)]
    accs, vals, fars = [], [], []
    for i in range(n_folds):
        test = np.zeros(n, dtype=bool)
        test[starts[i] : starts[i] + sizes[i]] = True
        d_train, s_train = dist[~test], same[~test]
        best_acc, best_t = -1.0, None
        for t in acc_grid:
            acc = np.mean((d_train < t) == s_train)
            if acc > best_acc:
                best_acc, best_t = acc, t
        accs.append(np.mean((dist[test] < best_t) == same[test]))
        far_curve = [np.sum((d_train < t) & ~s_train) / np.sum(~s_train) for t in val_grid]
        if max(far_curve) < far_target:
            t = 0.0
        else:
            hi = next(j for j, f in enumerate(far_curve) if f >= far_target)
            lo = hi - 1
            t = (
                val_grid[lo]
                + (far_target - far_curve[lo]) / (far_curve[hi] - far_curve[lo]) * 0.001
            )
        d_test, s_test = dist[test], same[test]
        vals.append(np.sum((d_test < t) & s_test) / np.sum(s_test))
        fars.append(np.sum((d_test < t) & ~s_test) / np.sum(~s_test))
    return np.mean(accs), np.std(accs), np.mean(vals), np.mean(fars)


def test_matches_a_loop_reimplementation_on_overlapping_classes():
    rng = np.random.default_rng(3)
    n = 333  # not a multiple of 10: the first folds hold one pair more
    same = rng.random(n) < 0.5
    angles = np.where(same, np.abs(rng.normal(0.0, 0.6, n)), rng.uniform(0.3, 2.5, n))
    dist = 2 - 2 * np.cos(angles)
    acc, acc_std, val, far = _reference_lfw(dist, same, n_folds=10, far_target=0.05)
    result = verify_distances(dist, same, n_folds=10, far_target=0.05)
    assert result["accuracy"] == pytest.approx(acc)
    assert result["accuracy_std"] == pytest.approx(acc_std)
    assert result["val"] == pytest.approx(val)
    assert result["far"] == pytest.approx(far)
    assert 0.6 < result["accuracy"] < 0.95  # the classes overlap: not a trivial case


def test_auc_against_brute_force_pair_count():
    rng = np.random.default_rng(4)
    same = rng.random(120) < 0.4
    dist = np.round(np.where(same, rng.uniform(0, 2, 120), rng.uniform(0.5, 3, 120)), 1)  # ties
    wins = 0.0
    for dp in dist[same]:
        for dn in dist[~same]:
            wins += 1.0 if dp < dn else 0.5 if dp == dn else 0.0
    expected = wins / (same.sum() * (~same).sum())
    result = verify_distances(dist, same, n_folds=10)
    assert result["auc"] == pytest.approx(expected)
    assert 0.5 < expected < 1.0


def test_tar_at_far_by_hand():
    negatives = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    positives = [0.05, 0.15, 0.25, 0.35, 1.5]
    dist = np.array(positives + negatives)
    same = np.array([True] * 5 + [False] * 10)
    # FAR <= 0.2 allows 2 of 10 false accepts: largest threshold 0.3 (dist < 0.3), 3 of 5 same.
    assert tar_at_far(dist, same, 0.2) == pytest.approx(0.6)
    assert tar_at_far(dist, same, 0.29) == pytest.approx(0.6)
    assert tar_at_far(dist, same, 0.0) == pytest.approx(0.2)  # threshold 0.1: only 0.05
    assert tar_at_far(dist, same, 1.0) == 1.0
    tied = np.array(positives + [0.1, 0.1] + negatives[2:])
    # Two different pairs at 0.1: FAR <= 0.1 allows one, so no threshold above 0.1 is allowed.
    assert tar_at_far(tied, same, 0.1) == pytest.approx(0.2)
    # A same pair exactly at the threshold (0.3 for FAR 0.2) is not accepted.
    at_threshold = np.array([0.05, 0.15, 0.25, 0.3, 1.5] + negatives)
    assert tar_at_far(at_threshold, same, 0.2) == pytest.approx(0.6)


def test_tar_at_far_counts_allowed_false_accepts_exactly():
    # 0.29 * 100 is 28.999999999999996 in floating point, yet 29 false accepts are allowed: the
    # threshold is the 30th different-pair distance, 0.295.
    negatives = list(np.arange(100) / 100 + 0.005)
    dist = np.array([0.29, 0.2951] + negatives)
    same = np.array([True, True] + [False] * 100)
    assert tar_at_far(dist, same, 0.29) == pytest.approx(0.5)


def test_tar_at_far_1e4_reported_with_enough_different_pairs():
    rng = np.random.default_rng(5)
    same = np.tile([True] * 500 + [False] * 1500, 10)  # 15000 different pairs
    dist = np.where(same, rng.uniform(0.0, 1.0, same.size), rng.uniform(0.9, 3.0, same.size))
    result = verify_distances(dist, same)
    negatives = np.sort(dist[~same])
    expected = np.mean(dist[same] < negatives[1])  # floor(1e-4 * 15000) = 1 false accept allowed
    assert result["tar_at_far_1e-4"] == pytest.approx(expected)
    assert 0.5 < expected < 1.0


@pytest.mark.parametrize(
    "emb1, emb2, issame, match",
    [
        (np.ones((10, 4)), np.ones((9, 4)), np.ones(10, bool), "shapes differ"),
        (np.ones((10, 4)), np.ones((10, 4)), np.ones(8, bool), "expected 10 labels"),
        (np.ones((5, 4)), np.ones((5, 4)), np.array([1, 0, 1, 0, 1], bool), "cannot be split"),
        (np.ones((20, 4)), np.ones((20, 4)), np.ones(20, bool), "20 same and 0 different"),
        (np.ones((20, 4)), np.ones((20, 4)), np.arange(20) % 3, "0/1"),
        (np.ones(20), np.ones(20), np.arange(20) % 2, r"\(N, D\)"),
    ],
)
def test_verify_pairs_rejects_bad_input(emb1, emb2, issame, match):
    with pytest.raises(ValueError, match=match):
        verify_pairs(emb1, emb2, issame)


def test_verify_pairs_rejects_a_fold_without_both_classes():
    same = np.array([True] * 10 + [False] * 10)  # two folds, each of one class only
    with pytest.raises(ValueError, match=r"fold 0 of 2 \(pairs 0:10\).*10 same and 0 different"):
        verify_distances(np.linspace(0, 2, 20), same, n_folds=2)


# ---------------------------------------------------------------- geolocation


def _law_of_cosines_km(lat1, lon1, lat2, lon2):
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    cos_angle = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return EARTH_RADIUS_KM * math.acos(max(-1.0, min(1.0, cos_angle)))


def test_paris_london():
    paris, london = (48.8566, 2.3522), (51.5074, -0.1278)
    d = great_circle_km(*paris, *london)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64
    assert d.item() == pytest.approx(_law_of_cosines_km(*paris, *london), rel=1e-9)
    assert d.item() == pytest.approx(343.5, abs=0.5)


def test_antipodes_half_circumference():
    expected = math.pi * EARTH_RADIUS_KM
    assert great_circle_km(0.0, 0.0, 0.0, 180.0).item() == pytest.approx(expected, rel=1e-12)
    assert great_circle_km(37.5, -122.0, -37.5, 58.0).item() == pytest.approx(expected, rel=1e-9)
    assert great_circle_km(90.0, 0.0, -90.0, 0.0).item() == pytest.approx(expected, rel=1e-12)


def test_one_degree_of_latitude_and_zero_distance():
    lon = torch.tensor([-170.0, 0.0, 45.0, 120.0])
    d = great_circle_km(torch.zeros(4), lon, torch.ones(4), lon)
    assert torch.allclose(d, torch.full((4,), KM_PER_DEGREE, dtype=d.dtype))
    assert KM_PER_DEGREE == pytest.approx(111.195, abs=1e-3)
    same = great_circle_km(
        torch.tensor([12.3, -89.9]),
        torch.tensor([45.6, 179.9]),
        torch.tensor([12.3, -89.9]),
        torch.tensor([45.6, 179.9]),
    )
    assert torch.equal(same, torch.zeros(2, dtype=torch.float32))


def test_great_circle_symmetric_and_broadcasts():
    rng = np.random.default_rng(6)
    lat1, lat2 = rng.uniform(-90, 90, (2, 50))
    lon1, lon2 = rng.uniform(-180, 180, (2, 50))
    forward = great_circle_km(lat1, lon1, lat2, lon2)
    backward = great_circle_km(lat2, lon2, lat1, lon1)
    assert torch.allclose(forward, backward, rtol=0, atol=1e-9)
    reference = [_law_of_cosines_km(*p) for p in zip(lat1, lon1, lat2, lon2, strict=True)]
    assert torch.allclose(
        forward, torch.tensor(reference, dtype=torch.float64), rtol=1e-6, atol=1e-3
    )
    grid = great_circle_km(
        torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(1, 2), torch.tensor([[1.0, 2.0]])
    )
    assert grid.shape == (3, 2)
    assert grid[0].tolist() == pytest.approx([KM_PER_DEGREE, 2 * KM_PER_DEGREE], rel=1e-6)


def test_great_circle_rejects_bad_latitude():
    with pytest.raises(ValueError, match="lat2"):
        great_circle_km(0.0, 0.0, 91.0, 0.0)
    with pytest.raises(ValueError, match="lon1"):
        great_circle_km(0.0, float("nan"), 0.0, 0.0)


def _four_predictions():
    # Truth at (10, 20); predictions 0 km, 0.1 deg (11.1 km), 1 deg (111.2 km) and 5 deg (556 km)
    # of latitude away.
    true_lat, true_lon = torch.full((4,), 10.0), torch.full((4,), 20.0)
    pred_lat = torch.tensor([10.0, 10.1, 11.0, 5.0])
    return pred_lat, true_lon.clone(), true_lat, true_lon


def test_geolocation_accuracy_on_four_predictions():
    metric = GeolocationAccuracy()
    metric.update(*_four_predictions())
    result = metric.compute()
    assert list(result) == list(GEO_SCALES_KM) + ["median_km"]
    assert result["street"] == 0.25
    assert result["city"] == 0.5
    assert result["region"] == 0.75
    assert result["country"] == 1.0
    assert result["continent"] == 1.0
    # Median of 0, 0.1, 1 and 5 degrees along a meridian: the mean of the middle two. The 0.1 deg
    # offset is taken from the float32 latitude actually given.
    tenth_km = (float(torch.tensor(10.1)) - 10.0) * KM_PER_DEGREE
    assert result["median_km"] == pytest.approx((tenth_km + KM_PER_DEGREE) / 2, rel=1e-9)
    assert json.dumps(result)


def test_geolocation_accuracy_accumulates_and_merges_like_ddp():
    pred_lat, pred_lon, true_lat, true_lon = _four_predictions()
    whole = GeolocationAccuracy()
    whole.update(pred_lat, pred_lon, true_lat, true_lon)
    first, second = GeolocationAccuracy(), GeolocationAccuracy()
    first.update(pred_lat[:1], pred_lon[:1], true_lat[:1], true_lon[:1])
    second.update(pred_lat[1:], pred_lon[1:], true_lat[1:], true_lon[1:])
    first.merge_state(second)  # the states' reductions, as DDP sync applies them
    assert first.compute() == pytest.approx(whole.compute())
    whole.reset()
    with (
        pytest.warns(UserWarning, match="before the ``update``"),
        pytest.raises(ValueError, match="no predictions"),
    ):
        whole.compute()


def test_geolocation_accuracy_rejects_mismatched_inputs():
    metric = GeolocationAccuracy()
    with pytest.raises(ValueError, match="one shape"):
        metric.update(torch.zeros(3), torch.zeros(3), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="scales_km"):
        GeolocationAccuracy(scales_km={"city": -1})


# ---------------------------------------------------------------- classification


# 4 samples, 4 classes. Ranks of the true class: 1st, 2nd, 3rd, 1st.
LOGITS = torch.tensor(
    [
        [3.0, 2.0, 1.0, 0.0],  # true 0: top-1
        [0.0, 2.0, 3.0, 1.0],  # true 1: 2nd, predicted 2
        [3.0, 2.0, 1.0, 0.0],  # true 2: 3rd, predicted 0
        [0.0, 1.0, 2.0, 3.0],  # true 3: top-1
    ]
)
TARGET = torch.tensor([0, 1, 2, 3])


def test_topk_accuracy_by_hand():
    result = topk_accuracy(LOGITS, TARGET, ks=(1, 2, 3, 5))
    assert result == pytest.approx({"top1": 0.5, "top2": 0.75, "top3": 1.0, "top5": 1.0})
    assert all(isinstance(v, float) for v in result.values())


def test_topk_accuracy_rejects_bad_target():
    with pytest.raises(ValueError, match=r"target: class indices must lie in \[0, 3\]"):
        topk_accuracy(LOGITS, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="target: expected shape"):
        topk_accuracy(LOGITS, torch.tensor([0, 1]))


def test_most_confused_pairs_by_hand():
    # Predictions (arg-max): 2 -> 0 twice, 1 -> 2 once, 0 -> 0 once (correct, not a confusion).
    logits = torch.eye(3)[torch.tensor([0, 0, 2, 0])] * 5.0
    target = torch.tensor([2, 2, 1, 0])
    pairs = most_confused_pairs(logits, target, class_names=["cat", "dog", "fox"])
    assert pairs == [
        {"true": "fox", "predicted": "cat", "count": 2},
        {"true": "dog", "predicted": "fox", "count": 1},
    ]
    assert most_confused_pairs(logits, target, k=1) == [{"true": 2, "predicted": 0, "count": 2}]
    with pytest.raises(ValueError, match="class_names"):
        most_confused_pairs(logits, target, class_names=["cat"])


# ---------------------------------------------------------------- multi-label


def test_average_precision_by_hand():
    # Ranked by score: pos, neg, pos, neg -> precision 1/1 and 2/3 at the positives.
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.6]])
    target = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 1]])
    # Attribute b ranked: 0.7 neg, 0.6 pos, 0.2 neg, 0.1 pos -> precisions 1/2 and 2/4.
    result = multilabel_average_precision(scores, target, names=["a", "b"])
    assert result["ap_per_attribute"]["a"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["ap_per_attribute"]["b"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    from_logits = multilabel_average_precision(torch.logit(scores), target, names=["a", "b"])
    assert from_logits["mAP"] == pytest.approx(result["mAP"])
    assert from_logits["ap_per_attribute"] == pytest.approx(result["ap_per_attribute"])


def test_attributes_without_positives_are_skipped_counted_and_warned_about():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.7, 0.5], [0.3, 0.2, 0.5], [0.1, 0.6, 0.5]])
    target = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.warns(RuntimeWarning, match=r"over 1 of 3 attributes: 2 have no positive .*\(bald, hat\)"):
        result = multilabel_average_precision(scores, target, names=["smiling", "bald", "hat"])
    assert result["ap_per_attribute"] == pytest.approx({"smiling": (1 + 2 / 3) / 2, "bald": None, "hat": None})
    assert result["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["attributes_averaged"] == 1 and result["attributes_without_positives"] == ["bald", "hat"]
    assert result["chance_mAP"] == pytest.approx(0.5)  # smiling: 2 positives in 4
    json.dumps(result, allow_nan=False)
    with pytest.warns(RuntimeWarning, match="over 0 of 3 attributes"):
        none = multilabel_average_precision(scores, torch.zeros(4, 3, dtype=torch.long))
    assert none == {"mAP": None, "chance_mAP": None, "attributes_averaged": 0, "attributes_without_positives": ["0", "1", "2"],
                    "ap_per_attribute": {"0": None, "1": None, "2": None}}


def test_a_mean_over_every_attribute_says_so_and_does_not_warn():
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.6]])
    target = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = multilabel_average_precision(scores, target)
    assert result["attributes_averaged"] == 2 and result["attributes_without_positives"] == []
    assert result["chance_mAP"] == pytest.approx(0.5)


def test_chance_map_is_what_random_scores_average():
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(400, 3, generator=generator) < torch.tensor([0.1, 0.3, 0.6])).long()
    chance = multilabel_average_precision(torch.rand(400, 3), target)["chance_mAP"]
    assert chance == pytest.approx(target.float().mean(0).mean().item())
    random_maps = [multilabel_average_precision(torch.rand(400, 3, generator=generator), target)["mAP"]
                   for _ in range(20)]
    assert sum(random_maps) / len(random_maps) == pytest.approx(chance, abs=0.03)


def test_multilabel_rejects_bad_input():
    with pytest.raises(ValueError, match="target: expected shape"):
        multilabel_average_precision(torch.rand(4, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="0/1"):
        multilabel_average_precision(torch.rand(4, 3), torch.full((4, 3), 2))
    with pytest.raises(ValueError, match="names"):
        multilabel_average_precision(torch.rand(4, 3), torch.ones(4, 3), names=["a"])
