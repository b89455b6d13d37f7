"""COCO-format detection data: the checked loader, the synthetic scene writer, the dataset and the data modules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data.modules.coco import CocoDataModule, SyntheticCocoDataModule
from distill.data.readers.coco import CocoDetectionDataset, collate_detection, load_coco
from distill.data.synthetic.coco_scenes import SHAPES, render_scene, shape_mask, write_synthetic_coco


def _write_dataset(tmp_path, annotations, *, images=None, categories=None, sizes=((40, 30), (20, 20))):
    """Two images (width x height) on disk and an instances JSON with the given annotations."""
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    if images is None:
        images = []
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(root / f"im{i}.png")
            images.append({"id": 10 + i, "file_name": f"im{i}.png", "width": w, "height": h})
    categories = categories or [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root, ann_file


def _ann(ann_id, image_id=10, category_id=3, bbox=(1, 2, 10, 5), iscrowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox), "iscrowd": iscrowd}


def test_loader_maps_categories_to_contiguous_labels_and_boxes_to_xyxy(tmp_path):
    root, ann_file = _write_dataset(tmp_path, [
        _ann(1, bbox=(1, 2, 10, 5)), _ann(2, category_id=7, bbox=(0, 0, 40, 30)),
        _ann(3, image_id=11, category_id=7, bbox=(2, 2, 4, 4), iscrowd=1)])
    index = load_coco(ann_file, root)
    assert index.category_ids == [3, 7] and index.class_names == ["three", "seven"] and index.num_classes == 2
    first, second = index.images
    assert first.id == 10 and (first.width, first.height) == (40, 30)
    np.testing.assert_allclose(first.boxes, [[1, 2, 11, 7], [0, 0, 40, 30]])
    assert first.labels.tolist() == [1, 2]  # category 3 -> label 1, category 7 -> label 2
    assert len(second.boxes) == 0 and second.crowd_labels.tolist() == [2]  # crowd kept apart
    np.testing.assert_allclose(second.crowd_boxes, [[2, 2, 6, 6]])
    assert index.num_boxes == 2


@pytest.mark.parametrize("bbox", [(35, 2, 10, 5), (-3, 0, 5, 5), (0, 26, 4, 6)])
def test_box_outside_its_image_names_the_annotation_and_file(tmp_path, bbox):
    root, ann_file = _write_dataset(tmp_path, [_ann(1), _ann(42, bbox=bbox)])
    with pytest.raises(ValueError, match=r"annotation id 42 .*instances\.json.*outside the image \(40x30"):
        load_coco(ann_file, root)


def test_box_overhanging_by_rounding_is_clipped(tmp_path):
    root, ann_file = _write_dataset(tmp_path, [_ann(1, bbox=(30, 20, 10.5, 10.4))])
    np.testing.assert_allclose(load_coco(ann_file, root).images[0].boxes, [[30, 20, 40, 30]])


@pytest.mark.parametrize("bbox", [(1, 1, 0, 5), (1, 1, 3, -2), (1, 1, 3), "1,1,3,3"])
def test_degenerate_or_malformed_box_is_an_error(tmp_path, bbox):
    root, ann_file = _write_dataset(tmp_path, [_ann(5, bbox=bbox if isinstance(bbox, str) else list(bbox))])
    with pytest.raises(ValueError, match="annotation id 5 "):
        load_coco(ann_file, root)


def test_unknown_category_names_the_annotation_and_known_ids(tmp_path):
    root, ann_file = _write_dataset(tmp_path, [_ann(1), _ann(9, category_id=99)])
    with pytest.raises(ValueError, match=r"annotation id 9 in .*instances\.json: unknown category_id 99.*\[3, 7\]"):
        load_coco(ann_file, root)


def test_annotation_of_an_unlisted_image_is_an_error(tmp_path):
    root, ann_file = _write_dataset(tmp_path, [_ann(1), _ann(12, image_id=555)])
    with pytest.raises(ValueError, match=r"annotation id 12 in .*instances\.json: image_id 555 is not in 'images'"):
        load_coco(ann_file, root)


def test_missing_image_file_names_the_file_and_the_annotation_file(tmp_path):
    root, ann_file = _write_dataset(tmp_path, [_ann(1)])
    (root / "im1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"im1\.png \(image id 11, listed in .*instances\.json\) not found"):
        load_coco(ann_file, root)
    assert len(load_coco(ann_file, root, check_files=False).images) == 2


def test_unreadable_or_incomplete_annotation_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_coco(tmp_path / "nothing.json", tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        load_coco(broken, tmp_path)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match=r"partial.json is not a COCO instances file: no list \['categories'\]"):
        load_coco(partial, tmp_path)


def test_shape_masks_touch_their_box_and_differ_by_class():
    grid = np.linspace(-0.99, 0.99, 41)
    u, v = np.meshgrid(grid, grid)
    for kind in SHAPES:
        mask = shape_mask(kind, u, v)
        assert mask[:, 0].any() or mask[-1, :].any(), kind  # reaches the box's border
    assert shape_mask("circle", np.array(0.0), np.array(0.0)) and not shape_mask("circle", np.array(0.9), np.array(0.9))
    assert shape_mask("square", np.array(0.9), np.array(0.9)) and not shape_mask("diamond", np.array(0.6), np.array(0.6))
    assert not shape_mask("ring", np.array(0.0), np.array(0.0)) and shape_mask("ring", np.array(0.8), np.array(0.0))
    assert shape_mask("triangle", np.array(0.0), np.array(-0.9)) and not shape_mask("triangle", np.array(0.5), np.array(-0.5))
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        shape_mask("hexagon", u, v)


def test_rendered_scene_boxes_are_tight_around_visible_shapes():
    rng = np.random.default_rng(3)
    image, objects = render_scene(rng, size=64, num_classes=4, max_objects=4, min_scale=0.2, max_scale=0.5)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and objects
    for obj in objects:
        x, y, w, h = obj["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w >= 1 and h >= 1
        assert 0 < obj["area"] <= w * h and 0 <= obj["label"] < 4
        assert all(float(v).is_integer() for v in obj["bbox"])  # tight boxes around whole pixels


def test_synthetic_coco_is_written_once_as_valid_coco_files(tmp_path):
    files = write_synthetic_coco(tmp_path / "set", {"train": 6, "test": 3}, num_classes=3, image_size=48, seed=1)
    index = load_coco(files["train"], tmp_path / "set" / "images")  # the checked loader accepts it
    assert len(index.images) == 6 and index.class_names == ["circle", "square", "triangle"] and index.num_boxes >= 6
    assert {im.labels.max() for im in index.images if len(im.labels)} <= {1, 2, 3}
    stamp = files["train"].stat().st_mtime_ns
    again = write_synthetic_coco(tmp_path / "set", {"train": 6, "test": 3}, num_classes=3, image_size=48, seed=1)
    assert again == files and files["train"].stat().st_mtime_ns == stamp  # a complete folder is reused
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    with pytest.raises(ValueError, match="num_classes must be 1..6"):
        write_synthetic_coco(tmp_path / "bad", {"train": 1}, num_classes=9)


def test_flipped_samples_keep_boxes_on_their_objects(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[4:10, 2:8] = 255  # a white object at x 2..8, y 4..10
    Image.fromarray(pixels).save(root / "a.png")
    ann_file = tmp_path / "a.json"
    ann_file.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
                                    "annotations": [_ann(1, image_id=1, category_id=1, bbox=(2, 4, 6, 6))],
                                    "categories": [{"id": 1, "name": "box"}]}))
    dataset = CocoDetectionDataset(load_coco(ann_file, root).images, flip=True, seed=3)
    seen = set()
    for view in range(12):
        image, target = dataset[(0, view)]
        x0, y0, x1, y1 = (int(v) for v in target["boxes"][0])
        seen.add(x0)
        assert image.shape == (3, 20, 30) and image.max() == 1.0
        assert image[0, y0:y1, x0:x1].min() == 1.0 and image[0].sum() == 36  # the box covers all white pixels
        assert (x0 == 22) == dataset.flipped(0, view)
        again, _ = dataset[(0, view)]  # a function of (seed, view, index): the same every time it is read
        assert torch.equal(image, again)
    assert seen == {2, 22}  # both orientations occurred across views


def test_data_modules_split_and_batch(tmp_path):
    root, ann_file = _write_dataset(tmp_path, [_ann(1)], sizes=[(16, 16)] * 5)
    module = CocoDataModule(root, ann_file, test_every=2, batch_size=2, flip=False)
    assert module.summary()["splits"] == {"teacher_train": 3, "train": 3, "test": 2}
    images, targets = next(iter(module.train_dataloader()))
    assert len(images) == len(targets) == 2 and images[0].shape == (3, 16, 16) and "boxes" in targets[0]
    with pytest.raises(ValueError, match="data.root and data.ann_file are required"):
        CocoDataModule(None, None)

    synthetic = SyntheticCocoDataModule(tmp_path / "cache", num_classes=2, image_size=40, num_teacher_train=4,
                                        num_train=3, num_test=2, resolution=40, batch_size=2)
    summary = synthetic.summary()
    assert summary["splits"] == {"teacher_train": 4, "train": 3, "test": 2} and summary["class_names"] == ["circle", "square"]
    assert synthetic.folder.parent == tmp_path / "cache" / "synthetic_coco"
    test_images, _ = collate_detection([synthetic.test_dataloader().dataset[i] for i in range(2)])
    assert [tuple(im.shape) for im in test_images] == [(3, 40, 40)] * 2
