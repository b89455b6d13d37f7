"""Fine-grained data: the synthetic breeds, the Stanford Dogs .mat split reader, ImageFolder data and corrupt images."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data.modules.fine_grained import (
    ImageFolderDataModule,
    StanfordDogsDataModule,
    SyntheticFineGrainedDataModule,
)
from distill.data.readers.image_files import CorruptImageError
from distill.data.readers.stanford_dogs import breed_name, read_split_list
from distill.data.synthetic.dogs import (
    COATS,
    EARS,
    MAX_CLASSES,
    MUZZLES,
    PATTERNS,
    breed_factors,
    breed_names,
    render_dogs,
)
from distill.tasks import ClassificationTask

# --- synthetic breeds -------------------------------------------------------------------------------------------


def test_breed_factors_enumerate_every_combination_once():
    factors = breed_factors(np.arange(MAX_CLASSES))
    assert MAX_CLASSES == 120 == len(COATS) * len(PATTERNS) * len(EARS) * len(MUZZLES)
    assert len({tuple(row) for row in factors}) == 120
    # label 0 is the first of every detail; label 7 = coat 2 + 5 * pattern 1
    assert factors[0].tolist() == [0, 0, 0, 0]
    assert factors[7].tolist() == [2, 1, 0, 0]
    assert factors[119].tolist() == [4, 3, 2, 1]
    assert breed_names(8)[7] == "cream spotted pricked-eared short-muzzled"
    with pytest.raises(ValueError, match="labels must lie"):
        breed_factors(np.array([120]))


def test_render_is_deterministic_and_seed_dependent():
    labels = np.array([0, 5, 37, 119])
    a = render_dogs(labels, 32, seed=3)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render_dogs(labels, 32, seed=3))
    assert not np.array_equal(a, render_dogs(labels, 32, seed=4))


def test_classes_share_the_silhouette_and_differ_in_details():
    """Class means: the dog's centre follows the coat colour; labels 0 and 5 (tan, plain vs spotted) stay close."""
    size = 48
    labels = np.repeat([0, 1, 2, 3, 4, 5], 40)
    images = render_dogs(labels, size, seed=1).reshape(6, 40, size, size, 3).astype(float)
    centre = images[:, :, size // 2 - 2:size // 2 + 3, size // 2 - 5:size // 2 + 5].mean(axis=(1, 2, 3))  # (6, 3)
    brightness = centre.sum(axis=1)
    # coats: tan, brown, cream, grey, black -> cream brightest, black darkest
    assert brightness.argmax() == 2 and brightness.argmin() == 4
    assert brightness[2] - brightness[4] > 200
    # same coat, another pattern: much closer than the coats that differ most
    assert abs(brightness[0] - brightness[5]) < 0.5 * (brightness[2] - brightness[4])
    # same silhouette: the share of the image covered by a dog-coloured, non-background region is alike per class
    assert np.ptp(brightness[[0, 5]]) < np.ptp(brightness[:5])


def test_data_module_splits_are_balanced_labelled_and_named():
    dm = SyntheticFineGrainedDataModule(num_classes=12, image_size=24, num_teacher_train=48, num_train=36,
                                        num_test=24, resolution=24, seed=5)
    dm.setup()
    assert {name: len(dm.split(name)) for name in ("teacher_train", "train", "test")} == \
        {"teacher_train": 48, "train": 36, "test": 24}
    for name, per_class in (("teacher_train", 4), ("train", 3), ("test", 2)):
        assert np.bincount(dm.split(name).targets, minlength=12).tolist() == [per_class] * 12
    assert dm.num_classes == 12 and len(dm.class_names) == 12
    assert dm.summary()["classes"] == 12
    again = SyntheticFineGrainedDataModule(num_classes=12, image_size=24, num_teacher_train=48, num_train=36,
                                           num_test=24, resolution=24, seed=5)
    np.testing.assert_array_equal(dm.split("test").images, again.split("test").images)
    assert dm.fingerprint() == again.fingerprint()
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticFineGrainedDataModule(num_classes=121)


# --- Stanford Dogs layout ---------------------------------------------------------------------------------------


def _save_jpeg(path, colour, size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, "JPEG")


def _save_list(path, files, labels):
    """The official layout: file_list a column cell array of strings, labels a 1-based column of doubles."""
    from scipy.io import savemat

    cells = np.empty((len(files), 1), dtype=object)
    for i, name in enumerate(files):
        cells[i, 0] = np.array([name])
    savemat(str(path), {"file_list": cells, "annotation_list": cells,
                        "labels": np.asarray(labels, dtype=np.float64).reshape(-1, 1)})


@pytest.fixture
def dogs_root(tmp_path):
    root = tmp_path / "dogs"
    breeds = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    colours = [(200, 30, 30), (30, 30, 200)]
    train, test = [], []
    for label, (breed, colour) in enumerate(zip(breeds, colours), start=1):
        for i in range(3):
            name = f"{breed}/{breed.split('-')[0]}_{i}.jpg"
            _save_jpeg(root / "Images" / name, colour)
            (test if i == 2 else train).append((name, label))
    _save_list(root / "train_list.mat", *zip(*train))
    _save_list(root / "test_list.mat", *zip(*test))
    return root


def test_read_split_list_reads_the_official_fields(dogs_root):
    entries = read_split_list(dogs_root / "train_list.mat")
    assert entries == [("n02085620-Chihuahua/n02085620_0.jpg", 0), ("n02085620-Chihuahua/n02085620_1.jpg", 0),
                       ("n02085782-Japanese_spaniel/n02085782_0.jpg", 1),
                       ("n02085782-Japanese_spaniel/n02085782_1.jpg", 1)]
    assert breed_name("n02085782-Japanese_spaniel") == "Japanese spaniel"
    with pytest.raises(FileNotFoundError, match="missing_list.mat"):
        read_split_list(dogs_root / "missing_list.mat")


def test_stanford_dogs_module_decodes_both_splits(dogs_root):
    dm = StanfordDogsDataModule(root=dogs_root, image_size=16, resolution=16)
    dm.setup()
    assert dm.class_names == ["Chihuahua", "Japanese spaniel"] and dm.num_classes == 2
    train, test = dm.split("train"), dm.split("test")
    assert train.images.shape == (4, 16, 16, 3) and train.targets.tolist() == [0, 0, 1, 1]
    assert test.targets.tolist() == [0, 1]
    # the red breed is red, the blue one blue (JPEG is lossy: a tolerance)
    assert abs(int(test.images[0, 8, 8, 0]) - 200) < 10 and abs(int(test.images[1, 8, 8, 2]) - 200) < 10
    assert dm.summary()["skipped"] == {} and dm.summary()["skipped_counts"] == {}


def test_truncated_jpeg_is_named_or_skipped_and_counted(dogs_root):
    bad = dogs_root / "Images" / "n02085620-Chihuahua" / "n02085620_1.jpg"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated: the header survives, the image data does not
    with pytest.raises(CorruptImageError, match="n02085620_1.jpg"):
        StanfordDogsDataModule(root=dogs_root, image_size=16, resolution=16, strict=True).setup()
    dm = StanfordDogsDataModule(root=dogs_root, image_size=16, resolution=16, strict=False)
    summary = dm.summary()
    assert summary["skipped"] == {"corrupt": [str(bad)]} and summary["skipped_counts"] == {"corrupt": 1}
    assert summary["splits"] == {"train": 3, "test": 2}
    assert dm.split("train").targets.tolist() == [0, 1, 1]


def test_missing_root_and_images_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="data.root is required"):
        StanfordDogsDataModule(root=None)
    with pytest.raises(FileNotFoundError, match="data.root"):
        StanfordDogsDataModule(root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="Images"):
        StanfordDogsDataModule(root=tmp_path).setup()


