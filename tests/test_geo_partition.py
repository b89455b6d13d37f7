"""PlaNet's adaptive S2 partition: checked against a bottom-up reference built from s2sphere's own parents."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import s2sphere

from distill.data.geo_cells import S2Partition, leaf_cell_ids


def _leaves(latlon):
    return [s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)) for a, b in latlon]


def _reference(latlon, t1, t2, max_level=30):
    """Each photo's cell: its first ancestor (from the face down) holding at most t1 photos; then the kept cells.

    The reverse of the top-down split, by counting ancestors level by level with s2sphere's ``parent``.
    """
    leaves = _leaves(latlon)
    cell_of = [None] * len(leaves)
    open_ = list(range(len(leaves)))
    for level in range(max_level + 1):
        ancestors = {i: leaves[i].parent(level).id() for i in open_}
        counts = Counter(ancestors.values())
        still = []
        for i in open_:
            if counts[ancestors[i]] <= t1 or level == max_level:
                cell_of[i] = ancestors[i]
            else:
                still.append(i)
        open_ = still
        if not open_:
            break
    held = Counter(cell_of)
    kept = {cell: n for cell, n in held.items() if n >= t2}
    return cell_of, kept


def _gaussian_cluster(rng, lat, lon, km, n):
    return np.stack([lat + rng.normal(0, km / 111.0, n), lon + rng.normal(0, km / 111.0, n)], axis=1)


@pytest.fixture(scope="module")
def paper_points():
    """~26k photos: two big cities, a small island town, and a sparse sprinkle over the globe."""
    rng = np.random.default_rng(7)
    uniform = np.stack([np.degrees(np.arcsin(rng.uniform(-1, 1, 240))), rng.uniform(-180, 180, 240)], axis=1)
    return np.concatenate([
        _gaussian_cluster(rng, 48.86, 2.35, 60, 15000),     # Paris: forces splits well below the face
        _gaussian_cluster(rng, 35.68, 139.69, 40, 10500),   # Tokyo: its face holds more than 10000
        _gaussian_cluster(rng, 21.31, -157.86, 5, 30),      # Honolulu: fewer than t2 = 50, dropped
        uniform,
    ])


def test_paper_thresholds_give_the_expected_partition(paper_points):
    t1, t2 = 10000, 50
    partition = S2Partition.build(paper_points[:, 0], paper_points[:, 1], t1=t1, t2=t2)
    reference_cell, reference_kept = _reference(paper_points, t1, t2)
    ids = [s2sphere.CellId.from_token(token).id() for token in partition.tokens]
    assert dict(zip(ids, partition.counts.tolist())) == reference_kept
    # every kept cell within bounds, and split no further than needed: its parent held more than t1
    assert ((partition.counts >= t2) & (partition.counts <= t1)).all()
    by_id = Counter(reference_cell)
    for token in partition.tokens:
        cell = s2sphere.CellId.from_token(token)
        if cell.level() > 0:
            parent = cell.parent()
            assert sum(n for c, n in by_id.items() if parent.contains(s2sphere.CellId(c))) > t1
    # disjoint cells
    cells = [s2sphere.CellId.from_token(token) for token in partition.tokens]
    for i, a in enumerate(cells):
        for b in cells[i + 1:]:
            assert not a.intersects(b), (a.to_token(), b.to_token())
    # each photo in exactly one kept cell, or in a dropped one
    index = partition.cell_of(paper_points[:, 0], paper_points[:, 1])
    leaves = _leaves(paper_points)
    for i in range(0, len(paper_points), 37):
        containing = [k for k, cell in enumerate(cells) if cell.contains(leaves[i])]
        assert containing == ([index[i]] if index[i] >= 0 else [])
        assert (reference_cell[i] in reference_kept) == (index[i] >= 0)
    assert np.bincount(index[index >= 0], minlength=len(partition)).tolist() == partition.counts.tolist()
    assert partition.counts.sum() + partition.dropped_photos == len(paper_points)
    # the shape of this point set: the cities get cells well below the face level, Honolulu's town is dropped
    paris, tokyo = partition.cell_of([48.86, 35.68], [2.35, 139.69])
    assert partition.levels[paris] >= 5 and partition.levels[tokyo] >= 2
    assert (index[25500:25530] == -1).all() and partition.dropped_photos >= 30
    assert len(partition) == len(reference_kept) > 6


def test_small_case_by_hand():
    # Three photos metres apart in Paris and one in Tokyo, t1 = 2: Paris's face must be split down to the level
    # where the three part; Tokyo's face keeps its single photo.
    points = np.array([[48.8566, 2.3522], [48.8566, 2.3523], [48.8600, 2.3600], [35.68, 139.69]])
    partition = S2Partition.build(points[:, 0], points[:, 1], t1=2, t2=1)
    _, kept = _reference(points, 2, 1)
    assert sorted(partition.counts.tolist()) == [1, 1, 2]
    assert {s2sphere.CellId.from_token(t).id(): int(c) for t, c in zip(partition.tokens, partition.counts)} == kept
    tokyo = partition.cell_of([35.68], [139.69])[0]
    assert partition.levels[tokyo] == 0 and partition.tokens[tokyo] == _leaves(points[3:])[0].parent(0).to_token()
    # the two photos 7 m apart share the cell just below the level where the third one parts from them
    pair, single = partition.cell_of(points[:3, 0], points[:3, 1])[[0, 2]]
    assert partition.levels[pair] == partition.levels[single]
    leaf_pair, leaf_single = _leaves(points[[0, 2]])
    level = int(partition.levels[pair])
    assert leaf_pair.parent(level - 1) == leaf_single.parent(level - 1)
    assert leaf_pair.parent(level) != leaf_single.parent(level)
    assert partition.dropped_photos == 0


def test_centres_are_the_cells_centres_and_lie_inside():
    rng = np.random.default_rng(1)
    points = _gaussian_cluster(rng, -33.9, 18.4, 300, 400)
    partition = S2Partition.build(points[:, 0], points[:, 1], t1=30, t2=5)
    assert partition.centres.shape == (len(partition), 2)
    assert partition.cell_of(partition.centres[:, 0], partition.centres[:, 1]).tolist() == list(range(len(partition)))
    for token, (lat, lon) in zip(partition.tokens, partition.centres):
        centre = s2sphere.CellId.from_token(token).to_lat_lng()
        assert (lat, lon) == pytest.approx((centre.lat().degrees, centre.lng().degrees), abs=1e-12)


def test_max_level_stops_splitting_one_spot():
    points = np.tile([[10.0, 20.0]], (300, 1))
    partition = S2Partition.build(points[:, 0], points[:, 1], t1=10, t2=5, max_level=6)
    assert partition.tokens == [_leaves(points[:1])[0].parent(6).to_token()]
    assert partition.counts.tolist() == [300] and partition.levels.tolist() == [6]


def test_points_at_the_dateline_and_poles_find_their_cells():
    points = np.array([[0.0, 180.0], [0.0, -180.0], [10.0, 179.999], [-10.0, -179.999], [89.99, 45.0], [-90.0, 0.0]])
    fine = S2Partition.build(points[:, 0], points[:, 1], t1=1, t2=1, max_level=30)
    index = fine.cell_of(points[:, 0], points[:, 1])
    assert (index >= 0).all() and len(set(index[2:].tolist())) == 4
    # coarse: the dateline runs down the middle of face 3, so +-180 and +-179.999 share its cell; the poles have theirs
    coarse = S2Partition.build(points[:, 0], points[:, 1], t1=10, t2=1)
    index = coarse.cell_of(points[:, 0], points[:, 1])
    assert len(coarse) == 3 and coarse.levels.tolist() == [0, 0, 0]
    assert index[0] == index[1] == index[2] == index[3] and len({index[0], index[4], index[5]}) == 3
    assert coarse.tokens[index[0]] == s2sphere.CellId.from_face_pos_level(3, 0, 0).to_token()


def test_round_trip_through_plain_json(tmp_path):
    rng = np.random.default_rng(3)
    points = np.concatenate([_gaussian_cluster(rng, 40.7, -74.0, 100, 300),
                             _gaussian_cluster(rng, -23.5, -46.6, 80, 200)])
    partition = S2Partition.build(points[:, 0], points[:, 1], t1=40, t2=4)
    data = json.loads(json.dumps(partition.to_dict()))
    again = S2Partition.from_dict(data)
    assert again.tokens == partition.tokens and again.counts.tolist() == partition.counts.tolist()
    assert np.allclose(again.centres, partition.centres, atol=1e-6)
    path = partition.save(tmp_path / "partition.json")
    loaded = S2Partition.load(path)
    assert (loaded.t1, loaded.t2, loaded.dropped_photos) == (40, 4, partition.dropped_photos)
    probe = rng.uniform([-60, -180], [60, 180], (200, 2))
    assert (loaded.cell_of(probe[:, 0], probe[:, 1]) == partition.cell_of(probe[:, 0], probe[:, 1])).all()
    assert leaf_cell_ids([40.7], [-74.0]).dtype == np.uint64


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="t2"):
        S2Partition.build([0.0], [0.0], t1=10, t2=11)
    with pytest.raises(ValueError, match="t1"):
        S2Partition.build([0.0], [0.0], t1=0, t2=1)
    with pytest.raises(ValueError, match="latitudes"):
        S2Partition.build([91.0], [0.0], t1=10, t2=1)
    with pytest.raises(ValueError, match="longitudes"):
        S2Partition.build([0.0], [200.0], t1=10, t2=1)
    with pytest.raises(ValueError, match="no cell holds t2=5"):
        S2Partition.build([0.0, 50.0], [0.0, 100.0], t1=10, t2=5)
    with pytest.raises(ValueError, match=r"tokens\[0\]='zz'"):
        S2Partition(["zz"], [1])
    with pytest.raises(ValueError, match="overlap"):
        face = s2sphere.CellId.from_face_pos_level(0, 0, 0)
        S2Partition([face.to_token(), face.child_begin(1).to_token()], [5, 5])
    with pytest.raises(FileNotFoundError, match="partition file not found"):
        S2Partition.load("/nonexistent/partition.json")
    with pytest.raises(ValueError, match="not an S2 partition"):
        S2Partition.from_dict({"tokens": []})
