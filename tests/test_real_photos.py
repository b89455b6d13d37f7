"""Real photos in real folders: what a user with their own data meets, on fixtures written in the published formats.

EXIF-rotated phone JPEGs read upright everywhere; every photo format Pillow decodes read from image folders; skipped
files reported by reason (log and summary); COCO boxes past the edge (data.box_policy) and swapped width/height;
Stanford Dogs' .mat lists as cells or padded char matrices; LFW-style pairs in fewer than ten folds; PlaNet's
thresholds on a small collection; CelebA attributes the test split cannot score.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import scipy.io
from conftest import compose_config
from PIL import Image
from torch import nn

from distill.data.modules.celeba import CelebADataModule
from distill.data.modules.coco import CocoDataModule
from distill.data.modules.face_folder import FaceFolderDataModule
from distill.data.modules.fine_grained import ImageFolderDataModule, StanfordDogsDataModule
from distill.data.modules.geo import GeoCSVDataModule
from distill.data.readers.coco import CocoDetectionDataset, load_coco
from distill.data.readers.image_files import IdentityFolder, image_size, load_image
from distill.data.readers.pairs import write_lfw_pairs
from distill.data.readers.stanford_dogs import read_split_list
from distill.engine.build import build_data_and_task
from distill.tasks import EmbeddingTask

ORIENTATION = 0x0112


def _upright(width=20, height=30):
    """An upright photo whose content shows any turn: a bright top-left corner on a dark ground."""
    pixels = np.full((height, width, 3), 30, dtype=np.uint8)
    pixels[:6, :6] = 250
    return pixels


def _phone_jpeg(path, upright, orientation):
    """Write ``upright`` as a phone does: the pixels stored sideways, the EXIF orientation saying how to turn them."""
    stored = np.rot90(upright, k=1 if orientation == 6 else -1)  # 6: turn 90 deg clockwise to view; 8: anticlockwise
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(stored)).save(path, format="JPEG", quality=95, exif=exif)
    return path


def _bright_top_left(image):
    image = np.asarray(image, dtype=float)
    corner = image[:6, :6].mean()
    return corner > 200 and image[:6, -6:].mean() < 80 and image[-6:, :6].mean() < 80 and image[-6:, -6:].mean() < 80


# --------------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_is_read_upright(tmp_path, orientation):
    path = _phone_jpeg(tmp_path / "photo.jpg", _upright(), orientation)
    with Image.open(path) as raw:
        assert raw.size == (30, 20) and not _bright_top_left(np.asarray(raw))  # stored sideways
    image = load_image(path)
    assert image.shape == (30, 20, 3) and _bright_top_left(image)
    assert image_size(path) == (20, 30, orientation)  # the upright size, from the header
    # through a data module too: an image folder of phone photos with a bright stripe down their left edge
    stripe = _upright()
    stripe[:, :4] = 250
    for name in ("cats", "dogs"):
        _phone_jpeg(tmp_path / "folder" / name / "a.jpg", stripe, orientation)
    dm = ImageFolderDataModule(root=tmp_path / "folder", test_root=tmp_path / "folder", image_size=20, resolution=20)
    square = dm.split("train").images[0].astype(float)  # the central 20 x 20 square of the upright 20 x 30 photo
    assert square[:, :3].mean() > 200 and square[:, 8:].mean() < 80


def _write(path, array, fmt, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **options)
    return path


def test_every_photo_format_is_read_and_skipped_files_are_reported(tmp_path, caplog):
    root = tmp_path / "photos"
    red, blue = np.zeros((12, 12, 3), np.uint8), np.zeros((12, 12, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    _write(root / "red" / "a.webp", red, "WEBP", lossless=True)
    _write(root / "red" / "b.bmp", red, "BMP")
    _write(root / "red" / "c.tiff", red, "TIFF")
    _write(root / "red" / "d.TIF", red, "TIFF")
    frames = [Image.fromarray(red), Image.fromarray(blue)]
    frames[0].save(root / "red" / "e.gif", save_all=True, append_images=frames[1:])  # first frame: red
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 220, 255
    rgba[:, :6, 3] = 0  # left half transparent (stored black): composited over white
    _write(root / "blue" / "f.png", rgba, "PNG")
    _write(root / "blue" / "g.jpeg", blue, "JPEG", quality=95)
    _write(root / "blue" / "h.jpg", np.full((12, 12), 90, np.uint8), "JPEG")  # grayscale
    (root / "blue" / "notes.txt").write_text("shot on a phone")
    (root / "blue" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "blue" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")

    folder = IdentityFolder(root)
    assert sorted(p.name for p, _ in folder.samples) == ["a.webp", "b.bmp", "broken.jpg", "c.tiff", "d.TIF",
                                                         "e.gif", "f.png", "g.jpeg", "h.jpg"]
    for name in ("a.webp", "b.bmp", "c.tiff", "d.TIF", "e.gif"):
        pixel = load_image(root / "red" / name)[6, 6]
        assert pixel[0] > 200 and pixel[2] < 40, name
    rgba_read = load_image(root / "blue" / "f.png")
    assert rgba_read[6, 2].tolist() == [255, 255, 255] and rgba_read[6, 9].tolist() == [0, 0, 220]
    assert load_image(root / "blue" / "h.jpg").shape == (12, 12, 3)

    caplog.set_level(logging.WARNING)
    dm = ImageFolderDataModule(root=root, test_root=root, image_size=8, resolution=8, strict=False)
    dm.setup()
    assert len(dm.split("train")) == 8  # every image but the corrupt one
    summary = dm.summary()
    assert summary["skipped"]["not an image"] == [str(root / "blue" / "notes.txt")] * 2  # train and test roots
    assert summary["skipped"]["corrupt"] == [str(root / "blue" / "broken.jpg")] * 2
    assert summary["skipped"]["hidden"] == [str(root / "blue" / ".DS_Store")] * 2
    assert summary["skipped_counts"] == {"hidden": 2, "not an image": 2, "corrupt": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]
    assert len(warnings) == 3  # one line per reason, with the count and the first names
    assert any("skipped 2 file(s), not an image" in w and "notes.txt" in w for w in warnings)
    assert any("skipped 2 file(s), corrupt" in w and "broken.jpg" in w for w in warnings)
    json.dumps(summary)  # results.json "data"


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(path)
    assert abs(int(load_image(path)[0, 0, 0]) - 40000 // 257) <= 1


# ----------------------------------------------------------------------------------------------------- COCO


def _coco(tmp_path, annotations, *, width=40, height=30, json_size=None, write_image=True, name="im.png"):
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    if write_image:
        Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(root / name)
    json_width, json_height = json_size or (width, height)
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({
        "images": [{"id": 1, "file_name": name, "width": json_width, "height": json_height}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": list(b), "iscrowd": 0}
                        for k, b in enumerate(annotations)],
        "categories": [{"id": 1, "name": "thing"}]}))
    return root, ann_file


def test_box_policy_error_clip_and_skip(tmp_path):
    inside, overhang, beyond = (2, 2, 10, 10), (30, 5, 14, 8), (45, 5, 4, 4)  # image 40x30
    root, ann_file = _coco(tmp_path, [inside, overhang])
    with pytest.raises(ValueError, match=r"annotation id 2 .*outside the image \(40x30.*data\.box_policy=clip.*"
                                         r"data\.box_policy=skip"):
        load_coco(ann_file, root)
    clipped = load_coco(ann_file, root, box_policy="clip")
    np.testing.assert_allclose(clipped.images[0].boxes, [[2, 2, 12, 12], [30, 5, 40, 13]])
    assert (clipped.boxes_clipped, clipped.boxes_skipped) == (1, 0)
    skipped = load_coco(ann_file, root, box_policy="skip")
    np.testing.assert_allclose(skipped.images[0].boxes, [[2, 2, 12, 12]])
    assert (skipped.boxes_clipped, skipped.boxes_skipped) == (0, 1)

    root, ann_file = _coco(tmp_path, [inside, overhang, beyond])
    with pytest.raises(ValueError, match=r"annotation id 3 .*cannot be clipped.*data\.box_policy=skip"):
        load_coco(ann_file, root, box_policy="clip")
    module = CocoDataModule(root, ann_file, test_ann_file=str(ann_file), test_root=str(root), box_policy="skip",
                            flip=False)
    summary = module.summary()
    assert summary["box_policy"] == "skip"
    assert summary["boxes_skipped"] == {"teacher_train": 2, "train": 2, "test": 2}
    assert summary["boxes_clipped"] == {"teacher_train": 0, "train": 0, "test": 0}
    with pytest.raises(ValueError, match="data.box_policy must be one of"):
        CocoDataModule(root, ann_file, box_policy="drop")


def test_swapped_width_and_height_are_named_not_blamed_on_a_box(tmp_path):
    # the image is 40 wide and 30 high; images[] says 30 x 40; a box fine in the image lies past the JSON's width
    root, ann_file = _coco(tmp_path, [(32, 2, 6, 6)], json_size=(30, 40))
    with pytest.raises(ValueError, match=r"images\[0\] \(image id 1, 'im.png'\) has width and height swapped: it says "
                                         r"width=30, height=40, but the image .* is 40 wide and 30 high") as error:
        load_coco(ann_file, root)
    assert "annotation id" not in str(error.value)
    root, ann_file = _coco(tmp_path, [(2, 2, 6, 6)], json_size=(30, 40))  # no box to trip over: still named
    with pytest.raises(ValueError, match="has width and height swapped"):
        load_coco(ann_file, root)


def test_coco_phone_photo_is_read_upright_and_a_json_of_the_stored_size_is_explained(tmp_path):
    root = tmp_path / "images"
    _phone_jpeg(root / "phone.jpg", _upright(), 6)  # upright 20 wide, 30 high; stored 30 x 20
    _, ann_file = _coco(tmp_path, [(1, 1, 8, 8)], json_size=(20, 30), write_image=False, name="phone.jpg")
    index = load_coco(ann_file, root)
    image, target = CocoDetectionDataset(index.images)[0]
    assert tuple(image.shape) == (3, 30, 20) and _bright_top_left(image.permute(1, 2, 0).numpy() * 255)
    # a JSON written from the stored pixels (30 x 20): the swap is named, with the EXIF orientation behind it
    _, ann_file = _coco(tmp_path, [(1, 1, 8, 8)], json_size=(30, 20), write_image=False, name="phone.jpg")
    with pytest.raises(ValueError, match=r"width and height swapped.*EXIF orientation 6"):
        load_coco(ann_file, root)


# ------------------------------------------------------------------------------------------ Stanford Dogs


def _dogs(tmp_path):
    names = ["n02085620-Chihuahua/n02085620_1.jpg", "n02085620-Chihuahua/n02085620_22.jpg",
             "n02085782-Japanese_spaniel/n02085782_333.jpg"]
    for k, name in enumerate(names):
        colour = np.zeros((10, 10, 3), np.uint8)
        colour[..., k % 3] = 200
        _write(tmp_path / "Images" / name, colour, "JPEG")
    return names, np.array([[1], [1], [2]], dtype=np.uint8)


def test_stanford_dogs_lists_as_string_cells_and_padded_char_matrices(tmp_path):
    names, labels = _dogs(tmp_path)
    cells = np.empty((len(names), 1), dtype=object)  # the official layout: a cell array of 1x1 cells of strings
    for k, name in enumerate(names):
        cells[k, 0] = np.array([name])
    scipy.io.savemat(tmp_path / "train_list.mat", {"file_list": cells, "labels": labels})
    scipy.io.savemat(tmp_path / "test_list.mat", {"file_list": np.array(names), "labels": labels})  # char matrix
    padded = scipy.io.loadmat(tmp_path / "test_list.mat")["file_list"]
    assert padded[0].endswith(" ") and not names[0].endswith(" ")  # savemat padded the shorter rows with spaces
    expected = [(name, int(label) - 1) for name, label in zip(names, labels.ravel())]
    assert read_split_list(tmp_path / "train_list.mat") == expected
    assert read_split_list(tmp_path / "test_list.mat") == expected
    dm = StanfordDogsDataModule(root=tmp_path, image_size=8, resolution=8)
    assert dm.summary()["splits"] == {"train": 3, "test": 3} and dm.class_names == ["Chihuahua", "Japanese spaniel"]
    scipy.io.savemat(tmp_path / "bad_list.mat", {"file_list": np.array([[1.0], [2.0]]), "labels": labels[:2]})
    with pytest.raises(ValueError, match="bad_list.mat: file_list must be a cell array of strings or a char matrix"):
        read_split_list(tmp_path / "bad_list.mat")


# ------------------------------------------------------------------------------------------------ LFW pairs

NAMES = ("Ann_Lee", "Bo_Chan", "Cy_Dow", "Di_Eve")


@pytest.fixture
def two_fold_faces(tmp_path):
    """Identity folders to train on, LFW-style test images and a pairs.txt of 2 folds (header "2 2")."""
    rng = np.random.default_rng(0)
    for person in range(3):
        for k in range(2):
            _write(tmp_path / "train" / f"id{person}" / f"{k}.jpg", rng.integers(0, 255, (24, 24, 3), np.uint8), "JPEG")
    for name in NAMES:
        for k in range(3):
            _write(tmp_path / "lfw" / name / f"{name}_{k + 1:04d}.jpg", rng.integers(0, 255, (24, 24, 3), np.uint8),
                   "JPEG")
    folds = [[((a, 1), (a, 2), True), ((a, 2), (a, 3), True), ((a, 1), (b, 1), False), ((a, 3), (b, 2), False)]
             for a, b in (("Ann_Lee", "Bo_Chan"), ("Cy_Dow", "Di_Eve"))]
    write_lfw_pairs(tmp_path / "pairs.txt", folds)
    return tmp_path


def _faces(root, **kwargs):
    return FaceFolderDataModule(root=root / "train", lfw_root=root / "lfw", image_size=16, resolution=16,
                                use_cache=False, **kwargs)


class _MeanColour(nn.Module):
    def forward(self, images):
        return images.mean(dim=(2, 3))


def test_two_fold_pairs_file_is_evaluated_in_its_two_folds(two_fold_faces, caplog):
    caplog.set_level(logging.WARNING)
    dm = _faces(two_fold_faces)  # data.num_folds and task.n_folds at their LFW default, 10
    assert dm.num_pair_folds == 2 and dm.summary()["pair_folds"] == 2 and len(dm.split("test").extras["pairs"]) == 8
    task = EmbeddingTask()
    assert task.n_folds == 10
    task.check_data(dm)  # at set-up: the data's folds are the evaluation's
    assert any("task.n_folds=10" in r.getMessage() and "2 folds" in r.getMessage() for r in caplog.records)
    assert any("holds 2 folds of pairs" in r.getMessage() and "data.num_folds=10" in r.getMessage()
               for r in caplog.records)
    metrics = task.evaluate(_MeanColour(), dm, resolution=16)  # today: ValueError after training
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_unscorable_folds_stop_at_set_up_naming_both_keys(two_fold_faces):
    path = two_fold_faces / "pairs.txt"  # one fold of 2 + 2 pairs (pairsDevTest.txt layout) and data.num_folds=1
    path.write_text("2\nAnn_Lee\t1\t2\nCy_Dow\t1\t2\nAnn_Lee\t1\tBo_Chan\t1\nCy_Dow\t1\tDi_Eve\t1\n")
    with pytest.raises(ValueError, match=r"holds one fold of pairs and data.num_folds=1.*data.num_folds to a value "
                                         r"in 2..2"):
        _faces(two_fold_faces, num_folds=1).setup()
    dm = _faces(two_fold_faces, num_folds=2)
    assert dm.num_pair_folds == 2
    EmbeddingTask(n_folds=5).check_data(dm)  # dealt into 2 folds: scored in 2

    # a corrupt image (data.strict=false) drops the second fold's same pairs: the folds cannot be scored
    (two_fold_faces / "lfw" / "Cy_Dow" / "Cy_Dow_0001.jpg").write_bytes(b"not a jpeg")
    write_lfw_pairs(path, [[(("Ann_Lee", 1), ("Ann_Lee", 2), True), (("Ann_Lee", 1), ("Bo_Chan", 1), False)],
                           [(("Cy_Dow", 1), ("Cy_Dow", 2), True), (("Ann_Lee", 3), ("Di_Eve", 1), False)]])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        broken = _faces(two_fold_faces, strict=False)
        broken.setup()
    with pytest.raises(ValueError, match=r"cannot be evaluated in 2 folds .*task.n_folds=10.*fold 1 of 2.*"
                                         r"(data.num_folds and task.n_folds|no fold count works)"):
        EmbeddingTask().check_data(broken)


def test_engine_checks_the_folds_when_it_builds_the_data(two_fold_faces):
    cfg = compose_config(["recipe=facenet", "data=face_folder", f"data.root={two_fold_faces / 'train'}",
                          f"data.lfw_root={two_fold_faces / 'lfw'}", "data.image_size=16", "data.resolution=16",
                          "teacher.resolution=16", "cache.enabled=false", "task.n_folds=10"])
    task, datamodule = build_data_and_task(cfg)
    assert datamodule.num_pair_folds == 2 and task.folds_for(datamodule) == 2


# --------------------------------------------------------------------------------------------------- planet


def test_small_geo_collection_gets_thresholds_that_work(tmp_path):
    (tmp_path / "images").mkdir()
    rows = ["path,lat,lon"]
    for k in range(12):  # twelve photos: six in Paris, six in Tokyo
        lat, lon = (48.85, 2.35) if k % 2 else (35.68, 139.69)
        Image.new("RGB", (16, 16), (20 * k, 80, 160)).save(tmp_path / "images" / f"{k}.png")
        rows.append(f"images/{k}.png,{lat + 0.001 * k},{lon}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(rows[:5]) + "\n")
    with pytest.raises(ValueError, match=r"12 training photos with data.t1=10000, data.t2=50 .* unusable: no cell "
                                         r"holds t2=50.*try data.t1=\d+ data.t2=\d+") as error:
        GeoCSVDataModule(root=tmp_path, image_size=8, resolution=8).setup()  # the README's defaults
    t1, t2 = (int(v) for v in re.search(r"data.t1=(\d+) data.t2=(\d+)", str(error.value)).groups())
    data = GeoCSVDataModule(root=tmp_path, image_size=8, resolution=8, t1=t1, t2=t2)
    assert data.num_classes >= 2 and len(data.split("train")) >= 6

    (tmp_path / "one_place.csv").write_text("path,lat,lon\n" + "".join(f"images/{k}.png,10.0,20.0\n" for k in range(4)))
    with pytest.raises(ValueError, match="keeps 1 cell.*all lie at one place"):
        GeoCSVDataModule(root=tmp_path, train_csv="one_place.csv", image_size=8, resolution=8, t1=2, t2=1).setup()


# --------------------------------------------------------------------------------------------------- CelebA


def test_attributes_the_test_split_cannot_score_are_named(tmp_path, caplog):
    names = ["Smiling", "Bald", "Young"]
    rows = [[1, -1, 1], [-1, -1, 1], [1, 1, 1], [-1, -1, 1], [1, -1, 1]]  # rows 3, 4 are the test split
    (tmp_path / "img_align_celeba").mkdir()
    files = [f"{k:06d}.jpg" for k in range(1, 6)]
    for k, name in enumerate(files):
        Image.new("RGB", (18, 22), (40 * k, 90, 120)).save(tmp_path / "img_align_celeba" / name)
    (tmp_path / "list_attr_celeba.txt").write_text(
        f"{len(files)}\n" + " ".join(names) + "\n"
        + "".join(f"{f} " + " ".join(str(v) for v in row) + "\n" for f, row in zip(files, rows)))
    (tmp_path / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, [0, 0, 0, 2, 2])))
    caplog.set_level(logging.WARNING)
    dm = CelebADataModule(root=tmp_path, image_size=16, resolution=16, use_cache=False)
    dm.setup()
    coverage = dm.summary()["test_coverage"]
    assert coverage == {"images": 2, "no_positive": ["Bald"], "no_negative": ["Young"]}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no positive" in m and "Bald" in m and "data.max_per_split" in m for m in messages)
    assert any("no negative" in m and "Young" in m for m in messages)


def test_summary_of_a_clean_image_folder_reports_nothing_skipped(tmp_path):
    for name in ("a", "b"):
        _write(tmp_path / name / "1.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    summary = ImageFolderDataModule(root=tmp_path, test_root=tmp_path, image_size=8, resolution=8).summary()
    assert summary["skipped"] == {} and summary["skipped_counts"] == {}
