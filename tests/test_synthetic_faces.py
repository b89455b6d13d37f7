import dataclasses

import numpy as np
import pytest
from PIL import Image

from distill.data.synthetic import faces as sf
from distill.data.synthetic.faces import render as sf_render

# CelebA's list_attr_celeba.txt header, in its order.
CELEBA_HEADER = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
)
A = {name: i for i, name in enumerate(CELEBA_HEADER.split())}


def test_attribute_names_follow_celeba_order():
    assert sf.ATTRIBUTE_NAMES == tuple(CELEBA_HEADER.split())
    assert set(sf.ATTRIBUTE_BASE_RATES) == set(sf.ATTRIBUTE_NAMES)
    assert set(sf.IDENTITY_ATTRIBUTES) | set(sf.IMAGE_ATTRIBUTES) == set(sf.ATTRIBUTE_NAMES)
    assert not set(sf.IDENTITY_ATTRIBUTES) & set(sf.IMAGE_ATTRIBUTES)


def test_same_seed_gives_identical_bytes_and_other_seed_differs():
    ids = sf.sample_identities(4, seed=3)
    index = np.array([0, 1, 2, 3, 0, 1])
    a_img, a_attr = sf.render_faces(ids, index, seed=3, size=48)
    b_img, b_attr = sf.render_faces(sf.sample_identities(4, seed=3), index, seed=3, size=48)
    assert a_img.dtype == np.uint8 and a_img.shape == (6, 48, 48, 3)
    assert a_attr.dtype == np.int8 and a_attr.shape == (6, 40)
    assert a_img.tobytes() == b_img.tobytes()
    assert np.array_equal(a_attr, b_attr)
    c_img, _ = sf.render_faces(ids, index, seed=4, size=48)
    assert not np.array_equal(a_img, c_img)


def test_rendering_in_processes_gives_the_same_bytes(monkeypatch):
    monkeypatch.setattr(sf_render, "_MIN_IMAGES_PER_WORKER", 2)
    ids = sf.sample_identities(3, seed=1)
    index = np.arange(7) % 3
    forced = sf.sample_attributes(ids, index, seed=4)
    forced[:, 0] = 1 - forced[:, 0]
    for attributes in (None, forced):
        serial, serial_attr = sf.render_faces(ids, index, seed=4, size=32, attributes=attributes)
        parallel, parallel_attr = sf.render_faces(ids, index, seed=4, size=32, attributes=attributes, workers=2)
        assert parallel.shape == (7, 32, 32, 3)
        assert parallel.tobytes() == serial.tobytes()
        assert np.array_equal(parallel_attr, serial_attr)
    with pytest.raises(ValueError, match="workers"):
        sf.render_faces(ids, index, seed=4, size=32, workers=0)


def test_render_workers_follow_the_work():
    assert sf_render._render_workers(1, 10_000) == 1
    assert sf_render._render_workers(8, 3 * sf_render._MIN_IMAGES_PER_WORKER) == 3
    assert sf_render._render_workers(4, 10) == 1
    assert sf_render._render_workers(None, 10**6) >= 1


def test_chunked_rendering_equals_whole_and_any_subset():
    ids = sf.sample_identities(5, seed=0)
    index = np.arange(10) % 5
    whole, whole_attr = sf.render_faces(ids, index, seed=9, size=40)
    first, _ = sf.render_faces(ids, index[:4], seed=9, size=40, image_ids=np.arange(4))
    rest, rest_attr = sf.render_faces(ids, index[4:], seed=9, size=40, image_ids=np.arange(4, 10))
    assert np.concatenate([first, rest]).tobytes() == whole.tobytes()
    assert np.array_equal(rest_attr, whole_attr[4:])
    pick = np.array([7, 2])
    subset, _ = sf.render_faces(ids, index[pick], seed=9, size=40, image_ids=pick)
    assert subset.tobytes() == whole[pick].tobytes()


