"""Face-attribute data: synthetic faces with their 40 attributes, CelebA's published layout, unlabeled folders."""

import os

import numpy as np
import pytest
from PIL import Image

from distill.data.modules import celeba
from distill.data.modules.attributes import SyntheticAttributesDataModule
from distill.data.modules.celeba import CelebADataModule
from distill.data.readers.celeba import read_celeba_attributes, read_celeba_partition
from distill.data.readers.image_files import CorruptImageError
from distill.data.synthetic import faces as synthetic_faces

NAMES = synthetic_faces.ATTRIBUTE_NAMES
TINY = dict(image_size=32, num_teacher_train=6, num_train=5, num_test=4, use_cache=False)


# ------------------------------------------------------------------------------------------ synthetic
@pytest.fixture(scope="module")
def tiny():
    dm = SyntheticAttributesDataModule(**TINY)
    dm.setup()
    return dm


def test_synthetic_splits_hide_the_student_labels(tiny):
    assert tiny.num_classes == 40 and tiny.attribute_names == NAMES
    teacher, train, test = tiny.split("teacher_train"), tiny.split("train"), tiny.split("test")
    assert teacher.images.shape == (6, 32, 32, 3) and teacher.targets.shape == (6, 40)
    assert train.images.shape == (5, 32, 32, 3) and train.targets is None
    assert test.images.shape == (4, 32, 32, 3) and test.targets.shape == (4, 40)
    assert tiny.summary()["labelled"] == {"teacher_train": True, "train": False, "test": True}
    batch = next(iter(tiny.train_dataloader()))
    assert "target" not in batch and batch["image"].shape == (5, 3, 96, 96)


def test_synthetic_labels_are_the_attributes_the_faces_were_rendered_with(tiny):
    # Recomputed with the generator's own attribute sampler (no rendering): same people, same per-image draws.
    stream = tiny.split_stream("teacher_train")
    people = synthetic_faces.sample_identities(6, stream)
    expected = synthetic_faces.sample_attributes(people, np.arange(6), stream)
    np.testing.assert_array_equal(tiny.split("teacher_train").targets, expected)
    assert set(np.unique(tiny.split("test").targets)) <= {0, 1}
    # the splits show different people
    flat = {name: {img.tobytes() for img in tiny.split(name).images} for name in ("teacher_train", "train", "test")}
    assert not flat["teacher_train"] & flat["train"] and not flat["train"] & flat["test"]


def test_student_labels_option_serves_the_hidden_labels(tmp_path):
    labelled = SyntheticAttributesDataModule(**{**TINY, "use_cache": True}, student_labels=True, cache_dir=tmp_path)
    hidden = SyntheticAttributesDataModule(**{**TINY, "use_cache": True}, cache_dir=tmp_path)
    assert labelled.fingerprint() == hidden.fingerprint()  # same data: a fitted teacher serves both
    targets = labelled.split("train").targets
    assert targets.shape == (5, 40)
    np.testing.assert_array_equal(labelled.split("train").images, hidden.split("train").images)
    np.testing.assert_array_equal(targets, labelled.render_split("train")[1])
    assert len(list((tmp_path / "faces").glob("attributes-*.npz"))) == 1  # rendered once, then read back


def test_synthetic_rejects_bad_sizes():
    with pytest.raises(ValueError, match="data.num_test must be an integer >= 2"):
        SyntheticAttributesDataModule(**{**TINY, "num_test": 1})
    with pytest.raises(ValueError, match="data.image_size"):
        SyntheticAttributesDataModule(**{**TINY, "image_size": 8})


# ------------------------------------------------------------------------------------------ unlabeled folder
def _write_images(folder, count, size=(20, 24), start=0):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        colour = ((37 * (i + start)) % 256, (91 * (i + start)) % 256, (53 * (i + start)) % 256)
        path = folder / f"{i + 1 + start:06d}.jpg"
        Image.new("RGB", size, colour).save(path, quality=95)
        paths.append((path, colour))
    return paths


