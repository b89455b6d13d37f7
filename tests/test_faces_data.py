"""Face data modules: synthetic identities, identity folders + LFW on disk, MTCNN alignment."""

import numpy as np
import pytest
from PIL import Image

from distill.data.align import FaceAligner, centre_crop, square_crop
from distill.data.modules import face_folder as face_folder_module
from distill.data.modules.face_folder import FaceFolderDataModule
from distill.data.modules.faces import SyntheticFacesDataModule
from distill.data.readers.image_files import CorruptImageError, load_image
from distill.data.readers.pairs import write_lfw_pairs
from distill.data.synthetic import faces as synthetic_faces

TINY = {"image_size": 32, "num_identities": 4, "images_per_identity": 3, "train_images_per_identity": 2,
        "num_test_identities": 6, "test_images_per_identity": 3, "num_folds": 2, "pairs_per_fold": 3,
        "use_cache": False}


@pytest.fixture(scope="module")
def tiny():
    dm = SyntheticFacesDataModule(**TINY)
    dm.setup()
    return dm


def _people_key(person):
    return (person.face_width, person.face_height, tuple(person.skin), person.eye_spacing)


# ----------------------------------------------------------------------------------- synthetic faces
def test_split_sizes_labels_and_shapes(tiny):
    assert tiny.num_classes == 4
    teacher, train, test = tiny.split("teacher_train"), tiny.split("train"), tiny.split("test")
    assert teacher.images.shape == (12, 32, 32, 3) and teacher.images.dtype == np.uint8
    assert train.images.shape == (8, 32, 32, 3)
    assert test.images.shape == (18, 32, 32, 3)
    np.testing.assert_array_equal(teacher.targets, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    np.testing.assert_array_equal(train.targets, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(test.targets, np.repeat(np.arange(6), 3))
    assert tiny.summary() == {"name": "SyntheticFacesDataModule",
                              "splits": {"teacher_train": 12, "train": 8, "test": 18},
                              "identities": {"teacher_train": 4, "train": 4, "test": 6}, "pairs": 12}


def test_train_renders_the_teacher_people_anew_and_test_people_are_disjoint(tiny):
    teacher_people = [_people_key(p) for p in tiny.identity_params("teacher_train")]
    assert [_people_key(p) for p in tiny.identity_params("train")] == teacher_people
    test_people = [_people_key(p) for p in tiny.identity_params("test")]
    assert len(set(test_people)) == 6 and not set(test_people) & set(teacher_people)
    # same people, other renderings: no training image is repeated in the student's split
    teacher_images = {image.tobytes() for image in tiny.split("teacher_train").images}
    assert not teacher_images & {image.tobytes() for image in tiny.split("train").images}
    # the rendering of test image n is exactly the generator's for that test person
    expected, _ = synthetic_faces.render_faces(tiny.identity_params("test"), np.repeat(np.arange(6), 3),
                                               tiny.image_seed("test"), 32)
    np.testing.assert_array_equal(tiny.split("test").images, expected)


def test_separate_train_people_are_unlabelled_and_new():
    dm = SyntheticFacesDataModule(**{**TINY, "num_train_identities": 3})
    train = dm.split("train")
    assert len(train) == 6 and train.targets is None
    train_people = {_people_key(p) for p in dm.identity_params("train")}
    others = {_people_key(p) for split in ("teacher_train", "test") for p in dm.identity_params(split)}
    assert len(train_people) == 3 and not train_people & others
    assert dm.summary()["identities"] == {"teacher_train": 4, "train": 3, "test": 6}


def test_test_pairs_follow_the_lfw_fold_layout(tiny):
    pairs = tiny.split("test").extras["pairs"]
    labels = tiny.split("test").targets
    assert pairs.dtype == np.int64 and pairs.shape == (12, 3)
    # fold after fold: 3 same pairs, then 3 different pairs
    np.testing.assert_array_equal(pairs[:, 2], [1, 1, 1, 0, 0, 0] * 2)
    np.testing.assert_array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], pairs[:, 2].astype(bool))
    assert (pairs[:, 0] != pairs[:, 1]).all()
    fold_people = [set(labels[pairs[f * 6:(f + 1) * 6, :2].ravel()]) for f in range(2)]
    assert not fold_people[0] & fold_people[1]