def test_identities_depend_only_on_seed_and_position():
    small, large = sf.sample_identities(3, seed=5), sf.sample_identities(6, seed=5)
    for p, q in zip(small, large[:3]):
        for f in dataclasses.fields(sf.IdentityParams):
            assert np.array_equal(getattr(p, f.name), getattr(q, f.name)), f.name
    other = sf.sample_identities(3, seed=6)
    assert any(p.face_width != q.face_width for p, q in zip(small, other))


def test_sample_attributes_matches_render():
    ids = sf.sample_identities(6, seed=1)
    index = np.array([0, 1, 2, 3, 4, 5, 5, 4])
    _, rendered = sf.render_faces(ids, index, seed=2, size=32)
    assert np.array_equal(sf.sample_attributes(ids, index, seed=2), rendered)


def test_base_rates_are_celeba_like():
    ids = sf.sample_identities(3000, seed=0)
    attrs = sf.sample_attributes(ids, np.repeat(np.arange(3000), 2), seed=0)
    rates = attrs.mean(axis=0)
    for name, target in sf.ATTRIBUTE_BASE_RATES.items():
        assert abs(rates[A[name]] - target) <= 0.015 + 0.12 * target, (name, rates[A[name]], target)
    # rare attributes stay rare
    for name in ("Bald", "Gray_Hair", "Wearing_Hat", "Blurry"):
        assert rates[A[name]] < 0.07, name


def test_attribute_correlations():
    ids = sf.sample_identities(1500, seed=1)
    index = np.repeat(np.arange(1500), 3)
    a = sf.sample_attributes(ids, index, seed=1).astype(bool)
    male = a[:, A["Male"]]
    for name in ("Goatee", "Mustache", "Sideburns", "5_o_Clock_Shadow", "Bald"):
        assert a[:, A[name]].any() and not (a[:, A[name]] & ~male).any(), name
    assert not (a[:, A["Goatee"]] & a[:, A["No_Beard"]]).any()
    assert (~a[~male, A["No_Beard"]]).sum() == 0
    assert not (a[:, A["Gray_Hair"]] & a[:, A["Young"]]).any()
    makeup, lipstick = a[:, A["Heavy_Makeup"]], a[:, A["Wearing_Lipstick"]]
    assert lipstick[makeup].mean() > 0.9 > lipstick[~makeup].mean()
    smiling, mouth = a[:, A["Smiling"]], a[:, A["Mouth_Slightly_Open"]]
    assert mouth[smiling].mean() > mouth[~smiling].mean() + 0.2
    # identity-level attributes are constant per identity, per-image ones vary within some identities
    per_id = a.reshape(1500, 3, 40)
    constant = (per_id == per_id[:, :1]).all(axis=1).all(axis=0)
    for name in sf.IDENTITY_ATTRIBUTES:
        assert constant[A[name]], name
    for name in ("Smiling", "Mouth_Slightly_Open", "Wearing_Earrings"):
        assert not constant[A[name]], name


def _pooled(images: np.ndarray, cells: int = 12) -> np.ndarray:
    n, s = images.shape[:2]
    k = s // cells
    x = images[:, : k * cells, : k * cells].astype(np.float64) / 255.0
    return x.reshape(n, cells, k, cells, k, 3).mean(axis=(2, 4)).reshape(n, -1)


