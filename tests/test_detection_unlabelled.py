"""Detection images without boxes for the student (``data.num_unlabelled``, ``data.unlabelled_ann_file``): they
join the student's split only, SSD's box losses leave them out, the map imitation covers them whole, and a
detector that would take them for background refuses them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data.modules.coco import CocoDataModule, SyntheticCocoDataModule
from distill.data.readers.coco import load_coco
from distill.tasks import DetectionTask

SMALL = dict(num_classes=2, image_size=40, num_teacher_train=4, num_train=3, num_test=2, resolution=40, batch_size=2,
             flip=False)


def _ssd_task():
    return DetectionTask({"kind": "ssd", "options": {}})


def _student(task, resolution=64):
    torch.manual_seed(0)
    model, _, _ = task.build_model({"_target_": "distill.models.MobileNetV1", "width_multiplier": 0.25},
                                   num_classes=2, resolution=resolution)
    return model


def test_an_image_without_boxes_adds_nothing_to_the_ssd_box_losses():
    student = _student(_ssd_task())
    student.train()
    for module in student.modules():  # per-image statistics: the batch's other images do not move an image's output
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    torch.manual_seed(3)
    labelled = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[6.0, 8.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0], [2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([2, 1])}]
    alone = student(labelled, targets)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    joined = student([labelled[0], torch.rand(3, 64, 64), labelled[1]], [targets[0], empty, targets[1]])
    for name in ("bbox_regression", "classification"):
        assert alone[name].item() > 0
        assert joined[name].item() == pytest.approx(alone[name].item(), rel=1e-5), name


def test_the_map_imitation_covers_an_unlabelled_image_whole():
    task = _ssd_task()
    student = _student(task)
    box = torch.tensor([[8.0, 8.0, 24.0, 32.0]])
    batch = ([torch.rand(3, 64, 64), torch.rand(3, 64, 64)],
             [{"boxes": box, "labels": torch.tensor([1]), "labelled": True},
              {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "labelled": False}])
    step = task.student_step(student.train(), batch, with_losses=True)
    height, width = step.context["image_size"]
    scale = torch.tensor([width / 64, height / 64, width / 64, height / 64])
    torch.testing.assert_close(step.context["boxes"][0], box * scale)
    torch.testing.assert_close(step.context["boxes"][1], torch.tensor([[0.0, 0.0, float(width), float(height)]]))


def test_unlabelled_scenes_join_the_student_split_only(tmp_path):
    plain = SyntheticCocoDataModule(tmp_path / "cache", **SMALL)
    extra = SyntheticCocoDataModule(tmp_path / "cache", num_unlabelled=5, **SMALL)
    assert extra.summary()["splits"] == plain.summary()["splits"] and extra.summary()["unlabelled"] == 5
    assert plain.summary()["unlabelled"] == 0
    assert extra.fingerprint() == plain.fingerprint()  # the teacher's key: unlabelled scenes do not shape it
    for name in ("teacher_train", "train", "test"):  # the labelled scenes are those of a run without
        for one, other in zip(plain.splits[name], extra.splits[name]):
            np.testing.assert_array_equal(np.asarray(Image.open(one.path)), np.asarray(Image.open(other.path)))
            np.testing.assert_array_equal(one.boxes, other.boxes)
    dataset = extra.train_dataloader().dataset
    assert len(dataset) == 3 + 5 and len(plain.train_dataloader().dataset) == 3
    flags = [dataset[i][1]["labelled"] for i in range(len(dataset))]
    assert flags == [True] * 3 + [False] * 5
    assert all(len(dataset[i][1]["boxes"]) == 0 for i in range(3, 8))
    assert len(extra.test_dataloader().dataset) == 2 and len(extra.teacher_train_dataloader().dataset) == 4
    with pytest.raises(ValueError, match="num_unlabelled must be >= 0"):
        SyntheticCocoDataModule(tmp_path / "cache", num_unlabelled=-1, **SMALL)


def test_an_image_info_file_gives_unlabelled_images(tmp_path):
    root = tmp_path / "unlabeled2017"
    root.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
    info = tmp_path / "image_info_unlabeled2017.json"  # COCO's layout: images and categories, no annotations
    info.write_text(json.dumps({"images": [{"id": 5 + i, "file_name": f"{i}.png", "width": 32, "height": 24}
                                           for i in range(2)],
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    index = load_coco(info, root, unlabelled=True)
    assert [image.labelled for image in index.images] == [False, False]
    assert all(len(image.boxes) == 0 for image in index.images)
    with pytest.raises(ValueError, match="not a COCO instances file: no list \\['annotations'\\]"):
        load_coco(info, root)
    (tmp_path / "bad.json").write_text(json.dumps({"categories": []}))
    with pytest.raises(ValueError, match="bad.json is not a COCO image-info file: no list \\['images'\\]"):
        load_coco(tmp_path / "bad.json", root, unlabelled=True)

    # a real data set: the image-info file's images are added to the student's split
    labelled = tmp_path / "train"
    labelled.mkdir()
    images = []
    for i in range(4):
        Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(labelled / f"{i}.png")
        images.append({"id": 1 + i, "file_name": f"{i}.png", "width": 32, "height": 24})
    anns = [{"id": 1 + i, "image_id": 1 + i, "category_id": 1, "bbox": [2, 2, 10, 10], "iscrowd": 0} for i in range(4)]
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns,
                                    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    module = CocoDataModule(labelled, ann_file, test_every=2, unlabelled_ann_file=str(info),
                            unlabelled_root=str(root), flip=False)
    assert module.summary()["unlabelled"] == 2 and module.summary()["splits"]["train"] == 2
    assert len(module.train_dataloader().dataset) == 4
    without = CocoDataModule(labelled, ann_file, test_every=2, flip=False)
    assert module.fingerprint() == without.fingerprint()


def test_faster_rcnn_refuses_unlabelled_images(tmp_path):
    extra = SyntheticCocoDataModule(tmp_path / "cache", num_unlabelled=2, **SMALL)
    with pytest.raises(ValueError, match="2 unlabelled images, but detector=faster_rcnn would train on them as "
                                         "background"):
        DetectionTask({"kind": "faster_rcnn", "options": {}}).check_ground_truth(extra)
    _ssd_task().check_ground_truth(extra)  # SSD leaves them out of its box losses
    DetectionTask({"kind": "faster_rcnn", "options": {}}).check_ground_truth(
        SyntheticCocoDataModule(tmp_path / "cache", **SMALL))
