"""The coco recipe (MobileNet paper Table 13): its configuration and one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, compose_config
from hydra.errors import InstantiationException
from hydra.utils import instantiate

import pytorch_lightning as pl
import torch

from distill import load_student
from distill.engine.run import run
from distill.export import export_student

TINY_COCO = TINY["coco"]


def test_recipe_composes_the_distilled_ssd_default_and_its_alternatives():
    cfg = compose_config(["recipe=coco"])
    assert cfg.recipe_name == "coco" and cfg.task._target_ == "distill.tasks.DetectionTask"
    assert cfg.data._target_ == "distill.data.modules.coco.SyntheticCocoDataModule"
    assert cfg.detector.kind == "ssd" and cfg.task.detector.kind == "ssd"
    terms = cfg.loss.terms
    assert set(terms) == {"ground_truth", "feature_imitation", "head_imitation", "box_head_imitation",
                          "early_map_imitation"}
    assert terms.early_map_imitation.weight is None  # SSD's map imitation already covers every map its heads read
    assert terms.feature_imitation.mask and terms.head_imitation.student == "head"  # SSD's box predictor
    assert terms.box_head_imitation.weight is None  # Faster R-CNN's second stage: SSD has none
    faster = compose_config(["recipe=coco", "detector=faster_rcnn", "data.resolution=600", "loss=detection_only"])
    assert faster.detector.options.rpn_post_nms_top_n_test == 300 and faster.data.resolution == 600
    assert dict(faster.loss.terms) == {"ground_truth": {"weight": 1.0}}
    distilled_faster = compose_config(["recipe=coco", "detector=faster_rcnn"])
    assert distilled_faster.loss.terms.head_imitation.teacher == "rpn.head"
    assert distilled_faster.loss.terms.box_head_imitation.weight is None  # off: measured in recipes/coco/README.md
    early = distilled_faster.loss.terms.early_map_imitation  # the trunk's stride-8 map, masked to the objects
    assert (early.name, early.student, early.teacher, early.mask) == ("feature_imitation", "backbone.early",
                                                                      "backbone.early", True)
    with_box_head = compose_config(["recipe=coco", "detector=faster_rcnn", "detector.box_head_imitation_weight=0.25"])
    assert with_box_head.loss.terms.box_head_imitation.weight == 0.25
    assert with_box_head.loss.terms.box_head_imitation.student == "roi_heads.box_predictor"
    # each detector's own imitation weight (measured per detector in recipes/coco/README.md)
    assert distilled_faster.loss.terms.feature_imitation.weight == 15.0 and terms.feature_imitation.weight == 3.0
    assert distilled_faster.detector.options.roi_output_size == 7  # CPU-sized crops by default
    assert cfg.trainer.max_epochs == 10 and distilled_faster.trainer.max_epochs == 10  # each detector's schedule
    # SSD's student learns from 100 scenes with boxes and 1100 without; Faster R-CNN's box losses need boxes on all
    assert (cfg.data.num_train, cfg.data.num_unlabelled) == (100, 1100)
    assert (distilled_faster.data.num_train, distilled_faster.data.num_unlabelled) == (400, 0)
    assert terms.head_imitation.normalize == "objects"
    real = compose_config(["recipe=coco", "data=coco"])
    assert real.data._target_ == "distill.data.modules.coco.CocoDataModule" and real.data.resolution == 300
    with pytest.raises(InstantiationException, match="data.root and data.ann_file are required"):
        instantiate(real.data)


@pytest.mark.slow
def test_tiny_coco_run_writes_map_cost_and_a_loadable_exportable_detector(tiny_run, tmp_path):
    cfg, results, run_dir = tiny_run("coco")
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["recipe"] == "coco" and saved["primary_metric"] == "map"
    assert saved["teacher"]["source"] == "fitted" and saved["teacher"]["name"] == "resnet10t"
    for role in ("teacher", "student"):
        block = saved[role]
        assert block["detector"] == "ssd" and block["resolution"] == 64
        assert 0 < block["mult_adds"] and 0 < block["params"] <= block["total_params"]
        metrics = block["metrics"]
        assert -1.0 <= metrics["map"] <= metrics["map_50"] <= 1.0 and metrics["num_images"] == 8
        assert set(metrics["ap_per_class"]) <= {"circle", "square"}
    assert saved["student"]["width_multiplier"] == 0.25
    assert saved["student"]["params"] < saved["teacher"]["params"]
    assert saved["data"]["splits"] == {"teacher_train": 16, "train": 12, "test": 8}
    assert saved["data"]["unlabelled"] == 8  # the student's scenes without boxes
    assert set(saved["loss_terms"]) == {"ground_truth", "feature_imitation", "head_imitation"}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    log = (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert {"train/feature_imitation_epoch", "train/head_imitation_epoch", "train/ground_truth_epoch"} <= set(log.split(","))

    detector = load_student(saved["student_checkpoint"])  # the one student format: an eval-mode detector
    assert not detector.training and detector.spec["backbone_kwargs"] == {"width_multiplier": 0.25}
    assert detector.distill_meta["class_names"] == ["circle", "square"]
    (output,) = detector([torch.rand(3, 64, 64)])
    assert set(output) == {"boxes", "labels", "scores"}
    exported = export_student(saved["student_checkpoint"], format="torchscript", out=tmp_path / "student.pt")
    assert exported.is_file()

    # the no-teacher baseline reuses the cached teacher (for its row) and trains on the box losses alone
    baseline = run(compose_config(TINY_COCO + [f"cache.dir={cfg.cache.dir}", "loss=detection_only"]),
                   run_dir=tmp_path / "baseline")
    assert baseline["teacher"]["source"] == "cache" and set(baseline["loss_terms"]) == {"ground_truth"}
    assert baseline["teacher"]["metrics"]["map"] == pytest.approx(saved["teacher"]["metrics"]["map"])

    # a detector option shapes the teacher detector too (here its default boxes): another teacher, not the cached one
    other = run(compose_config(TINY_COCO + [f"cache.dir={cfg.cache.dir}", "loss=detection_only",
                                            "detector.options.min_scale=0.3"]), run_dir=tmp_path / "other_boxes")
    assert other["teacher"]["source"] == "fitted"


def test_tiny_faster_rcnn_run_distils_on_scenes_without_boxes_too(tmp_path):
    """Faster R-CNN leaves the scenes without boxes out of its box losses and imitates its teacher on them; the
    box-head imitation (turned on here) runs on the labelled scenes' regions."""
    cfg = compose_config(TINY_COCO + [f"cache.dir={tmp_path / 'cache'}", "detector=faster_rcnn",
                                      "data.num_unlabelled=8", "detector.box_head_imitation_weight=0.5"])
    results = run(cfg, run_dir=tmp_path / "run")
    assert results["data"]["unlabelled"] == 8 and results["data"]["splits"]["train"] == 12
    assert results["student"]["detector"] == results["teacher"]["detector"] == "faster_rcnn"
    assert set(results["loss_terms"]) == {"ground_truth", "feature_imitation", "head_imitation", "box_head_imitation",
                                          "early_map_imitation"}
    assert 0.0 <= results["student"]["metrics"]["map"] <= results["student"]["metrics"]["map_50"] <= 1.0
    log = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()
    header = log[0].split(",")
    assert {"train/ground_truth/loss_classifier_epoch", "train/feature_imitation_epoch", "train/head_imitation_epoch",
            "train/box_head_imitation_epoch", "train/early_map_imitation_epoch"} <= set(header)
    epoch_losses = [dict(zip(header, row.split(","))) for row in log[1:]]
    for term in ("head_imitation", "box_head_imitation", "early_map_imitation"):
        finite = [float(row[f"train/{term}_epoch"]) for row in epoch_losses if row[f"train/{term}_epoch"]]
        assert finite and all(value == value and value > 0 for value in finite), term


class _Interrupt(pl.Callback):
    """Raises in the middle of the first epoch, like a killed job (after a step checkpoint was written)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == 2:
            raise RuntimeError("simulated kill")


@pytest.mark.slow
def test_coco_resumed_mid_epoch_ends_with_the_same_weights(tmp_path):
    """Also NHWC (channels_last=true): detection takes the memory-format option like every recipe."""
    overrides = TINY_COCO + [f"cache.dir={tmp_path / 'cache'}", "data.num_train=32", "trainer.max_epochs=2",
                             "callbacks.checkpoint.every_n_train_steps=2", "channels_last=true"]
    reference = run(compose_config(overrides), run_dir=tmp_path / "reference")
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(compose_config(overrides), run_dir=tmp_path / "killed", callbacks=[_Interrupt()])
    checkpoint = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["distill_position"] == {"epoch": 0, "batches": 2}  # saved inside the epoch
    resumed = run(compose_config(overrides + ["resume=true"]), run_dir=tmp_path / "killed")
    a = torch.load(reference["student_checkpoint"], weights_only=True)["state_dict"]
    b = torch.load(resumed["student_checkpoint"], weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
