"""Which face of a photo is kept: the largest, most central one (a stated rule), not MTCNN's most confident; and
how many photos held several faces, counted per split in the data summary. Fabricated detector outputs only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from distill.data.align import CENTRE_PENALTY, FaceAligner, centre_crop, face_scores, select_face, square_crop
from distill.data.modules import face_folder as face_folder_module
from distill.data.modules.face_folder import FaceFolderDataModule
from distill.data.readers.pairs import write_lfw_pairs

SHAPE = (200, 300, 3)  # H, W: the image centre is (150, 100)


def test_the_largest_central_face_wins_over_the_most_confident():
    boxes = [[5, 5, 35, 35],          # a small face in the corner: a passer-by, MTCNN's most confident
             [100, 40, 200, 160]]      # the person of the folder: large, centred
    assert select_face(boxes, [0.999, 0.93], SHAPE) == 1


def test_of_two_faces_of_one_size_the_more_central_is_kept():
    boxes = [[0, 50, 80, 130], [120, 60, 200, 140]]  # both 80 x 80; the second's centre is 10 px off the centre
    assert select_face(boxes, [0.99, 0.98], SHAPE) == 1


def test_the_score_is_area_minus_the_centre_distance_penalty():
    boxes = np.array([[110.0, 60.0, 190.0, 140.0],   # 80 x 80 at the centre: 6400
                      [200.0, 40.0, 300.0, 140.0]])  # 100 x 100, centre 100 px right, 10 up: 10000 - 2 * 10100
    np.testing.assert_allclose(face_scores(boxes, SHAPE), [6400.0, 10000.0 - CENTRE_PENALTY * (100 ** 2 + 10 ** 2)])
    assert select_face(boxes, [0.9, 0.99], SHAPE) == 0  # the larger face is too far off-centre
    # close to the centre the larger one wins
    assert select_face([[110, 60, 190, 140], [96, 46, 206, 156]], [0.99, 0.9], SHAPE) == 1


def test_no_face_or_faces_without_a_probability():
    assert select_face(None, None, SHAPE) is None
    assert select_face(np.zeros((0, 4)), np.zeros(0), SHAPE) is None
    assert select_face([[100, 40, 200, 160], [0, 0, 10, 10]], [None, 0.9], SHAPE) == 1
    assert select_face([[100, 40, 200, 160]], np.array([None], dtype=object), SHAPE) is None


class _FakeMTCNN:
    """Answers ``detect`` with fabricated boxes and probabilities, as facenet-pytorch's MTCNN does."""

    def __init__(self, boxes, probs):
        self.boxes, self.probs = boxes, probs

    def detect(self, image):
        assert isinstance(image, Image.Image)
        return self.boxes, self.probs


def _aligner(boxes, probs, size=32):
    aligner = FaceAligner.__new__(FaceAligner)  # no MTCNN networks: the detector's answers are fabricated
    aligner.image_size, aligner.margin, aligner.fallback_fraction, aligner.device = size, 0.2, 1.0, "cpu"
    aligner.mtcnn = _FakeMTCNN(boxes, probs)
    return aligner


def test_the_aligner_crops_the_kept_face_and_counts_the_faces():
    image = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    boxes = np.array([[5.0, 5.0, 35.0, 35.0], [100.0, 40.0, 200.0, 160.0]], dtype=np.float32)
    aligner = _aligner(boxes, np.array([0.999, 0.93], dtype=np.float32))
    crop, faces = aligner.crop(image)
    assert faces == 2
    np.testing.assert_array_equal(crop, square_crop(image, boxes[1], 32, 0.2))
    box, prob = aligner.detect(image)
    np.testing.assert_array_equal(box, boxes[1])
    assert prob == pytest.approx(0.93)
    assert aligner(image)[1] is True
    crop, faces = _aligner(None, [None]).crop(image)
    assert faces == 0
    np.testing.assert_array_equal(crop, centre_crop(image, 32))
    crops, found = _aligner(boxes, np.array([0.9, 0.9])).align([image, image])
    assert crops.shape == (2, 32, 32, 3) and found.tolist() == [True, True]


def _jpeg(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 48, 3), value, np.uint8)).save(path, format="JPEG", quality=95)


class _CountingAligner:
    """Bright photos hold two faces, the others one (what the data module is told by ``FaceAligner.crop``)."""

    def __init__(self, image_size, **_):
        self.image_size = image_size

    def crop(self, image):
        return centre_crop(image, self.image_size), 2 if image.mean() > 200 else 1


def test_multi_face_photos_are_counted_per_split_in_the_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(face_folder_module, "FaceAligner", _CountingAligner)
    for person in range(2):
        for k in range(3):
            _jpeg(tmp_path / "train" / f"id{person}" / f"{k}.jpg", 250 if (person, k) == (1, 2) else 90)
    names = ("Ann_Lee", "Bo_Chan")
    for name in names:
        for k in range(2):
            _jpeg(tmp_path / "lfw" / name / f"{name}_{k + 1:04d}.jpg", 250 if name == "Bo_Chan" else 90)
    write_lfw_pairs(tmp_path / "pairs.txt", [[(("Ann_Lee", 1), ("Ann_Lee", 2), True),
                                              (("Ann_Lee", 1), ("Bo_Chan", 1), False)],
                                             [(("Bo_Chan", 1), ("Bo_Chan", 2), True),
                                              (("Ann_Lee", 2), ("Bo_Chan", 2), False)]])
    dm = FaceFolderDataModule(root=tmp_path / "train", lfw_root=tmp_path / "lfw", image_size=24, num_folds=2,
                              align=True, use_cache=False)
    summary = dm.summary()
    assert summary["multi_face_images"] == {"teacher_train": 1, "test": 2}
    assert summary["by_split"]["teacher_train"]["multi_face_paths"] == [str(tmp_path / "train" / "id1" / "2.jpg")]
    assert summary["faces_not_found"] == 0
    assert "align_select" in dm.fingerprint_parts()  # the rule shapes the cached crops: it is in their key