def test_default_pairs_count_is_lfw():
    dm = SyntheticFacesDataModule(use_cache=False)
    assert (dm.num_folds, dm.pairs_per_fold) == (10, 300)  # 3000 same + 3000 different


def test_deterministic_and_seeded(tiny):
    again = SyntheticFacesDataModule(**TINY)
    for name in ("teacher_train", "train", "test"):
        np.testing.assert_array_equal(again.split(name).images, tiny.split(name).images)
    np.testing.assert_array_equal(again.split("test").extras["pairs"], tiny.split("test").extras["pairs"])
    other = SyntheticFacesDataModule(**{**TINY, "seed": 1})
    assert not np.array_equal(other.split("teacher_train").images, tiny.split("teacher_train").images)


@pytest.mark.parametrize("change", [
    {"image_size": 40}, {"num_identities": 5}, {"images_per_identity": 4}, {"train_images_per_identity": 3},
    {"num_train_identities": 2}, {"num_test_identities": 7}, {"test_images_per_identity": 4}, {"num_folds": 3},
    {"pairs_per_fold": 2}, {"seed": 3},
])
def test_fingerprint_changes_with_every_generator_setting(change):
    base = SyntheticFacesDataModule(**TINY).fingerprint()
    assert SyntheticFacesDataModule(**{**TINY, **change}).fingerprint() != base


def test_fingerprint_ignores_loader_settings():
    base = SyntheticFacesDataModule(**TINY).fingerprint()
    assert SyntheticFacesDataModule(**TINY, batch_size=7, resolution=24, num_views=3).fingerprint() == base


def test_rendered_arrays_are_kept_on_disk(tmp_path, monkeypatch):
    first = SyntheticFacesDataModule(**{**TINY, "use_cache": True, "cache_dir": str(tmp_path)})
    first.setup()
    stored = list((tmp_path / "faces").glob("synthetic-*.npz"))
    assert stored == [first._cache_file()]  # keyed by the generator and its settings, not the augmentation

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(synthetic_faces, "render_faces", no_rendering)
    second = SyntheticFacesDataModule(**{**TINY, "use_cache": True, "cache_dir": str(tmp_path)})
    for name in ("teacher_train", "train", "test"):
        np.testing.assert_array_equal(second.split(name).images, first.split(name).images)
    np.testing.assert_array_equal(second.split("test").extras["pairs"], first.split("test").extras["pairs"])


def test_damaged_cache_is_rebuilt(tmp_path):
    dm = SyntheticFacesDataModule(**{**TINY, "use_cache": True, "cache_dir": str(tmp_path)})
    path = dm._cache_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        dm.setup()
    assert len(dm.split("test")) == 18
    with np.load(path) as stored:  # replaced by a good file
        assert stored["test_images"].shape == (18, 32, 32, 3)


@pytest.mark.parametrize("key, value", [("num_identities", 1), ("images_per_identity", 0), ("num_folds", "ten"),
                                        ("test_images_per_identity", 1), ("image_size", 8), ("pairs_per_fold", 0)])
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"data.{key}"):
        SyntheticFacesDataModule(**{**TINY, key: value})


