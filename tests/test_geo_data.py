"""Geolocation data: the synthetic geotagged photos and the path,lat,lon CSV loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import default_collate

from distill.core.labels import UNLABELLED
from distill.data.modules.geo import GeoCSVDataModule, SyntheticGeoDataModule
from distill.data.readers.geo_csv import read_geo_csv
from distill.data.readers.image_files import CorruptImageError
from distill.data.synthetic.geo_photos import CITIES, render_places, sample_places
from distill.metrics import great_circle_km
from distill.tasks.base import GROUND_TRUTH
from distill.tasks.geolocation import GeolocationTask, known_places

TINY = dict(image_size=24, num_teacher_train=300, num_train=200, num_test=120, t1=40, t2=4, batch_size=16)


def test_synthetic_photos_are_deterministic_in_the_seed():
    first, again, other = (SyntheticGeoDataModule(seed=seed, **TINY) for seed in (3, 3, 4))
    for name in ("teacher_train", "train", "test"):
        a, b, c = first.split(name), again.split(name), other.split(name)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.targets, b.targets)
        assert np.array_equal(a.extras["latlon"], b.extras["latlon"])
        assert not np.array_equal(a.extras["latlon"][:20], c.extras["latlon"][:20])
    assert first.partition.tokens == again.partition.tokens
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()


def test_targets_are_the_cells_of_the_places():
    data = SyntheticGeoDataModule(seed=0, **TINY)
    partition = data.partition
    assert data.num_classes == len(partition) > 6
    kept_training = 0
    for name in ("teacher_train", "train", "test"):
        split = data.split(name)
        latlon = split.extras["latlon"]
        assert latlon.shape == (len(split), 2) and split.images.shape[1:] == (24, 24, 3)
        assert np.array_equal(split.targets, partition.cell_of(latlon[:, 0], latlon[:, 1]))
        if name != "test":
            assert (split.targets >= 0).all()  # training photos outside every kept cell are left out
            kept_training += len(split)
    assert len(data.split("test")) == 120  # every test photo is kept, in a cell or not
    assert partition.counts.sum() == kept_training
    assert kept_training + partition.dropped_photos == 300 + 200
    summary = data.summary()
    assert summary["cells"] == len(partition) and summary["t1"] == 40
    assert summary["outside_partition"]["test"] == int((data.split("test").targets < 0).sum())


def test_unlabelled_photos_join_the_students_split_only():
    plain = SyntheticGeoDataModule(seed=0, **TINY)
    more = SyntheticGeoDataModule(seed=0, num_unlabelled=30, **TINY)
    labelled, train = plain.split("train"), more.split("train")
    n = len(labelled)
    assert len(train) == n + 30 and train.images.shape[1:] == (24, 24, 3)
    assert np.array_equal(train.targets[:n], labelled.targets) and (train.targets[n:] == UNLABELLED).all()
    assert (labelled.targets >= 0).all()  # so UNLABELLED in train marks exactly the added photos
    assert np.array_equal(train.images[:n], labelled.images)
    assert np.array_equal(train.extras["latlon"][:n], labelled.extras["latlon"])
    assert train.extras["latlon"].shape == (n + 30, 2) and np.isnan(train.extras["latlon"][n:]).all()  # hidden
    assert not any(np.array_equal(image, train.images[n]) for image in labelled.images)  # new photos
    for name in ("teacher_train", "test"):
        a, b = plain.split(name), more.split(name)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.targets, b.targets)
        assert np.array_equal(a.extras["latlon"], b.extras["latlon"])
    # the partition is built from the labelled places alone: the same cells, counts and thresholds
    assert more.partition.tokens == plain.partition.tokens and more.num_classes == plain.num_classes
    assert np.array_equal(more.partition.counts, plain.partition.counts)
    assert more.partition.dropped_photos == plain.partition.dropped_photos
    assert np.array_equal(known_places(train), labelled.extras["latlon"])
    summary, before = more.summary(), plain.summary()
    assert summary["unlabelled"] == 30 and before["unlabelled"] == 0
    assert summary["splits"]["train"] == n + 30 and summary["outside_partition"] == before["outside_partition"]
    assert more.fingerprint() != plain.fingerprint()
    assert SyntheticGeoDataModule(seed=0, num_unlabelled=0, **TINY).fingerprint() == plain.fingerprint()
    with pytest.raises(ValueError, match=r"data\.num_unlabelled must be >= 0, got -1"):
        SyntheticGeoDataModule(seed=0, num_unlabelled=-1, **TINY)


def test_geolocation_maps_leave_the_unlabelled_photos_out(tmp_path, monkeypatch):
    from distill.tasks import geolocation

    drawn = {}
    monkeypatch.setattr(geolocation, "plot_partition", lambda partition, latlon, path: drawn.update(latlon=latlon))
    plain = SyntheticGeoDataModule(seed=0, **TINY)
    more = SyntheticGeoDataModule(seed=0, num_unlabelled=30, **TINY)
    GeolocationTask(maps=True).save_artifacts(more, tmp_path)
    expected = np.concatenate([plain.split(name).extras["latlon"] for name in ("teacher_train", "train")])
    assert np.array_equal(drawn["latlon"], expected) and np.isfinite(drawn["latlon"]).all()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_geolocation_student_step_skips_unlabelled_photos(label_smoothing):
    data = SyntheticGeoDataModule(seed=0, num_unlabelled=12, resolution=24, **TINY)
    train = data.split("train")
    n = len(train) - 12
    dataset = data.dataset("train", augment=False)
    rows = [0, n, 1, n + 1, 2, n + 5, 3, 4]  # labelled and unlabelled photos mixed
    batch = default_collate([dataset[(row, 0)] for row in rows])
    labelled = batch["target"] != UNLABELLED
    assert int(labelled.sum()) == 5 and bool((batch["target"][labelled] >= 0).all())
    task = GeolocationTask(label_smoothing=label_smoothing, maps=False)
    torch.manual_seed(0)
    student, _, _ = task.build_model({"_target_": "distill.models.mobilenet.MobileNetV1", "width_multiplier": 0.25},
                                     num_classes=data.num_classes, resolution=24)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    step = task.student_step(student.train(), batch, with_losses=True)
    loss = step.losses[GROUND_TRUTH]
    by_hand = F.cross_entropy(step.output[labelled], batch["target"][labelled], label_smoothing=label_smoothing)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    # the unlabelled rows get no gradient from the labels: as if they were not scored at all
    grad_out = torch.autograd.grad(loss, step.output, retain_graph=True)[0]
    assert torch.count_nonzero(grad_out[~labelled]) == 0 and torch.count_nonzero(grad_out[labelled]) > 0
    before = [p.detach().clone() for p in student.parameters()]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, student.parameters()))


def test_places_cluster_around_cities():
    places = sample_places(4000, np.random.default_rng(0))
    assert (np.abs(places[:, 0]) <= 90).all() and (np.abs(places[:, 1]) <= 180).all()
    cities = np.array([(lat, lon) for _, lat, lon, _ in CITIES])
    distance = great_circle_km(places[:, None, 0], places[:, None, 1], cities[None, :, 0], cities[None, :, 1])
    nearest = distance.min(1).values
    # 70% of the photos are taken in a city (within a few tens of km), most of the rest near one
    assert 0.65 <= float((nearest < 60).float().mean()) <= 0.8
    assert float((nearest > 1500).float().mean()) < 0.12


def test_photos_show_their_place():
    # the same place photographed with different noise looks alike; far-apart places do not
    places = np.array([[48.857, 2.352]] * 40 + [[30.044, 31.236]] * 40 + [[64.147, -21.942]] * 40)
    images = render_places(places, 32, seed=0).astype(np.float32).reshape(3, 40, -1)
    again = render_places(places, 32, seed=1).astype(np.float32).reshape(3, 40, -1)
    means = images.mean(axis=1)
    same = np.abs(means - again.mean(axis=1)).mean(axis=1)
    different = [np.abs(means[i] - means[j]).mean() for i in range(3) for j in range(3) if i != j]
    assert same.max() < 0.5 * min(different)
    assert np.array_equal(render_places(places[:5], 32, seed=0), render_places(places[:5], 32, seed=0))
    with pytest.raises(ValueError, match="image size"):
        render_places(places[:1], 8, seed=0)


# ---------------------------------------------------------------- CSV loader


def _photo(path, colour):
    Image.new("RGB", (20, 16), colour).save(path)


@pytest.fixture
def geo_folder(tmp_path):
    """Images near three cities; train.csv with four bad rows, a clean test.csv."""
    images = tmp_path / "images"
    images.mkdir()
    places = {"paris": (48.85, 2.35), "tokyo": (35.68, 139.69), "lima": (-12.05, -77.04)}
    rows, test_rows = ["path,lat,lon,title"], ["lon,path,lat"]  # extra column; columns in any order
    for name, (lat, lon) in places.items():
        for k in range(6):
            _photo(images / f"{name}{k}.png", (40 * k, 100, 200))
            rows.append(f"images/{name}{k}.png,{lat + 0.01 * k},{lon},a photo")
        test_rows.append(f"{lon},images/{name}0.png,{lat}")
    (images / "broken.png").write_bytes(b"not a png")
    rows[4:4] = ["images/paris0.png,95.0,2.35,too far north",        # line 5
                 "images/missing.png,48.85,2.35,no such file",       # line 6
                 "images/paris1.png,north,2.35,not a number"]        # line 7
    rows.append("images/broken.png,48.85,2.35,corrupt")               # line 23
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(test_rows) + "\n")
    return tmp_path


def test_csv_rows_are_checked_and_skipped_with_their_line(geo_folder):
    rows = read_geo_csv(geo_folder / "train.csv", geo_folder)
    assert len(rows.paths) == 19 and rows.latlon.shape == (19, 2)
    assert rows.lines[:4] == [2, 3, 4, 8]
    assert rows.latlon[0].tolist() == [48.85, 2.35]
    assert [skip.split(": ")[0] for skip in rows.skipped] == ["train.csv:5", "train.csv:6", "train.csv:7"]
    assert "latitude '95.0' outside [-90, 90]" in rows.skipped[0]
    assert "image not found" in rows.skipped[1] and "must be numbers" in rows.skipped[2]


def test_strict_csv_rejects_the_first_bad_row(geo_folder):
    with pytest.raises(ValueError, match=r"train\.csv:5: latitude '95.0' outside"):
        read_geo_csv(geo_folder / "train.csv", geo_folder, strict=True)
    (geo_folder / "bad.csv").write_text("path,lat,lon\nimages/paris0.png,48.85,2.35\nimages/gone.png,1,2\n")
    with pytest.raises(FileNotFoundError, match=r"bad\.csv:3: image not found"):
        read_geo_csv(geo_folder / "bad.csv", geo_folder, strict=True)
    (geo_folder / "noheader.csv").write_text("images/paris0.png,48.85,2.35\n")
    with pytest.raises(ValueError, match="header must name the columns path,lat,lon"):
        read_geo_csv(geo_folder / "noheader.csv", geo_folder)
    with pytest.raises(FileNotFoundError, match="geolocation CSV not found"):
        read_geo_csv(geo_folder / "nope.csv", geo_folder)


def test_csv_data_module_labels_cells_and_reports_skips(geo_folder):
    data = GeoCSVDataModule(root=geo_folder, image_size=16, t1=10, t2=2)  # one face cell per city
    assert not data.has_split("teacher_train")
    train, test = data.split("train"), data.split("test")
    assert len(train) == 18  # 19 readable rows, the corrupt image skipped
    assert train.images.shape == (18, 16, 16, 3) and train.images[0, 0, 0].tolist() == [0, 100, 200]
    latlon = train.extras["latlon"]
    assert np.array_equal(train.targets, data.partition.cell_of(latlon[:, 0], latlon[:, 1]))
    assert test.extras["latlon"].tolist() == [[48.85, 2.35], [35.68, 139.69], [-12.05, -77.04]]
    assert (test.targets >= 0).all() and data.num_classes == 3 and sorted(data.partition.counts) == [6, 6, 6]
    summary = data.summary()
    assert summary["skipped"] == 4 and summary["strict"] is False
    assert summary["skipped_rows"][3].startswith("train.csv:23: cannot decode image")
    strict = GeoCSVDataModule(root=geo_folder, train_csv="test.csv", test_csv="test.csv", image_size=16, t1=4,
                              t2=1, strict=True)
    assert len(strict.split("train")) == 3
    (geo_folder / "corrupt.csv").write_text("path,lat,lon\nimages/paris0.png,48.85,2.35\nimages/broken.png,1,2\n")
    with pytest.raises(CorruptImageError, match=r"corrupt\.csv:3: cannot decode"):
        GeoCSVDataModule(root=geo_folder, train_csv="corrupt.csv", image_size=16, t1=4, t2=1, strict=True).setup()
    with pytest.raises(ValueError, match="data.root is required"):
        GeoCSVDataModule()