def test_identity_is_learnable_but_not_trivial():
    faces = sf.make_face_set(16, 8, seed=5, size=48)
    x, y = _pooled(faces.images), faces.labels
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    assert dist[same].mean() < 0.92 * dist[y[:, None] != y[None]].mean()
    # nearest class centre from 5 renderings, tested on the other 3: far above chance (1/16), far from perfect
    train = np.tile(np.arange(8) < 5, 16)
    centres = np.stack([x[train & (y == k)].mean(0) for k in range(16)])
    pred = ((x[~train][:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    accuracy = (pred == y[~train]).mean()
    assert 0.15 < accuracy < 0.9


@pytest.mark.parametrize("name", sf.ATTRIBUTE_NAMES)
def test_each_attribute_changes_the_rendering(name):
    ids = sf.sample_identities(4, seed=11)
    index = np.arange(4)
    base_images, base = sf.render_faces(ids, index, seed=11, size=48)
    flipped = base.copy()
    flipped[:, A[name]] = 1 - flipped[:, A[name]]
    images, attrs = sf.render_faces(ids, index, seed=11, size=48, attributes=flipped)
    assert np.array_equal(attrs, flipped)
    changed = (np.abs(images.astype(int) - base_images.astype(int)).max(-1) > 12).sum(axis=(1, 2))
    assert (changed >= 2).sum() >= 3, changed
    # nothing else moved: flipping back restores the original bytes
    again, _ = sf.render_faces(ids, index, seed=11, size=48, attributes=base)
    assert again.tobytes() == base_images.tobytes()


def test_make_face_set_layout():
    faces = sf.make_face_set(3, 4, seed=0, size=32)
    assert len(faces) == 12
    assert faces.images.shape == (12, 32, 32, 3)
    assert np.array_equal(faces.labels, np.repeat(np.arange(3), 4))
    assert faces.attributes.shape == (12, 40)
    # identity-level attributes agree with the identity's own record
    male = [ids.traits()["Male"] for ids in faces.identities]
    assert np.array_equal(faces.attributes[:, A["Male"]], np.repeat(male, 4))


def test_bad_arguments_raise_clear_errors():
    ids = sf.sample_identities(2, seed=0)
    with pytest.raises(ValueError, match="identity_index"):
        sf.render_faces(ids, np.array([0, 2]), seed=0)
    with pytest.raises(ValueError, match="identity_index"):
        sf.render_faces(ids, np.array([0.0, 1.0]), seed=0)
    with pytest.raises(ValueError, match=r"attributes must have shape \(2, 40\)"):
        sf.render_faces(ids, np.array([0, 1]), seed=0, attributes=np.zeros((2, 39)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        sf.render_faces(ids, np.array([0, 1]), seed=0, attributes=np.full((2, 40), 2))
    with pytest.raises(ValueError, match="image_ids"):
        sf.render_faces(ids, np.array([0, 1]), seed=0, image_ids=np.array([0]))
    with pytest.raises(ValueError, match="size"):
        sf.render_faces(ids, np.array([0]), seed=0, size=8)
    with pytest.raises(ValueError, match="num_identities"):
        sf.sample_identities(0, seed=0)


def test_command_line_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    sf.main(["--out", str(out), "--identities", "2", "--per-identity", "3", "--size", "32"])
    grid = np.asarray(Image.open(out))
    # 3 columns and 2 rows of 32 px cells separated by 2 px padding
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3)
    faces = sf.make_face_set(2, 3, seed=0, size=32)
    assert np.array_equal(grid[36:68, 70:102], faces.images[5])


def test_sixty_four_identities_render_distinct_faces():
    faces = sf.make_face_set(64, 1, seed=2, size=96)
    assert faces.images.shape == (64, 96, 96, 3)
    assert np.array_equal(faces.labels, np.arange(64))
    assert len({image.tobytes() for image in faces.images}) == 64
    assert 40 < faces.images.mean() < 215  # neither blank nor saturated


def test_rendering_is_resolution_independent():
    ids = sf.sample_identities(6, seed=0)
    index = np.arange(6)
    small, _ = sf.render_faces(ids, index, seed=0, size=48)
    large, _ = sf.render_faces(ids, index, seed=0, size=96)
    pooled = large.reshape(6, 48, 2, 48, 2, 3).mean(axis=(2, 4))
    same = np.abs(small - pooled).mean(axis=(1, 2, 3))
    other = np.abs(small - np.roll(pooled, 1, axis=0)).mean(axis=(1, 2, 3))
    assert same.max() < 15 and (same < other / 3).all()