# ------------------------------------------------------------------------------ folders of real images
def _jpeg(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG", quality=95)


@pytest.fixture(scope="module")
def photos():
    """Distinct synthetic faces to write as photographs: 3 people x 3 for training, 4 people x 3 for LFW."""
    people = synthetic_faces.sample_identities(7, seed=5)
    images, _ = synthetic_faces.render_faces(people, np.repeat(np.arange(7), 3), seed=5, size=48)
    return images


LFW_NAMES = ("Ann_Lee", "Bo_Chan", "Cy_Dow", "Di_Eve")


@pytest.fixture
def face_tree(tmp_path, photos):
    """<tmp>/train/<person>/<k>.jpg and <tmp>/lfw/<name>/<name>_000n.jpg with a two-fold pairs.txt beside lfw/."""
    for person in range(3):
        for k in range(3):
            _jpeg(tmp_path / "train" / f"id{person}" / f"{k}.jpg", photos[person * 3 + k])
    for person, name in enumerate(LFW_NAMES):
        for k in range(3):
            _jpeg(tmp_path / "lfw" / name / f"{name}_{k + 1:04d}.jpg", photos[9 + person * 3 + k])
    folds = [
        [(("Ann_Lee", 1), ("Ann_Lee", 2), True), (("Ann_Lee", 1), ("Bo_Chan", 3), False)],
        [(("Cy_Dow", 2), ("Cy_Dow", 3), True), (("Cy_Dow", 1), ("Di_Eve", 1), False)],
    ]
    write_lfw_pairs(tmp_path / "pairs.txt", folds)
    return tmp_path


def _folder_dm(tree, **kwargs):
    settings = {"root": tree / "train", "lfw_root": tree / "lfw", "image_size": 40, "num_folds": 2,
                "use_cache": False}
    return FaceFolderDataModule(**{**settings, **kwargs})


def _expected(path, size=40, fraction=1.0):
    return centre_crop(load_image(path), size, fraction)


def test_face_folder_splits_and_lfw_pairs(face_tree):
    dm = _folder_dm(face_tree)
    assert dm.num_classes == 3
    teacher, train, test = dm.split("teacher_train"), dm.split("train"), dm.split("test")
    np.testing.assert_array_equal(teacher.targets, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(teacher.images[4], _expected(face_tree / "train" / "id1" / "1.jpg"))
    assert train.images is teacher.images  # without train_root the student distils on the teacher's images
    # the 6 distinct LFW images named by the pairs, sorted by (name, number)
    order = [("Ann_Lee", 1), ("Ann_Lee", 2), ("Bo_Chan", 3), ("Cy_Dow", 1), ("Cy_Dow", 2), ("Cy_Dow", 3),
             ("Di_Eve", 1)]
    assert test.images.shape == (7, 40, 40, 3)
    for i, (name, n) in enumerate(order):
        np.testing.assert_array_equal(test.images[i], _expected(face_tree / "lfw" / name / f"{name}_{n:04d}.jpg"))
    np.testing.assert_array_equal(test.targets, [0, 0, 1, 2, 2, 2, 3])
    np.testing.assert_array_equal(test.extras["pairs"], [[0, 1, 1], [0, 2, 0], [4, 5, 1], [3, 6, 0]])
    summary = dm.summary()
    assert summary["splits"] == {"teacher_train": 9, "train": 9, "test": 7}
    assert summary["identities"] == {"teacher_train": 3, "train": 3, "test": 4}
    assert (summary["corrupt_images"], summary["faces_not_found"]) == (0, 0)
    assert summary["pairs_file"] == str(face_tree / "pairs.txt")


def test_face_folder_limits_crop_and_separate_train_root(face_tree):
    dm = _folder_dm(face_tree, max_identities=2, max_images_per_identity=2, crop_fraction=0.5,
                    train_root=face_tree / "train")
    teacher = dm.split("teacher_train")
    np.testing.assert_array_equal(teacher.targets, [0, 0, 1, 1])
    np.testing.assert_array_equal(teacher.images[3], _expected(face_tree / "train" / "id1" / "1.jpg", fraction=0.5))
    assert dm.split("train").images is not teacher.images and len(dm.split("train")) == 4
    assert dm.fingerprint() != _folder_dm(face_tree).fingerprint()


def test_single_fold_pairs_file_is_dealt_into_folds(face_tree):
    dev = face_tree / "lfw" / "pairsDevTest.txt"
    dev.write_text("2\nAnn_Lee\t1\t2\nCy_Dow\t2\t3\nAnn_Lee\t1\tBo_Chan\t3\nCy_Dow\t1\tDi_Eve\t1\n")
    dm = _folder_dm(face_tree, pairs_file=dev)
    np.testing.assert_array_equal(dm.split("test").extras["pairs"], [[0, 1, 1], [0, 2, 0], [4, 5, 1], [3, 6, 0]])
    assert dm.summary()["by_split"]["test"]["pairs_left_over"] == 0


def test_pairs_file_found_inside_the_lfw_folder(face_tree):
    (face_tree / "pairs.txt").rename(face_tree / "lfw" / "pairs.txt")
    assert _folder_dm(face_tree).summary()["pairs_file"] == str(face_tree / "lfw" / "pairs.txt")


def test_missing_lfw_folder_and_pairs_file_are_named(face_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"LFW folder not found.*{tmp_path / 'nowhere'}"):
        _folder_dm(face_tree, lfw_root=tmp_path / "nowhere").setup()
    (face_tree / "pairs.txt").unlink()
    with pytest.raises(FileNotFoundError, match="pairs.txt"):
        _folder_dm(face_tree).setup()
    with pytest.raises(FileNotFoundError, match="other.txt"):
        _folder_dm(face_tree, pairs_file=face_tree / "other.txt").setup()
    with pytest.raises(ValueError, match="data.lfw_root"):
        FaceFolderDataModule(root=face_tree / "train", lfw_root=None)
    with pytest.raises(ValueError, match="data.root"):
        FaceFolderDataModule(root=None, lfw_root=face_tree / "lfw")


def test_malformed_pairs_line_names_file_and_line(face_tree):
    path = face_tree / "pairs.txt"
    lines = path.read_text().splitlines()
    lines[2] = "Ann_Lee\t1\tBo_Chan"  # a different-person line with 3 fields
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=f"{path}:3: a different-person line needs 4 fields"):
        _folder_dm(face_tree).setup()


def test_image_named_by_pairs_but_missing(face_tree):
    missing = face_tree / "lfw" / "Di_Eve" / "Di_Eve_0001.jpg"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        _folder_dm(face_tree).setup()


def test_corrupt_images_raise_when_strict_and_are_counted_otherwise(face_tree):
    bad_train = face_tree / "train" / "id2" / "1.jpg"
    bad_train.write_bytes(bad_train.read_bytes()[:200])  # truncated
    with pytest.raises(CorruptImageError, match=str(bad_train)):
        _folder_dm(face_tree).setup()
    bad_test = face_tree / "lfw" / "Cy_Dow" / "Cy_Dow_0003.jpg"
    bad_test.write_bytes(b"not a jpeg")
    dm = _folder_dm(face_tree, strict=False)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        dm.setup()
    np.testing.assert_array_equal(dm.split("teacher_train").targets, [0, 0, 0, 1, 1, 1, 2, 2])
    # Cy_Dow_0003 is gone: the same pair (Cy_Dow 2, 3) is dropped, the other pairs point at shifted indices
    assert len(dm.split("test")) == 6
    np.testing.assert_array_equal(dm.split("test").extras["pairs"], [[0, 1, 1], [0, 2, 0], [3, 5, 0]])
    summary = dm.summary()
    assert summary["corrupt_images"] == 2
    assert summary["by_split"]["teacher_train"]["corrupt_paths"] == [str(bad_train)]
    assert summary["by_split"]["test"]["corrupt_paths"] == [str(bad_test)]
    assert summary["by_split"]["test"]["pairs_dropped"] == 1


def test_decoded_arrays_are_kept_on_disk_and_follow_file_changes(face_tree, tmp_path, monkeypatch):
    first = _folder_dm(face_tree, use_cache=True, cache_dir=tmp_path / "cache")
    first.setup()
    assert len(list((tmp_path / "cache" / "faces").glob("folder-*.npz"))) == 2  # teacher_train (= train), test
    same_files = _folder_dm(face_tree, use_cache=True, cache_dir=tmp_path / "cache", train_root=face_tree / "train")
    same_files.setup()
    assert len(list((tmp_path / "cache" / "faces").glob("folder-*.npz"))) == 2  # one file list, one cache

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(face_folder_module, "load_image", no_decoding)
    second = _folder_dm(face_tree, use_cache=True, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(second.split("test").images, first.split("test").images)
    before = first.fingerprint()
    assert second.fingerprint() == before
    monkeypatch.undo()
    changed = face_tree / "train" / "id0" / "0.jpg"
    _jpeg(changed, np.zeros((48, 48, 3), np.uint8))
    third = _folder_dm(face_tree, use_cache=True, cache_dir=tmp_path / "cache")
    assert third.fingerprint() != before
    assert third.split("teacher_train").images[0].max() == 0


# ------------------------------------------------------------------------------------- alignment
def test_square_crop_and_centre_crop_by_hand():
    image = np.arange(40 * 50 * 3, dtype=np.int64).reshape(40, 50, 3).astype(np.uint8)
    # box 20 wide, 10 high, centred at (20, 15): a 20-pixel square from x 10..30, y 5..25, no resampling
    np.testing.assert_array_equal(square_crop(image, (10, 10, 30, 20), 20), image[5:25, 10:30])
    # margin 0.5 of the larger side (10) on each side of a 10x10 box at (0, 0): half of it lies outside, black
    crop = square_crop(image, (0, 0, 10, 10), 20, margin=0.5)
    np.testing.assert_array_equal(crop[5:, 5:], image[:15, :15])
    assert crop[:5].max() == 0 and crop[:, :5].max() == 0
    np.testing.assert_array_equal(centre_crop(image, 40), image[:, 5:45])
    with pytest.raises(ValueError, match="box"):
        square_crop(image, (10, 10, 5, 20), 8)


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(image_size=64, margin=0.1)


def _face_on_canvas(photos, top=40, left=60):
    canvas = np.full((200, 220, 3), 70, np.uint8)
    face = np.asarray(Image.fromarray(photos[1]).resize((96, 96), Image.BILINEAR))
    canvas[top:top + 96, left:left + 96] = face
    return canvas


def test_mtcnn_finds_a_generated_face_offline(aligner, photos):
    canvas = _face_on_canvas(photos)
    box, prob = aligner.detect(canvas)
    assert box is not None and prob > 0.9
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert 60 <= cx <= 156 and 40 <= cy <= 136  # the face's centre lies inside the pasted square
    crop, found = aligner(canvas)
    assert found and crop.shape == (64, 64, 3)
    np.testing.assert_array_equal(crop, square_crop(canvas, box, 64, margin=0.1))


def test_no_face_keeps_the_centre_crop_and_says_so(aligner):
    blank = np.full((120, 160, 3), 128, np.uint8)
    crops, found = aligner.align([blank, blank])
    assert found.tolist() == [False, False]
    np.testing.assert_array_equal(crops[0], centre_crop(blank, 64))


def test_aligned_folder_counts_faces_not_found(face_tree, photos):
    blank = face_tree / "lfw" / "Di_Eve" / "Di_Eve_0001.jpg"
    _jpeg(blank, np.full((48, 48, 3), 128, np.uint8))
    for name in LFW_NAMES:  # every other LFW image: the face MTCNN finds above, on a larger canvas as in LFW
        for path in (face_tree / "lfw" / name).glob("*.jpg"):
            if path != blank:
                _jpeg(path, _face_on_canvas(photos))
    dm = _folder_dm(face_tree, align=True, max_identities=2, max_images_per_identity=1)
    summary = dm.summary()
    test_report = summary["by_split"]["test"]
    assert test_report["faces_not_found"] == 1 and test_report["faces_not_found_paths"] == [str(blank)]
    assert len(dm.split("test")) == 7  # kept, not dropped
    assert summary["faces_not_found"] >= 1
