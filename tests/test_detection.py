"""Detection models, cost, mAP, feature imitation and checkpoints (tiny widths: fast on a CPU)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.ssd import SSD

from distill import load_student
from distill.core.cost import profile
from distill.losses.detection import (
    FeatureImitation,
    HeadImitationLoss,
    object_mask,
    rpn_head_imitation,
    ssd_head_imitation,
)
from distill.metrics.detection import mean_average_precision
from distill.models.checkpoint import read_student_checkpoint, save_student
from distill.models.detection.backbones import build_trunk
from distill.models.detection.cost import detector_cost, table_13_rows
from distill.models.detection.detectors import build_detector

pytest.importorskip("pycocotools")

FAST_RCNN = {"rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 50, "box_batch_size_per_image": 16,
             "rpn_batch_size_per_image": 32}


def _targets(size: int):
    return [{"boxes": torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 0.8]]) * size, "labels": torch.tensor([1, 2])},
            {"boxes": torch.tensor([[0.3, 0.3, 0.7, 0.9]]) * size, "labels": torch.tensor([2])}]


# --- mAP on hand-made cases ------------------------------------------------------------------------------------------
def _box(*xyxy):
    return torch.tensor([list(xyxy)], dtype=torch.float32)


def test_perfect_box_scores_one():
    target = {"boxes": _box(10, 10, 50, 40), "labels": torch.tensor([1])}
    prediction = {"boxes": _box(10, 10, 50, 40), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    result = mean_average_precision([prediction], [target], ["thing"])
    assert result["map"] == pytest.approx(1.0) and result["map_50"] == pytest.approx(1.0)
    assert result["ap_per_class"] == {"thing": pytest.approx(1.0)}


def test_box_at_iou_062_counts_at_three_of_ten_thresholds():
    # ground truth 10x10, prediction 10x6.2 inside it: IoU = 62 / 100, a match at IoU thresholds .50, .55, .60 only
    target = {"boxes": _box(0, 0, 10, 10), "labels": torch.tensor([1])}
    prediction = {"boxes": _box(0, 0, 10, 6.2), "scores": torch.tensor([0.8]), "labels": torch.tensor([1])}
    result = mean_average_precision([prediction], [target])
    assert result["map_50"] == pytest.approx(1.0) and result["map_75"] == pytest.approx(0.0)
    assert result["map"] == pytest.approx(0.3)


def test_wrong_class_scores_zero_and_crowd_regions_are_ignored():
    target = {"boxes": _box(0, 0, 10, 10), "labels": torch.tensor([1])}
    wrong = {"boxes": _box(0, 0, 10, 10), "scores": torch.tensor([0.9]), "labels": torch.tensor([2])}
    assert mean_average_precision([wrong], [target])["map"] == pytest.approx(0.0)
    # a higher-scored detection on another region: a false positive ranked first halves the precision (AP 0.5) ...
    predictions = {"boxes": torch.tensor([[20.0, 20, 30, 30], [0, 0, 10, 10]]), "scores": torch.tensor([0.95, 0.9]),
                   "labels": torch.tensor([1, 1])}
    assert mean_average_precision([predictions], [target])["map"] == pytest.approx(0.5)
    # ... unless that region is a crowd annotation, which the COCO evaluation ignores
    crowd_target = {**target, "crowd_boxes": _box(20, 20, 30, 30), "crowd_labels": torch.tensor([1])}
    assert mean_average_precision([predictions], [crowd_target])["map"] == pytest.approx(1.0)


# --- backbones and detectors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs,channels", [("mobilenet_v1", {"width_multiplier": 0.25}, (64, 128, 256)),
                                                  ("resnet", {"model_name": "resnet10t"}, (128, 256, 512))])
def test_trunks_cut_at_strides_8_16_and_32(name, kwargs, channels):
    trunk = build_trunk(name, **kwargs)
    with torch.no_grad():
        early = trunk.early.eval()(torch.zeros(1, 3, 100, 100))
        body = trunk.body.eval()(early)
        top = trunk.top.eval()(body)
    assert (trunk.early_channels, trunk.body_channels, trunk.top_channels) == channels
    # ceil(100 / 8), ceil(100 / 16), ceil(100 / 32)
    assert early.shape[1:] == (channels[0], 13, 13) and body.shape[1:] == (channels[1], 7, 7)
    assert top.shape[1:] == (channels[2], 4, 4)


def test_bad_backbone_and_detector_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_trunk("vgg")
    with pytest.raises(ValueError, match="not a ResNet-style timm model"):
        build_trunk("resnet", model_name="mobilenetv2_050")
    with pytest.raises(ValueError, match="detector.kind must be one of"):
        build_detector("yolo", backbone="mobilenet_v1", num_classes=2, size=64)
    with pytest.raises(ValueError, match=r"unknown detector.ssd option\(s\) \['roi_output_size'\]"):
        build_detector("ssd", backbone="mobilenet_v1", num_classes=2, size=64, options={"roi_output_size": 7})


@pytest.mark.parametrize("kind,size", [("ssd", 300), ("faster_rcnn", 300), ("faster_rcnn", 600)])
def test_detector_trains_and_detects_at_paper_sizes(kind, size):
    torch.manual_seed(0)
    options = FAST_RCNN if kind == "faster_rcnn" else {}
    detector = build_detector(kind, backbone="mobilenet_v1", num_classes=2, size=size,
                              backbone_kwargs={"width_multiplier": 0.25}, options=options)
    assert isinstance(detector, SSD if kind == "ssd" else FasterRCNN)
    images = [torch.rand(3, size, size), torch.rand(3, size, size)]
    losses = detector.train()(images, _targets(size))
    expected = {"bbox_regression", "classification"} if kind == "ssd" else \
        {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    first_conv = detector.backbone.early[0].conv.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    with torch.no_grad():
        detections = detector.eval()(images[:1])
    assert set(detections[0]) == {"boxes", "scores", "labels"} and len(detections[0]["boxes"]) <= 100
    if len(detections[0]["boxes"]):
        assert detections[0]["boxes"].min() >= 0 and detections[0]["boxes"].max() <= size
    if kind == "ssd":  # maps of 19, 10, 5, 3, 2, 1 cells: four extra layers, as in the paper's SSD 300
        assert len(detector.backbone.out_channels) == 6
    else:
        assert detector.rpn._post_nms_top_n["testing"] == 300 and detector.transform.min_size == (size,)


def test_ssd_cost_path_equals_the_end_to_end_profile():
    detector = build_detector("ssd", backbone="mobilenet_v1", num_classes=3, size=128, backbone_kwargs={"width_multiplier": 0.25})
    whole = profile(detector, input_size=(3, 128, 128))
    path = detector_cost(detector, 128)
    assert (path.mult_adds, path.params) == (whole.mult_adds, whole.params)


def test_faster_rcnn_cost_counts_the_box_head_once_per_proposal():
    detector = build_detector("faster_rcnn", backbone="mobilenet_v1", num_classes=3, size=160,
                              backbone_kwargs={"width_multiplier": 0.25}, options={"roi_output_size": 14})
    head = detector.roi_heads
    linears = (head.box_predictor.cls_score, head.box_predictor.bbox_pred)
    per_crop_mult_adds = (profile(head.box_head, (detector.backbone.out_channels, 14, 14)).mult_adds
                          + sum(linear.in_features * linear.out_features for linear in linears))
    cost_300, cost_100 = detector_cost(detector, 160), detector_cost(detector, 160, num_proposals=100)
    assert cost_300.mult_adds - cost_100.mult_adds == 200 * per_crop_mult_adds


def test_paper_scale_cost_matches_table_13():
    """1.0 MobileNet with COCO's 90 classes: SSD 300 1.2B / 6.8M, Faster R-CNN 300 25.2B and 600 30.5B (paper)."""
    ssd, rcnn_300, rcnn_600 = table_13_rows()
    assert (ssd["detector"], ssd["size"], rcnn_300["size"], rcnn_600["size"]) == ("ssd", 300, 300, 600)
    assert ssd["mult_adds_b"] == pytest.approx(1.2, abs=0.06) and ssd["params_m"] == pytest.approx(6.8, abs=0.05)
    assert rcnn_300["mult_adds_b"] == pytest.approx(25.2, abs=0.05) and rcnn_300["params_m"] == pytest.approx(6.1, abs=0.1)
    assert rcnn_600["mult_adds_b"] == pytest.approx(30.5, abs=0.05)
    # the same count as profiling the detector directly
    direct = detector_cost(build_detector("ssd", backbone="mobilenet_v1", num_classes=90, size=300), 300)
    assert direct.mult_adds / 1e9 == ssd["mult_adds_b"] and direct.params / 1e6 == ssd["params_m"]
    assert [row["paper_mult_adds_b"] for row in (ssd, rcnn_300, rcnn_600)] == [1.2, 25.2, 30.5]


