"""CelebA and face folders streamed from their files: the same pixels, batches and key as decoded into memory,
``in_memory=auto`` going by the decoded size, and corrupt photos met in the workers named or replaced and counted."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from batches import assert_same_batches, cut_pixels, train_batches
from PIL import Image
from test_attributes_data import _write_celeba
from test_faces_data import face_tree, photos  # noqa: F401  (fixtures)

from distill.data import streaming
from distill.data.align import FaceAligner
from distill.data.modules import face_folder as face_folder_module
from distill.data.modules.celeba import CelebADataModule
from distill.data.modules.face_folder import FaceFolderDataModule
from distill.data.readers.image_files import CorruptImageError
from distill.data.streaming import CentreCrop, DecodedFiles

LOADER = dict(resolution=12, batch_size=3, eval_batch_size=4, seed=5)


def _noise_jpeg(path, seed, height, width):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, format="JPEG", quality=90)








def _pixels(images):
    return np.stack([images[i] for i in range(len(images))])


def _assert_same_splits(memory, streamed, names):
    for name in names:
        kept, lazy = memory.split(name), streamed.split(name)
        assert isinstance(kept.images, np.ndarray)
        assert isinstance(lazy.images, DecodedFiles) and not isinstance(lazy.images, np.ndarray)
        assert lazy.images.shape == kept.images.shape and lazy.images.dtype == np.uint8
        np.testing.assert_array_equal(_pixels(lazy.images), kept.images)
        assert (kept.targets is None) == (lazy.targets is None)
        if kept.targets is not None:
            np.testing.assert_array_equal(lazy.targets, kept.targets)
        assert kept.extras.keys() == lazy.extras.keys()
        for key in kept.extras:
            np.testing.assert_array_equal(lazy.extras[key], kept.extras[key])


# ------------------------------------------------------------------------------------------------- CelebA
@pytest.fixture
def celeba(tmp_path):
    """CelebA's layout (7 images: train rows 0,1,2,6; valid 3; test 4,5) with noise photos of several shapes, and
    a folder of 3 unlabeled photos."""
    files, _ = _write_celeba(tmp_path / "celeba")
    for i, name in enumerate(files):
        _noise_jpeg(tmp_path / "celeba" / "img_align_celeba" / name, i, 26 + 3 * i, 34 - 2 * i)
    (tmp_path / "extra" / "deeper").mkdir(parents=True)
    for i, folder in enumerate(("extra", "extra", "extra/deeper")):
        _noise_jpeg(tmp_path / folder / f"more_{i}.jpg", 50 + i, 40 - 5 * i, 30)
    return tmp_path


def _celeba(root, **options):
    settings = dict(root=root / "celeba", image_size=16, crop_fraction=0.8, use_cache=False, **LOADER)
    return CelebADataModule(**{**settings, **options})


def test_celeba_streams_the_pixels_batches_and_key_it_decodes_in_memory(celeba):
    extra = dict(unlabeled_root=celeba / "extra", use_cache=True, cache_dir=celeba / "cache")
    memory, files = _celeba(celeba, in_memory=True, **extra), _celeba(celeba, in_memory=False, **extra)
    _assert_same_splits(memory, files, ("teacher_train", "train", "test"))
    assert len(files.split("train")) == 4 + 3 and files.split("train").targets is None  # the folder appended
    for epoch in (0, 1):
        assert_same_batches(train_batches(memory, epoch, teacher_resolution=14), train_batches(files, epoch, workers=2, teacher_resolution=14))
    assert_same_batches(list(memory.eval_dataloader("test")), list(files.eval_dataloader("test")))
    assert_same_batches(list(memory.teacher_train_dataloader()), list(files.teacher_train_dataloader()))
    assert memory.fingerprint() == files.fingerprint()  # a teacher fitted on one serves the other
    assert (memory.summary()["in_memory"], files.summary()["in_memory"]) == (True, False)
    assert files.summary()["unlabeled_images"] == 3 and files.summary()["splits"] == memory.summary()["splits"]
    # streamed: no decoded arrays, neither in memory nor on disk (the cache holds the in-memory run's only)
    assert len(pickle.dumps(files.split("train").images)) < files.split("train").images.shape[0] * 16 * 16 * 3
    assert len(list((celeba / "cache" / "faces").glob("celeba-*.npz"))) == 1
    labelled = _celeba(celeba, in_memory=False, student_labels=True, max_per_split=2)
    np.testing.assert_array_equal(labelled.split("train").targets, labelled.split("teacher_train").targets)


def test_celeba_in_memory_auto_goes_by_the_decoded_size(celeba, monkeypatch):
    monkeypatch.setattr(streaming, "IN_MEMORY_AUTO_BYTES", 6 * 16 * 16 * 3 + 1)  # the 6 train and test images
    assert _celeba(celeba).summary()["in_memory"] is True
    assert _celeba(celeba, unlabeled_root=celeba / "extra").summary()["in_memory"] is False  # 3 more
    monkeypatch.setattr(streaming, "IN_MEMORY_AUTO_BYTES", 1)
    assert isinstance(_celeba(celeba).split("test").images, DecodedFiles)
    monkeypatch.setattr(streaming, "IN_MEMORY_AUTO_BYTES", 2**40)
    assert isinstance(_celeba(celeba, unlabeled_root=celeba / "extra").split("train").images, np.ndarray)


def test_celeba_corrupt_images_while_streaming_are_named_or_replaced_and_counted(celeba):
    images = celeba / "celeba" / "img_align_celeba"
    bad = cut_pixels(images / "000002.jpg")  # train row 1: its header reads
    dm = _celeba(celeba, in_memory=False)
    dm.setup()
    with pytest.raises(CorruptImageError, match="000002.jpg"):
        train_batches(dm, 0, workers=1, teacher_resolution=14)
    unreadable = images / "000007.jpg"  # train row 6, list line 9: the header does not read
    unreadable.write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    with pytest.raises(CorruptImageError, match=r"000007.jpg.*list_attr_celeba.txt line 9"):
        _celeba(celeba, in_memory=False).setup()  # at listing

    lenient = _celeba(celeba, in_memory=False, strict=False, unlabeled_root=celeba / "extra")
    assert lenient.summary()["skipped"] == {"count": 1, "paths": [str(unreadable)]}  # left out at listing
    teacher = lenient.split("teacher_train")
    assert len(teacher) == 3  # rows 0, 1, 2
    np.testing.assert_array_equal(teacher.images[1], teacher.images[2])  # the next image that decodes
    train_batches(lenient, 0, workers=1, teacher_resolution=14)  # met again in a worker: counted once
    summary = lenient.summary()
    assert summary["skipped"] == {"count": 2, "paths": [str(unreadable), str(bad)]}
    assert "unlabeled_skipped" not in summary
    extra = cut_pixels(celeba / "extra" / "more_1.jpg")
    lenient = _celeba(celeba, in_memory=False, strict=False, unlabeled_root=celeba / "extra")
    train_batches(lenient, 0, workers=1, teacher_resolution=14)
    skipped = lenient.summary()["unlabeled_skipped"]
    assert skipped["count"] == 1 and skipped["by_reason"] == {"corrupt": [str(extra)]}


# --------------------------------------------------------------------------------------------- face folders
def _faces(tree, **options):
    settings = dict(root=tree / "train", lfw_root=tree / "lfw", image_size=40, crop_fraction=0.7, num_folds=2,
                    use_cache=False, **LOADER)
    return FaceFolderDataModule(**{**settings, **options})


def test_face_folders_stream_the_pixels_pairs_batches_and_key_they_decode_in_memory(face_tree):
    for extra in ({}, {"train_root": face_tree / "train", "max_images_per_identity": 2}):
        memory, files = _faces(face_tree, in_memory=True, **extra), _faces(face_tree, in_memory=False, **extra)
        _assert_same_splits(memory, files, ("teacher_train", "train", "test"))  # test: pairs and their folds too
        assert_same_batches(train_batches(memory, 1, teacher_resolution=14), train_batches(files, 1, workers=2, teacher_resolution=14))
        assert_same_batches(list(memory.eval_dataloader("test")), list(files.eval_dataloader("test")))
        assert memory.fingerprint() == files.fingerprint()
        assert (memory.summary()["in_memory"], files.summary()["in_memory"]) == (True, False)
        assert files.summary()["by_split"] == memory.summary()["by_split"]
    assert isinstance(files.split("test").images.decoder, CentreCrop)


def test_face_folders_in_memory_auto_goes_by_the_decoded_size(face_tree, monkeypatch):
    decoded = (9 + 7) * 40 * 40 * 3  # 9 training photos and the 7 LFW photos the pairs name
    monkeypatch.setattr(streaming, "IN_MEMORY_AUTO_BYTES", decoded + 1)
    assert _faces(face_tree).summary()["in_memory"] is True
    assert _faces(face_tree, train_root=face_tree / "train").summary()["in_memory"] is False  # 9 more
    monkeypatch.setattr(streaming, "IN_MEMORY_AUTO_BYTES", 2**40)
    assert _faces(face_tree, train_root=face_tree / "train").summary()["in_memory"] is True


def test_face_folder_corrupt_images_while_streaming_are_named_or_replaced_and_counted(face_tree):
    bad = cut_pixels(face_tree / "train" / "id1" / "1.jpg")
    dm = _faces(face_tree, in_memory=False)
    dm.setup()  # the header reads: found when a worker decodes it
    with pytest.raises(CorruptImageError, match="id1/1.jpg"):
        train_batches(dm, 0, workers=1, teacher_resolution=14)
    unreadable = face_tree / "lfw" / "Cy_Dow" / "Cy_Dow_0003.jpg"
    unreadable.write_bytes(b"not a jpeg")
    with pytest.raises(CorruptImageError, match="Cy_Dow_0003.jpg"):
        _faces(face_tree, in_memory=False).setup()  # at listing

    lenient, memory = _faces(face_tree, in_memory=False, strict=False), _faces(face_tree, in_memory=True, strict=False)
    for dm in (lenient, memory):
        with pytest.warns(RuntimeWarning, match="corrupt"):
            dm.setup()
    # the unreadable LFW photo is left out, and its pair, as in memory
    _assert_same_splits(memory, lenient, ("test",))
    assert lenient.summary()["by_split"]["test"]["pairs_dropped"] == 1
    # the photo whose pixels are cut short is replaced by the next photo of the same person
    teacher = lenient.split("teacher_train")
    np.testing.assert_array_equal(teacher.images[4], teacher.images[5])
    np.testing.assert_array_equal(teacher.targets[3:6], [1, 1, 1])
    train_batches(lenient, 0, workers=1, teacher_resolution=14)
    summary = lenient.summary()
    assert summary["corrupt_images"] == 2 and summary["skipped"]["corrupt"] == [str(unreadable), str(bad)]
    assert summary["by_split"]["teacher_train"]["corrupt_paths"] == [str(bad)]
    assert summary["by_split"]["test"]["corrupt_paths"] == [str(unreadable)]


class _FakeMTCNN:
    """Fabricated detections that depend on the photo: none on dark photos, two faces on bright ones."""

    def detect(self, image):
        pixels = np.asarray(image, dtype=np.float64)
        mean = pixels.mean()
        if mean < 95:
            return None, None
        h, w = pixels.shape[:2]
        shift = (mean % 7) - 3.5  # sub-pixel boxes, partly outside the photo
        boxes = np.array([[w * 0.2 + shift, h * 0.15 - 9.3, w * 0.8 + shift, h * 0.75],
                          [1.0, 2.0, 9.5, 11.0]], dtype=np.float32)
        return boxes[: 2 if mean > 120 else 1], np.array([0.99, 0.91], dtype=np.float32)[: 2 if mean > 120 else 1]


class _FakeAligner(FaceAligner):
    def __init__(self, image_size, margin=0.2, min_face_size=20, fallback_fraction=1.0, device="cpu"):
        self.image_size, self.margin, self.fallback_fraction, self.device = image_size, margin, fallback_fraction, device
        self.mtcnn = _FakeMTCNN()


def test_aligned_faces_stream_the_crops_they_decode_in_memory(face_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(face_folder_module, "FaceAligner", _FakeAligner)
    options = dict(align=True, align_margin=0.3, use_cache=True, cache_dir=tmp_path / "cache")
    memory, files = _faces(face_tree, in_memory=True, **options), _faces(face_tree, in_memory=False, **options)
    _assert_same_splits(memory, files, ("teacher_train", "test"))
    assert_same_batches(train_batches(memory, 0, teacher_resolution=14), train_batches(files, 0, workers=1, teacher_resolution=14))
    assert memory.fingerprint() == files.fingerprint()
    summary, expected = files.summary(), memory.summary()
    assert summary["by_split"] == expected["by_split"]
    assert 0 < summary["faces_not_found"] < 16 and summary["multi_face_images"] == expected["multi_face_images"]
    assert len(list((tmp_path / "cache" / "faces").glob("boxes-*.npz"))) == 2  # the faces found once, kept
    monkeypatch.setattr(face_folder_module, "FaceAligner", None)  # a second run reads the boxes back
    again = _faces(face_tree, in_memory=False, **options)
    np.testing.assert_array_equal(_pixels(again.split("test").images), memory.split("test").images)
