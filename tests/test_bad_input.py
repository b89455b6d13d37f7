"""Bad input in the real formats stops with an error naming the file (and the field or line), before any training.

Each fixture is written here in its real format: MATLAB .mat lists, COCO instances JSON with PNG images, UTF-8
text lists saved in another encoding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from distill.data.modules.celeba import CelebADataModule
from distill.data.modules.coco import CocoDataModule
from distill.data.modules.geo import GeoCSVDataModule
from distill.data.readers.celeba import read_celeba_attributes, read_celeba_partition
from distill.data.readers.coco import load_coco
from distill.data.readers.geo_csv import read_geo_csv
from distill.data.readers.pairs import read_lfw_pairs
from distill.data.readers.stanford_dogs import read_split_list

# --- Stanford Dogs .mat lists -------------------------------------------------------------------------------------


def _savemat(path, **fields):
    from scipy.io import savemat

    savemat(str(path), fields)
    return path


def test_corrupt_mat_file_names_the_file(tmp_path):
    garbage = tmp_path / "train_list.mat"
    garbage.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3)
    with pytest.raises(ValueError, match="train_list.mat"):
        read_split_list(garbage)
    good = _savemat(tmp_path / "good.mat", file_list=np.array([["a/b.jpg"]], dtype=object), labels=np.array([[1.0]]))
    truncated = tmp_path / "test_list.mat"
    truncated.write_bytes(good.read_bytes()[:150])  # the header survives, the variables do not
    with pytest.raises(ValueError, match="test_list.mat"):
        read_split_list(truncated)


def test_mat_without_a_field_names_the_file_and_the_field(tmp_path):
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = np.array(["n01-a/n01_0.jpg"])
    no_labels = _savemat(tmp_path / "train_list.mat", file_list=cells)
    with pytest.raises(ValueError, match=r"train_list.mat.*missing \['labels'\]"):
        read_split_list(no_labels)
    no_files = _savemat(tmp_path / "test_list.mat", labels=np.array([[1.0]]))
    with pytest.raises(ValueError, match=r"test_list.mat.*missing \['file_list'\]"):
        read_split_list(no_files)


def test_mat_with_malformed_fields_names_the_file_and_the_field(tmp_path):
    numbers = _savemat(tmp_path / "numbers.mat", file_list=np.array([[1.0], [2.0]]), labels=np.array([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="numbers.mat.*file_list"):
        read_split_list(numbers)
    cells = np.empty((2, 1), dtype=object)
    cells[0, 0], cells[1, 0] = np.array(["a/0.jpg"]), np.array(["a/1.jpg"])
    words = _savemat(tmp_path / "words.mat", file_list=cells, labels=np.array([["one"], ["two"]]))
    with pytest.raises(ValueError, match="words.mat.*labels"):
        read_split_list(words)
    short = _savemat(tmp_path / "short.mat", file_list=cells, labels=np.array([[1.0]]))
    with pytest.raises(ValueError, match="short.mat: 2 entries in file_list but 1 labels"):
        read_split_list(short)


# --- COCO instances JSON, checked at setup() ----------------------------------------------------------------------


def _coco(tmp_path, *, images=None, categories=None, size=(20, 16)):
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    for i in range(4):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    images = images or [{"id": i + 1, "file_name": f"{i}.png", "width": size[0], "height": size[1]} for i in range(4)]
    categories = categories or [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    annotations = [{"id": 10 + i, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0}
                   for i in range(4)]
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root, ann_file


def _module(root, ann_file):
    return CocoDataModule(root=root, ann_file=ann_file, test_every=2, resolution=20)


def test_coco_json_whose_top_level_is_not_an_object_is_named(tmp_path):
    root, ann_file = _coco(tmp_path)
    for text, kind in (("[]", "array"), ('"images"', "string"), ("3", "number"), ("null", "null")):
        ann_file.write_text(text)
        with pytest.raises(ValueError, match=rf"instances.json is not a COCO instances file: its top level is a "
                                             rf"JSON {kind}"):
            _module(root, ann_file).setup()


def test_coco_category_without_an_integer_id_is_named(tmp_path):
    root, ann_file = _coco(tmp_path, categories=[{"id": 1, "name": "a"}, {"name": "no id"}])
    with pytest.raises(ValueError, match=r"instances.json: categories\[1\] needs an integer 'id'"):
        _module(root, ann_file).setup()
    root, ann_file = _coco(tmp_path, categories=[{"id": 1, "name": "a"}, {"id": "2", "name": "text id"}])
    with pytest.raises(ValueError, match=r"categories\[1\] needs an integer 'id' \(got '2'\)"):
        _module(root, ann_file).setup()
    root, ann_file = _coco(tmp_path, categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "again"}])
    with pytest.raises(ValueError, match="category id 1 appears twice"):
        load_coco(ann_file, root)
    ann_file.write_text(json.dumps({"images": [], "annotations": [[1]], "categories": [{"id": 1}]}))
    with pytest.raises(ValueError, match=r"annotations\[0\] is a JSON array, expected an object"):
        load_coco(ann_file, root)


def test_undecodable_image_is_named_at_setup(tmp_path):
    root, ann_file = _coco(tmp_path)
    (root / "2.png").write_bytes((root / "2.png").read_bytes()[:60])  # a valid header, the pixels cut off
    with pytest.raises(ValueError, match=r"2.png \(image id 3.*cannot be decoded"):
        _module(root, ann_file).setup()
    (root / "2.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="2.png"):
        _module(root, ann_file).setup()


def test_image_whose_size_differs_from_the_json_is_named_at_setup(tmp_path):
    root, ann_file = _coco(tmp_path)
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(root / "1.png")  # 24 wide, the JSON says 20
    with pytest.raises(ValueError, match=r"(?=.*1\.png)(?=.*24x16)(?=.*20x16)"):  # the file, both sizes
        _module(root, ann_file).setup()


# --- text lists that are not UTF-8 ----------------------------------------------------------------------------


def test_geo_csv_that_is_not_utf8_names_the_file_and_line(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "train.csv").write_bytes("path,lat,lon\na.png,1.0,2.0\ncafé.png,1.0,2.0\n".encode("latin-1"))
    (tmp_path / "test.csv").write_text("path,lat,lon\na.png,1.0,2.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.csv:3: the geolocation CSV is not UTF-8 text \(byte 0xe9"):
        read_geo_csv(tmp_path / "train.csv", tmp_path)
    with pytest.raises(ValueError, match="train.csv:3: .*not UTF-8"):
        GeoCSVDataModule(root=tmp_path, image_size=8, resolution=8, t1=2, t2=1).setup()
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfpath,lat,lon\na.png,1.0,2.0\n")  # UTF-8 with a BOM reads
    assert read_geo_csv(tmp_path / "bom.csv", tmp_path).lines == [2]


def test_celeba_lists_that_are_not_utf8_name_the_file_and_line(tmp_path):
    attributes = tmp_path / "list_attr_celeba.txt"
    attributes.write_bytes("2\nSmiling Young\n000001.jpg 1 -1\n00000\xe9.jpg -1 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt:4: the CelebA attribute list is not UTF-8"):
        read_celeba_attributes(attributes)
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_bytes("000001.jpg 0\n".encode() + "00000\xe9.jpg 2\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"list_eval_partition.txt:2: the CelebA partition list is not UTF-8"):
        read_celeba_partition(partition)
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt:4"):
        CelebADataModule(root=tmp_path, image_size=16, resolution=16, use_cache=False).setup()


def test_lfw_pairs_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes("1\t1\nJos\xe9\t1\t2\nA\t1\tB\t1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"pairs.txt:2: the pairs file is not UTF-8"):
        read_lfw_pairs(pairs)
    pairs.write_text("1\t1\nJosé\t1\t2\nA\t1\tB\t1\n", encoding="utf-8")  # the same names in UTF-8 read
    assert read_lfw_pairs(pairs)[0] == (("José", 1), ("José", 2), True)


# --- LFW pairs with unreadable images (strict=false) keep their folds ---------------------------------------------


def test_lfw_pairs_left_out_under_strict_false_keep_the_ten_folds(tmp_path):
    import torch

    from distill.data.modules.face_folder import FaceFolderDataModule
    from distill.data.readers.pairs import write_lfw_pairs
    from distill.metrics import check_folds
    from distill.tasks.embedding import EmbeddingTask

    rng = np.random.default_rng(0)

    def photo(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path, "JPEG")

    for person in range(2):
        for k in range(2):
            photo(tmp_path / "train" / f"id{person}" / f"{k}.jpg")
    folds = []
    for fold in range(10):  # each fold its own two people: 2 same pairs, then 2 different pairs
        a, b = f"P{fold}_a", f"P{fold}_b"
        for name in (a, b):
            for n in (1, 2):
                photo(tmp_path / "lfw" / name / f"{name}_{n:04d}.jpg")
        folds.append([((a, 1), (a, 2), True), ((b, 1), (b, 2), True),
                      ((a, 1), (b, 1), False), ((a, 2), (b, 2), False)])
    write_lfw_pairs(tmp_path / "lfw" / "pairs.txt", folds)
    (tmp_path / "lfw" / "P0_b" / "P0_b_0002.jpg").write_bytes(b"not a jpeg")  # 2 pairs of fold 0 lose an image
    dm = FaceFolderDataModule(root=tmp_path / "train", lfw_root=tmp_path / "lfw", image_size=16, resolution=16,
                              strict=False, use_cache=False)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        dm.setup()
    test = dm.split("test")
    pair_folds = test.extras["pair_folds"]
    assert dm.num_pair_folds == 10 and len(test.extras["pairs"]) == 38 and dm.summary()["by_split"]["test"][
        "pairs_dropped"] == 2
    assert np.bincount(pair_folds).tolist() == [2] + [4] * 9  # fold 0 lost two pairs, the others are whole
    assert pair_folds.tolist() == sorted(pair_folds.tolist())
    same = test.extras["pairs"][:, 2].astype(bool)
    kept = check_folds(same, 10, pair_folds)
    assert [len(fold) for fold in kept] == [2] + [4] * 9
    consecutive = check_folds(same, 10)  # what counting would do: fold 0 would take two pairs of fold 1
    assert set(pair_folds[consecutive[0]].tolist()) == {0, 1}
    task = EmbeddingTask(n_folds=10)
    task.check_data(dm)  # every fold can be scored
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    scores = task.evaluate(model, dm, resolution=16)
    assert 0.0 <= scores["accuracy"] <= 1.0