# --- feature imitation -----------------------------------------------------------------------------------------------
def test_object_mask_marks_the_cells_a_box_overlaps():
    # 8x8 image, 4x4 map: cells of 2x2 pixels
    mask = object_mask([torch.tensor([[0.0, 0.0, 3.0, 3.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.zeros(0, 4)],
                       (4, 4), (8, 8))
    expected = torch.zeros(3, 4, 4)
    expected[0, :2, :2] = 1  # pixels 0..3 reach into the second row and column of cells
    expected[1, 0, 0] = 1    # pixels 0..2 end where the second cell begins
    assert torch.equal(mask, expected)


def test_feature_imitation_is_the_squared_error_over_all_or_masked_cells():
    imitation = FeatureImitation([2], [2], mask=False)
    with torch.no_grad():
        imitation.adapters[0].weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
        imitation.adapters[0].bias.zero_()
    student = torch.zeros(1, 2, 2, 2)
    teacher = torch.zeros(1, 2, 2, 2)
    teacher[0, :, 0, 0] = 2.0  # one cell differs by 2 in both channels: squared error 4 there, 0 elsewhere
    assert imitation([student], [teacher]).item() == pytest.approx(4 / 4)
    imitation.mask = True
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 2.0]])]  # covers the first row of cells of a 4x4 image
    assert imitation([student], [teacher], boxes, (4, 4)).item() == pytest.approx(4 / 2)


