"""Detection images without boxes for the student (``data.num_unlabelled``, ``data.unlabelled_ann_file``): they
join the student's split only, the box losses of both detectors leave them out (Faster R-CNN's proposal and box
losses run on a batch's labelled images only), and the map imitation and the head imitation cover them whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data.modules.coco import CocoDataModule, SyntheticCocoDataModule
from distill.data.readers.coco import load_coco
from distill.models.detection.detectors import faster_rcnn_partly_labelled_losses
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


def _faster_rcnn_task(**options):
    return DetectionTask({"kind": "faster_rcnn", "options": {"roi_output_size": 7, **options}})


def _frozen_statistics(model):
    """BatchNorm on its running statistics: the batch's other images do not move an image's output."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    return model


def _scene(seed):
    torch.manual_seed(seed)
    return torch.rand(3, 64, 64)


EMPTY = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
BOXES = [{"boxes": torch.tensor([[6.0, 8.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
         {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0], [2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([2, 1])}]


def test_an_image_without_boxes_adds_nothing_to_the_faster_rcnn_losses():
    # every anchor and every proposal sampled (batches far above their counts), so no draw differs between the runs
    task = _faster_rcnn_task(rpn_batch_size_per_image=100_000, box_batch_size_per_image=100_000)
    student = _frozen_statistics(_student(task).train())
    labelled = [_scene(1), _scene(2)]
    alone = student(labelled, BOXES)
    batch = ([labelled[0], _scene(3), labelled[1]],
             [{**BOXES[0], "labelled": True}, {**EMPTY, "labelled": False}, {**BOXES[1], "labelled": True}])
    joined = task.student_step(student, batch, with_losses=True).losses
    assert set(joined) == set(alone) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    for name, value in alone.items():
        assert value.item() > 0
        assert joined[name].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-7), name
    # the same image taken as labelled (no boxes: pure background) changes the losses: what the flag prevents
    as_background = student([labelled[0], batch[0][1], labelled[1]], [BOXES[0], EMPTY, BOXES[1]])
    assert as_background["loss_box_reg"].item() < 0.9 * alone["loss_box_reg"].item()  # over more regions


def test_the_imitated_layers_see_every_image_of_a_partly_labelled_batch():
    task = _faster_rcnn_task()
    student = _student(task).train()
    seen = {}
    for name in ("backbone", "rpn.head"):
        student.get_submodule(name).register_forward_hook(
            lambda _module, _inputs, output, name=name: seen.__setitem__(name, output))
    batch = ([_scene(1), _scene(2), _scene(3)],
             [{**BOXES[0], "labelled": True}, {**EMPTY, "labelled": False}, {**BOXES[1], "labelled": True}])
    step = task.student_step(student, batch, with_losses=True)
    assert seen["backbone"].shape[0] == 3
    objectness, deltas = seen["rpn.head"]
    assert objectness[0].shape[0] == 3 and deltas[0].shape[0] == 3
    height, width = step.context["image_size"]
    torch.testing.assert_close(step.context["boxes"][1], torch.tensor([[0.0, 0.0, float(width), float(height)]]))
    sum(step.losses.values()).backward()  # the box losses reach the backbone through the labelled rows
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.backbone.parameters())

    unlabelled = ([_scene(4), _scene(5)], [{**EMPTY, "labelled": False}, {**EMPTY, "labelled": False}])
    step = task.student_step(student, unlabelled, with_losses=True)
    assert set(step.losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(value.item() == 0.0 for value in step.losses.values())
    assert seen["backbone"].shape[0] == 2 and seen["rpn.head"][0][0].shape[0] == 2


def test_the_no_teacher_twin_steps_over_a_batch_without_boxes():
    from distill.engine.distillation import DistillationModule, parse_loss_terms

    task = _faster_rcnn_task()
    student = _student(task)
    module = DistillationModule(student, None, task, parse_loss_terms({"ground_truth": {}}),
                                optimizer=torch.optim.SGD, student_resolution=64)
    module.train()
    module.log = lambda *args, **kwargs: None  # no trainer attached
    batch = ([_scene(4), _scene(5)], [{**EMPTY, "labelled": False}, {**EMPTY, "labelled": False}])
    loss = module.training_step(batch, 0)
    assert loss.item() == 0.0
    loss.backward()  # nothing to learn, but the step runs


def test_partly_labelled_losses_need_one_flag_per_image():
    student = _student(_faster_rcnn_task()).train()
    with pytest.raises(ValueError, match="2 images, 2 targets and 1 labelled flags"):
        faster_rcnn_partly_labelled_losses(student, [_scene(1), _scene(2)], BOXES, [True])


def test_both_detectors_take_unlabelled_images_but_the_box_losses_need_some_boxes(tmp_path):
    extra = SyntheticCocoDataModule(tmp_path / "cache", num_unlabelled=2, **SMALL)
    _ssd_task().check_ground_truth(extra)
    _faster_rcnn_task().check_ground_truth(extra)

    class NoneLabelled:  # e.g. real data whose student split is all image-info images (the synthetic data refuse it)
        def summary(self):
            return {"splits": {"teacher_train": 4, "train": 0, "test": 2}, "unlabelled": 2}

    none_labelled = NoneLabelled()
    for task in (_ssd_task(), _faster_rcnn_task()):
        with pytest.raises(ValueError, match=r"box losses\) needs images with boxes in the student's split, but it "
                                             r"holds none \(only 2 without boxes\)"):
            task.check_ground_truth(none_labelled)
