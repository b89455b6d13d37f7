"""Box-head imitation for Faster R-CNN (``box_head_imitation``): the teacher's box head runs on the very regions its
student sampled this step, the loss is KD on each region's classes plus the object classes' box offsets weighted by
the teacher, and a batch whose box head did not run leaves the term out."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from conftest import compose_config
from omegaconf import OmegaConf

from distill.engine.distillation import DistillationModule, parse_loss_terms
from distill.losses.detection import BoxHeadImitationLoss, box_head_imitation
from distill.tasks import DetectionTask
from distill.tasks.base import GROUND_TRUTH

OPTIONS = {"rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 50, "box_batch_size_per_image": 16,
           "rpn_batch_size_per_image": 32, "roi_output_size": 7}
LAYER = "roi_heads.box_predictor"


def _task():
    return DetectionTask({"kind": "faster_rcnn", "options": OPTIONS})


def _student(task, resolution=96):
    torch.manual_seed(0)
    model, _, _ = task.build_model({"_target_": "distill.models.MobileNetV1", "width_multiplier": 0.25},
                                   num_classes=2, resolution=resolution)
    return model


def _batch(size=96, labelled=(True, True)):
    boxes = [torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 0.8]]) * size,
             torch.tensor([[0.3, 0.3, 0.7, 0.9]]) * size]
    labels = [torch.tensor([1, 2]), torch.tensor([2])]
    targets = [{"boxes": b if known else torch.zeros(0, 4), "labels": l if known else torch.zeros(0, dtype=torch.int64),
                "labelled": known} for b, l, known in zip(boxes, labels, labelled)]
    torch.manual_seed(5)
    return [torch.rand(3, size, size), torch.rand(3, size, size)], targets


def _frozen_statistics(model):
    """Training mode (the box head samples regions), BatchNorm on its running statistics (a deterministic output)."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    return model


def test_the_loss_against_a_hand_computation():
    # two regions, classes (background, a, b). Region 0: teacher (1/2, 1/4, 1/4) against a uniform student; region 1:
    # both (1, 1, 1)/3. The KD is the mean of KL(teacher || student) over the regions.
    t_logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    s_logits = torch.zeros(2, 3)
    kl = 0.5 * math.log(0.5 / (1 / 3)) + 2 * 0.25 * math.log(0.25 / (1 / 3))
    same_boxes = torch.zeros(2, 12)
    assert box_head_imitation((s_logits, same_boxes), (t_logits, same_boxes)).item() == pytest.approx(kl / 2, rel=1e-5)
    # box offsets: student off by 1 (smooth L1 with beta 1/9: 1 - 1/18 per coordinate) on class b's offsets only.
    # Weights are the teacher's probabilities of a and b: 1/4 + 1/4 on region 0, 1/3 + 1/3 on region 1; only class
    # b's (1/4 and 1/3) carry the error, 4 coordinates each.
    student_boxes = torch.zeros(2, 3, 4)
    student_boxes[:, 2] = 1.0
    expected_box = (0.25 + 1 / 3) * 4 * (1 - 1 / 18) / (0.5 + 2 / 3)
    value = box_head_imitation((t_logits, student_boxes.reshape(2, 12)), (t_logits, same_boxes))
    assert value.item() == pytest.approx(expected_box, rel=1e-5)
    # the background's offsets (class 0) are never compared
    student_boxes = torch.zeros(2, 3, 4)
    student_boxes[:, 0] = 5.0
    assert box_head_imitation((t_logits, student_boxes.reshape(2, 12)), (t_logits, same_boxes)).item() == 0.0
    # at temperature 2, the KD is taken on the softened distributions and scaled by 4
    soft = torch.softmax(t_logits[0] / 2, dim=-1)
    kl_soft = float((soft * (soft.log() - math.log(1 / 3))).sum())
    assert BoxHeadImitationLoss(temperature=2.0)((s_logits, same_boxes), (t_logits, same_boxes)).item() == \
        pytest.approx(4 * kl_soft / 2, rel=1e-5)
    with pytest.raises(ValueError, match="same anchors"):
        box_head_imitation((s_logits[:1], same_boxes[:1]), (t_logits, same_boxes))
    with pytest.raises(ValueError, match="roi_heads.box_predictor"):
        BoxHeadImitationLoss()({"cls_logits": s_logits}, {"cls_logits": t_logits})