def test_head_imitation_on_hand_made_anchors():
    # one anchor, classes (background, object): student uniform, teacher (1/4, 3/4); KL = sum p_t log(p_t / p_s)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    student = {"cls_logits": torch.zeros(1, 1, 2), "bbox_regression": torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])}
    teacher = {"cls_logits": torch.tensor([[[0.0, math.log(3.0)]]]), "bbox_regression": torch.zeros(1, 1, 4)}
    box = 1.0 - 0.5 / 9  # smooth L1 (beta 1/9) of an offset of 1, weight 3/4 normalised away
    assert ssd_head_imitation(student, teacher).item() == pytest.approx(kl + box, rel=1e-5)
    assert ssd_head_imitation(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    # RPN: objectness logit 0 against a teacher at 0 -> binary cross-entropy with target 1/2 = log 2; equal deltas
    objectness, deltas = [torch.zeros(1, 3, 2, 2)], [torch.ones(1, 12, 2, 2)]
    assert rpn_head_imitation((objectness, deltas), (objectness, deltas)).item() == pytest.approx(math.log(2.0))
    with pytest.raises(ValueError, match="needs the same anchors"):
        ssd_head_imitation({**student, "cls_logits": torch.zeros(1, 2, 2)}, teacher)


def test_ssd_head_imitation_divides_the_kd_by_the_teachers_object_anchors():
    # four anchors, classes (background, object). Anchors 0-1: teacher (1/4, 3/4) against a uniform student, KL `kl`
    # each; anchors 2-3: teacher and student both (3/4, 1/4), KL 0. The teacher's object probabilities sum to
    # 3/4 + 3/4 + 1/4 + 1/4 = 2, so "objects" gives 2 kl / 2 and "anchors" (the mean) 2 kl / 4; box offsets agree.
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    agree = [math.log(3.0), 0.0]
    teacher = {"cls_logits": torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)], agree, agree]]),
               "bbox_regression": torch.zeros(1, 4, 4)}
    student = {"cls_logits": torch.tensor([[[0.0, 0.0], [0.0, 0.0], agree, agree]]),
               "bbox_regression": torch.zeros(1, 4, 4)}
    assert ssd_head_imitation(student, teacher, normalize="objects").item() == pytest.approx(kl, rel=1e-5)
    assert ssd_head_imitation(student, teacher, normalize="anchors").item() == pytest.approx(kl / 2, rel=1e-5)
    assert HeadImitationLoss()(student, teacher).item() == pytest.approx(kl, rel=1e-5)  # "objects" by default
    # a teacher that sees less than one object anchor in all: divided by 1, not blown up
    background = {"cls_logits": torch.tensor([[[math.log(99.0), 0.0]] * 4]), "bbox_regression": torch.zeros(1, 4, 4)}
    uniform = {"cls_logits": torch.zeros(1, 4, 2), "bbox_regression": torch.zeros(1, 4, 4)}
    per_anchor = 0.99 * math.log(0.99 / 0.5) + 0.01 * math.log(0.01 / 0.5)
    assert ssd_head_imitation(uniform, background).item() == pytest.approx(4 * per_anchor, rel=1e-5)
    with pytest.raises(ValueError, match="normalize='mean'.*'objects'"):
        HeadImitationLoss(normalize="mean")