def test_image_folder_splits_every_kth_image_per_class(tmp_path):
    for name, colour in (("beagle", (250, 250, 0)), ("pug", (0, 250, 250))):
        for i in range(5):
            _save_jpeg(tmp_path / "data" / name / f"{i}.jpg", colour)
    (tmp_path / "data" / "pug" / "4.jpg").write_bytes(b"not a jpeg at all")
    dm = ImageFolderDataModule(root=tmp_path / "data", test_fraction=0.5, image_size=8, resolution=8, strict=False)
    dm.setup()
    assert dm.class_names == ["beagle", "pug"]
    # every 2nd image of each class (positions 1, 3) is a test image; pug/4.jpg (a train image) fails to decode
    assert dm.split("test").targets.tolist() == [0, 0, 1, 1]
    assert dm.split("train").targets.tolist() == [0, 0, 0, 1, 1]
    assert dm.summary()["skipped_counts"] == {"corrupt": 1}
    with pytest.raises(CorruptImageError, match="4.jpg"):
        ImageFolderDataModule(root=tmp_path / "data", test_fraction=0.5, image_size=8, resolution=8).setup()


# --- metric through the data path --------------------------------------------------------------------------------


class _FixedLogits(torch.nn.Module):
    """Returns pre-set logits in order, whatever the images (the test loader is not shuffled)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.position = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.position:self.position + len(images)]
        self.position += len(images)
        return out


def test_top1_through_the_data_module_matches_a_hand_count():
    dm = SyntheticFineGrainedDataModule(num_classes=4, image_size=16, num_teacher_train=4, num_train=4, num_test=8,
                                        resolution=16, eval_batch_size=3, seed=2)
    targets = torch.as_tensor(dm.split("test").targets)
    logits = torch.full((8, 4), -1.0)
    predicted = targets.clone()
    predicted[[1, 4, 6]] = (targets[[1, 4, 6]] + 1) % 4       # three of eight wrong: top-1 = 5/8
    logits[torch.arange(8), predicted] = 2.0
    logits[torch.arange(8), targets] = torch.where(predicted == targets, 2.0, 1.0)  # true class second when wrong
    metrics = ClassificationTask(top_k=(1, 2)).evaluate(_FixedLogits(logits), dm, 16)
    assert metrics["top1"] == pytest.approx(5 / 8)
    assert metrics["top2"] == pytest.approx(1.0)
    # the confusions, by class name, counted by hand from the three wrong predictions
    expected = Counter((dm.class_names[int(targets[i])], dm.class_names[int(predicted[i])]) for i in (1, 4, 6))
    found = {(pair["true"], pair["predicted"]): pair["count"] for pair in metrics["most_confused"]}
    assert found == dict(expected)