def test_unlabeled_root_adds_student_images(tmp_path):
    _write_images(tmp_path / "extra" / "a", 2)
    _write_images(tmp_path / "extra" / "b" / "deeper", 1, start=5)
    (tmp_path / "extra" / "notes.txt").write_text("not an image")
    dm = SyntheticAttributesDataModule(**TINY, unlabeled_root=tmp_path / "extra")
    train = dm.split("train")
    assert train.images.shape == (5 + 3, 32, 32, 3) and train.targets is None
    np.testing.assert_allclose(train.images[5 + 2].reshape(-1, 3).mean(0), [(37 * 5) % 256, (91 * 5) % 256,
                                                                            (53 * 5) % 256], atol=3)
    assert dm.summary()["unlabeled_images"] == 3
    with pytest.raises(ValueError, match="student_labels=true needs a label for every student image"):
        SyntheticAttributesDataModule(**TINY, unlabeled_root=tmp_path / "extra", student_labels=True)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SyntheticAttributesDataModule(**TINY, unlabeled_root=tmp_path / "nowhere").setup()


def test_unreadable_unlabeled_image_is_named_or_skipped(tmp_path):
    _write_images(tmp_path / "extra", 2)
    (tmp_path / "extra" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        SyntheticAttributesDataModule(**TINY, unlabeled_root=tmp_path / "extra").setup()
    lenient = SyntheticAttributesDataModule(**TINY, unlabeled_root=tmp_path / "extra", strict=False)
    assert len(lenient.split("train")) == 5 + 2
    skipped = lenient.summary()["unlabeled_skipped"]
    assert skipped["count"] == 1 and skipped["paths"][0].endswith("broken.jpg")


# ------------------------------------------------------------------------------------------ CelebA layout
# 7 images: partitions 0,0,0,1,2,2,0 -> train rows 0,1,2,6; valid row 3; test rows 4,5.
PARTITIONS = [0, 0, 0, 1, 2, 2, 0]


def _labels(n):
    """A -1/1 pattern that differs per image and per attribute."""
    return np.where((np.arange(n)[:, None] * 7 + np.arange(40)[None, :] * 3) % 5 < 2, 1, -1)


def _write_celeba(root, labels=None):
    labels = _labels(len(PARTITIONS)) if labels is None else labels
    colours = dict((p.name, c) for p, c in _write_images(root / "img_align_celeba", len(PARTITIONS), size=(18, 22)))
    files = sorted(colours)
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(files, labels)]
    (root / "list_attr_celeba.txt").write_text(f"{len(files)}\n" + " ".join(NAMES) + " \n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, PARTITIONS)))
    return files, colours


def _celeba(root, **kwargs):
    return CelebADataModule(root=root, image_size=16, use_cache=False, **kwargs)


def test_celeba_layout_is_parsed_into_the_three_splits(tmp_path):
    files, colours = _write_celeba(tmp_path)
    table = read_celeba_attributes(tmp_path / "list_attr_celeba.txt")
    assert table.names == NAMES and table.files == files and table.lines == list(range(3, 10))
    np.testing.assert_array_equal(table.labels, (_labels(7) > 0).astype(np.uint8))
    assert read_celeba_partition(tmp_path / "list_eval_partition.txt") == dict(zip(files, PARTITIONS))

    dm = _celeba(tmp_path)
    dm.setup()
    assert dm.attribute_names == NAMES and dm.num_classes == 40
    teacher, train, test = dm.split("teacher_train"), dm.split("train"), dm.split("test")
    labels = (_labels(7) > 0).astype(np.uint8)
    np.testing.assert_array_equal(teacher.targets, labels[[0, 1, 2, 6]])
    np.testing.assert_array_equal(test.targets, labels[[4, 5]])
    assert train.targets is None and train.images.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(train.images, teacher.images)  # the teacher's images, labels withheld
    for image, name in zip(test.images, (files[4], files[5])):  # solid-colour JPEGs survive decoding
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), colours[name], atol=3)
    assert dm.summary()["splits"] == {"teacher_train": 4, "train": 4, "test": 2}

    other = _celeba(tmp_path, student_partitions=["train", "valid"], test_partitions="test", max_per_split=3,
                    student_labels=True)
    assert len(other.split("teacher_train")) == 3
    # the same block of images serves teacher and student without a second copy in memory
    assert np.shares_memory(other.split("teacher_train").images, other.split("train").images)
    np.testing.assert_array_equal(other.split("train").targets, labels[[0, 1, 2]])
    with pytest.raises(ValueError, match="must be held out"):
        _celeba(tmp_path, student_partitions=["train", "test"])
    with pytest.raises(ValueError, match="data.test_partitions must name partitions among"):
        _celeba(tmp_path, test_partitions=["testing"])