def test_the_teacher_runs_its_box_head_on_the_regions_the_student_sampled():
    task = _task()
    student = _frozen_statistics(_student(task))
    teacher = copy.deepcopy(student).eval()
    terms = {"ground_truth": {"weight": 1.0}, "box_head_imitation": {"student": LAYER, "teacher": LAYER}}
    module = DistillationModule(student, teacher, task, parse_loss_terms(terms),
                                optimizer=functools.partial(torch.optim.SGD, lr=0.01), student_resolution=96)
    module.log = lambda *args, **kwargs: None
    _frozen_statistics(module.student)
    seen = []
    handle = teacher.roi_heads.box_roi_pool.register_forward_pre_hook(lambda _m, args: seen.append(args[1]))
    torch.manual_seed(1)
    losses = module.compute_losses(_batch())
    handle.remove()
    # 16 regions sampled per image; the teacher got those regions, and, being the student's copy, scores them alike
    assert [len(boxes) for boxes in seen[-1]] == [16, 16]
    assert losses["box_head_imitation"].item() == pytest.approx(0.0, abs=1e-5)
    # another teacher disagrees, and the gradient reaches the student's box head
    torch.manual_seed(7)
    other = _student(task)
    for parameter in other.roi_heads.parameters():
        parameter.data.normal_(0, 0.5)
    module.teacher = other.eval()
    module._teacher_features.remove()
    from distill.engine.features import FeatureRecorder
    module._teacher_features = FeatureRecorder(other, module.teacher_layers, model_label="teacher")
    torch.manual_seed(1)
    loss = module.compute_losses(_batch())["box_head_imitation"]
    assert loss.item() > 0.01
    loss.backward()
    assert student.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("terms, runs", [
    ({"feature_imitation": {"student": "backbone", "teacher": "backbone", "mask": True},
      "head_imitation": {"student": "rpn.head", "teacher": "rpn.head"}}, False),  # the recipe's default terms
    ({"box_head_imitation": {"student": LAYER, "teacher": LAYER}}, True),
    ({"box_features": {"name": "fitnet", "student": "roi_heads.box_head", "teacher": "roi_heads.box_head"}}, True),
])
def test_the_teacher_runs_its_box_head_only_for_a_term_on_it(terms, runs):
    """Without a term on the teacher's ``roi_heads`` its box head (most of a teacher forward) is not run at all."""
    task = _task()
    student = _frozen_statistics(_student(task))
    teacher = copy.deepcopy(student).eval()
    module = DistillationModule(student, teacher, task, parse_loss_terms({"ground_truth": {"weight": 1.0}, **terms}),
                                optimizer=functools.partial(torch.optim.SGD, lr=0.01), student_resolution=96)
    module.log = lambda *args, **kwargs: None
    assert module.teacher_reads_context is runs
    calls = []
    handle = teacher.roi_heads.box_head.register_forward_hook(lambda *_args: calls.append(1))
    torch.manual_seed(1)
    losses = module.compute_losses(_batch())
    handle.remove()
    assert bool(calls) is runs and set(losses) == {"ground_truth", *terms}


def test_regions_are_scaled_to_a_teacher_that_sees_a_larger_input():
    task = _task()
    student = _frozen_statistics(_student(task, resolution=96))
    teacher = _student(task, resolution=192).eval()
    step = task.student_step(student, _batch(), with_losses=True)
    regions = step.context["regions"]
    assert regions["rows"] == [0, 1] and regions["image_sizes"] == [(96, 96), (96, 96)]
    seen = []
    handle = teacher.roi_heads.box_roi_pool.register_forward_pre_hook(lambda _m, args: seen.append(args))
    with torch.no_grad():
        task.teacher_forward(teacher, _batch(), step.context)
    handle.remove()
    (_, boxes, sizes), = seen
    assert sizes == [(192, 192), (192, 192)]
    for given, sampled in zip(boxes, regions["boxes"]):
        torch.testing.assert_close(given, sampled * 2)


def test_a_partly_labelled_batch_imitates_on_its_labelled_images_and_an_unlabelled_one_leaves_the_term_out():
    task = _task()
    student = _frozen_statistics(_student(task))
    teacher = _student(task).eval()
    terms = {"ground_truth": {"weight": 1.0}, "head_imitation": {"student": "rpn.head", "teacher": "rpn.head"},
             "box_head_imitation": {"student": LAYER, "teacher": LAYER}}
    module = DistillationModule(student, teacher, task, parse_loss_terms(terms),
                                optimizer=functools.partial(torch.optim.SGD, lr=0.01), student_resolution=96)
    module.log = lambda *args, **kwargs: None
    _frozen_statistics(module.student)
    seen = []
    handle = teacher.roi_heads.box_roi_pool.register_forward_pre_hook(lambda _m, args: seen.append(args))
    torch.manual_seed(1)
    losses = module.compute_losses(_batch(labelled=(False, True)))
    features, boxes, sizes = seen[-1]
    assert len(boxes) == 1 and len(boxes[0]) == 16 and features["0"].shape[0] == 1  # the labelled image's only
    assert set(losses) == {"ground_truth", "head_imitation", "box_head_imitation"}
    # no labelled image: the box head runs on neither detector, the term sits this batch out (not last batch's
    # outputs), and the other terms go on
    count = len(seen)
    losses = module.compute_losses(_batch(labelled=(False, False)))
    assert len(seen) == count
    assert set(losses) == {"ground_truth", "head_imitation"}
    handle.remove()


def test_a_layer_that_did_not_run_is_an_error_for_a_term_that_needs_it_every_batch():
    task = _task()
    student = _student(task)
    teacher = _student(task).eval()
    terms = {"ground_truth": {"weight": 1.0}, "head_imitation": {"student": LAYER, "teacher": LAYER}}
    module = DistillationModule(student, teacher, task, parse_loss_terms(terms),
                                optimizer=functools.partial(torch.optim.SGD, lr=0.01), student_resolution=96)
    module.log = lambda *args, **kwargs: None
    module.train()
    with pytest.raises(RuntimeError, match="head_imitation: the student's layer 'roi_heads.box_predictor' did not run"):
        module.compute_losses(_batch(labelled=(False, False)))


@pytest.mark.parametrize("overrides, reads", [([], False), (["detector.box_head_imitation_weight=0.25"], True),
                                              (["detector=ssd"], False)])
def test_the_recipes_teacher_reads_the_students_regions_only_with_the_box_head_term(overrides, reads):
    """The coco recipe's default terms leave the teacher's box head out of every distillation step."""
    cfg = compose_config(["recipe=coco", "detector=faster_rcnn", *overrides])
    specs = parse_loss_terms(OmegaConf.to_container(cfg.loss.terms, resolve=True))
    layers = {spec.teacher for spec in specs if spec.name != GROUND_TRUTH}
    assert "backbone.early" in layers or cfg.detector.kind == "ssd"
    assert DetectionTask({"kind": cfg.detector.kind, "options": {}}).teacher_reads_context(layers) is reads