@pytest.mark.parametrize("kind", ["ssd", "faster_rcnn"])
def test_distillation_step_trains_student_and_adapters_never_the_teacher(kind):
    """The one engine's DistillationModule serves detectors: box losses as the ground_truth term, imitation terms."""
    from distill.engine.distillation import DistillationModule, parse_loss_terms
    from distill.tasks import DetectionTask

    torch.manual_seed(0)
    options = {"first_stride": 8} if kind == "ssd" else {**FAST_RCNN, "roi_output_size": 7}
    task = DetectionTask({"kind": kind, "options": options})
    student, _, _ = task.build_model({"_target_": "distill.models.MobileNetV1", "width_multiplier": 0.25},
                                     num_classes=2, resolution=96)
    teacher, _, _ = task.build_model({"_target_": "distill.models.teachers.timm_teacher.build_timm_teacher",
                                      "model_name": "resnet10t"}, num_classes=2, resolution=96)
    head = "head" if kind == "ssd" else "rpn.head"
    terms = {"ground_truth": {"weight": 1.0},
             "feature_imitation": {"student": "backbone", "teacher": "backbone", "mask": True},
             "head_imitation": {"student": head, "teacher": head, "weight": 0.5}}
    module = DistillationModule(student, teacher, task, parse_loss_terms(terms),
                                optimizer=functools.partial(torch.optim.SGD, lr=0.01), student_resolution=96)
    module.train()
    assert not module.teacher.training and all(not p.requires_grad for p in module.teacher.parameters())
    adapters = module.losses["feature_imitation"].imitation.adapters
    expected_in, expected_out = ([64, 128, 256], [128, 256, 512]) if kind == "ssd" else ([128], [256])
    assert [a.in_channels for a in adapters][:len(expected_in)] == expected_in
    assert [a.out_channels for a in adapters][:len(expected_out)] == expected_out
    assert {id(p) for p in adapters.parameters()} <= {id(p) for p in module.trainable_parameters()}
    module.log = lambda *args, **kwargs: None  # no trainer attached
    batch = ([torch.rand(3, 96, 96), torch.rand(3, 96, 96)], _targets(96))
    torch.manual_seed(1)  # Faster R-CNN samples its training regions
    losses = module.compute_losses(batch)
    assert set(losses) == {"ground_truth", "feature_imitation", "head_imitation"}
    torch.manual_seed(1)
    own = student(batch[0], [{"boxes": t["boxes"], "labels": t["labels"]} for t in batch[1]])
    assert losses["ground_truth"].item() == pytest.approx(sum(own.values()).item(), rel=1e-5)
    torch.manual_seed(1)
    loss = module.training_step(batch, 0)
    expected = losses["ground_truth"] + losses["feature_imitation"] + 0.5 * losses["head_imitation"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert adapters[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.teacher.parameters())
    baseline = DistillationModule(student, None, task, parse_loss_terms({"ground_truth": {}}),
                                  optimizer=torch.optim.SGD, student_resolution=96)
    assert set(baseline.compute_losses(batch)) == {"ground_truth"}  # the no-teacher baseline


def test_detector_checkpoint_round_trip(tmp_path):
    """A detector is saved like any student (builder build_detector, its arguments) and loads in eval mode."""
    torch.manual_seed(0)
    detector = build_detector("faster_rcnn", backbone="mobilenet_v1", num_classes=2, size=64,
                              backbone_kwargs={"width_multiplier": 0.25}, options={"roi_output_size": 7})
    path = save_student(tmp_path / "student.ckpt", detector, "distill.models.detection.build_detector", detector.spec,
                        meta={"resolution": 64, "class_names": ["circle", "square"]})
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["builder"] == "distill.models.detection.detectors.build_detector" and payload["version"] == 2
    assert payload["kwargs"]["options"] == {"roi_output_size": 7} and payload["kwargs"]["kind"] == "faster_rcnn"
    loaded = load_student(path)
    assert isinstance(loaded, FasterRCNN) and not loaded.training and loaded.spec == detector.spec
    assert loaded.distill_meta == {"resolution": 64, "class_names": ["circle", "square"]}
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        (got,), (want,) = loaded(images), detector.eval()(images)
    assert set(got) == {"boxes", "labels", "scores"} and len(want["boxes"]) > 0
    for key in ("boxes", "labels", "scores"):
        assert torch.equal(got[key], want[key]), key


def test_detector_files_of_the_previous_format_still_load(tmp_path):
    """student.ckpt of the coco recipe before the one format: {"format": "distill.detector", "detector": spec}."""
    torch.manual_seed(0)
    detector = build_detector("ssd", backbone="mobilenet_v1", num_classes=2, size=64,
                              backbone_kwargs={"width_multiplier": 0.25}).eval()
    torch.save({"format": "distill.detector", "version": 1, "detector": detector.spec,
                "state_dict": detector.state_dict(), "meta": {"resolution": 64}}, tmp_path / "old.ckpt")
    payload = read_student_checkpoint(tmp_path / "old.ckpt")
    assert payload["builder"] == "distill.models.detection.detectors.build_detector" and payload["version"] == 1
    loaded = load_student(tmp_path / "old.ckpt")
    assert isinstance(loaded, SSD) and not loaded.training and loaded.distill_meta == {"resolution": 64}
    image = torch.rand(3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.backbone(image[None])["0"], detector.backbone(image[None])["0"])
        (got,), (want,) = loaded([image]), detector([image])
    assert len(want["boxes"]) > 0 and torch.equal(got["boxes"], want["boxes"])
    torch.save({"format": "distill.detector", "version": 2, "detector": detector.spec, "state_dict": {}},
               tmp_path / "newer.ckpt")
    with pytest.raises(ValueError, match=r"newer.ckpt is not a distill student checkpoint.*detector checkpoint of "
                                         r"version 2; this distill reads version 1"):
        load_student(tmp_path / "newer.ckpt")


def test_evaluation_runs_nhwc_on_a_cpu_and_gives_the_weights_back_as_they_were():
    """``evaluate_detector`` converts the conv weights and the backbone's input to NHWC on a CPU (faster there,
    benchmarks/detector_eval.py) and restores the layout; the detections are those of the NCHW detector."""
    from distill.core.fingerprint import memory_format
    from distill.tasks.detection import nhwc_on_cpu

    torch.manual_seed(0)
    detector = build_detector("faster_rcnn", backbone="mobilenet_v1", num_classes=2, size=64,
                              backbone_kwargs={"width_multiplier": 0.25}, options=FAST_RCNN).eval()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    seen = []
    with torch.no_grad():
        plain = detector(images)
        with nhwc_on_cpu(detector) as converted:
            assert converted is detector and memory_format(detector) == "channels_last"
            handle = detector.backbone.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))  # after
            nhwc = detector(images)
            handle.remove()
    assert memory_format(detector) == "contiguous"
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    for one, other in zip(plain, nhwc):
        torch.testing.assert_close(one["boxes"], other["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(one["scores"], other["scores"], atol=1e-4, rtol=1e-4)
    # weights already NHWC (channels_last=true) stay so, and so does a GPU's detector
    detector.to(memory_format=torch.channels_last)
    with nhwc_on_cpu(detector):
        pass
    assert memory_format(detector) == "channels_last"
    detector.to(memory_format=torch.contiguous_format)
    with nhwc_on_cpu(detector, "cuda"):
        assert memory_format(detector) == "contiguous"