def test_celeba_label_row_with_wrong_column_count_names_file_and_line(tmp_path):
    _write_celeba(tmp_path)
    path = tmp_path / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 1)[0]  # third image row (line 5) loses its last value
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt line 5: expected a file name and 40 values "
                                         r"\(-1 or 1\), got 39"):
        _celeba(tmp_path).setup()


def test_celeba_bad_values_count_and_partition_rows_name_the_line(tmp_path):
    _write_celeba(tmp_path)
    path = tmp_path / "list_attr_celeba.txt"
    good = path.read_text()
    lines = good.splitlines()
    lines[3] = lines[3][:11] + " 0" + lines[3][13:]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt line 4: attribute values must be -1 or 1, got '0'"):
        read_celeba_attributes(path)
    path.write_text("8\n" + "\n".join(good.splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match="line 1 announces 8 images but 7 rows follow"):
        read_celeba_attributes(path)
    path.write_text(good)
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace(" 1\n", " 3\n"))
    with pytest.raises(ValueError, match=r"list_eval_partition.txt line 4: expected '<file> <0\|1\|2>'"):
        _celeba(tmp_path).setup()
    partition.write_text("".join(partition.read_text().splitlines(keepends=True)[:6]).replace(" 3\n", " 1\n"))
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt line 9: 000007.jpg has no partition"):
        _celeba(tmp_path).setup()


def test_celeba_missing_image_names_the_image_and_its_line(tmp_path):
    files, _ = _write_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / files[5]).unlink()  # a test image, row 6 -> line 8
    with pytest.raises(FileNotFoundError, match=r"000006.jpg \(listed in .*list_attr_celeba.txt line 8\)"):
        _celeba(tmp_path).setup()
    lenient = _celeba(tmp_path, strict=False)
    assert len(lenient.split("test")) == 1
    assert lenient.summary()["skipped"]["count"] == 1


def test_celeba_arrays_are_decoded_once_and_read_back(tmp_path, monkeypatch):
    files, _ = _write_celeba(tmp_path / "celeba")
    settings = dict(root=tmp_path / "celeba", image_size=16, cache_dir=tmp_path / "cache")
    first = CelebADataModule(**settings)
    first.setup()
    assert len(list((tmp_path / "cache" / "faces").glob("celeba-*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(celeba, "decode_images", no_decoding)
    again = CelebADataModule(**settings)
    np.testing.assert_array_equal(again.split("test").images, first.split("test").images)
    image = tmp_path / "celeba" / "img_align_celeba" / files[0]
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # a changed file ...
    assert CelebADataModule(**settings).fingerprint() != first.fingerprint()  # ... names a new cache


def test_celeba_root_must_exist(tmp_path):
    with pytest.raises(ValueError, match="data.root is not set"):
        CelebADataModule()
    with pytest.raises(FileNotFoundError, match="CelebA folder not found"):
        CelebADataModule(root=tmp_path / "absent")
