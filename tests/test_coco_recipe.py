"""The coco recipe (MobileNet paper Table 13): its configuration and one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
from conftest import compose_config
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from distill.detection.checkpoint import load_detector
from distill.train import run

TINY_COCO = [
    "recipe=coco",
    "data.num_classes=2",
    "data.image_size=64",
    "data.resolution=64",
    "data.num_teacher_train=16",
    "data.num_train=12",
    "data.num_test=8",
    "data.batch_size=8",
    "teacher.builder.model_name=resnet10t",
    "teacher.name=resnet10t",
    "teacher.fit.epochs=1",
    "trainer.max_epochs=1",
    "student.width_multiplier=0.25",
    "latency_runs=0",
    "progress=false",
]


def test_recipe_composes_the_distilled_ssd_default_and_its_alternatives():
    cfg = compose_config(["recipe=coco"])
    assert cfg.recipe_name == "coco" and cfg.task._target_ == "distill.tasks.DetectionTask"
    assert cfg.data._target_ == "distill.detection.datamodule.SyntheticCocoDataModule"
    assert cfg.detector.kind == "ssd" and cfg.detector.faster_rcnn.rpn_post_nms_top_n_test == 300
    assert cfg.loss.feature_weight > 0 and cfg.loss.mask is True
    assert cfg.student.name == "mobilenet_v1" and cfg.teacher.builder.backbone == "resnet"
    sweep_row = compose_config(["recipe=coco", "detector.kind=faster_rcnn", "data.resolution=600",
                                "student.width_multiplier=1.0", "loss.feature_weight=0"])
    assert sweep_row.detector.kind == "faster_rcnn" and sweep_row.data.resolution == 600
    assert sweep_row.student.width_multiplier == 1.0 and sweep_row.loss.feature_weight == 0
    real = compose_config(["recipe=coco", "data=coco"])
    assert real.data._target_ == "distill.detection.datamodule.CocoDataModule" and real.data.resolution == 300
    with pytest.raises(InstantiationException, match="data.root and data.ann_file are required"):
        instantiate(real.data)


def test_channels_last_is_refused_rather_than_ignored(tmp_path):
    cfg = compose_config(["recipe=coco", "channels_last=true", f"cache.dir={tmp_path / 'cache'}"])
    with pytest.raises(ValueError, match="channels_last=true is not supported by the detection recipes"):
        run(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "cache").exists()  # refused before any data is rendered


@pytest.mark.slow
def test_tiny_coco_run_writes_map_cost_and_a_loadable_detector(tmp_path):
    cfg = compose_config(TINY_COCO + [f"cache.dir={tmp_path / 'cache'}"])
    results = run(cfg, run_dir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
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
    assert saved["distillation"] == {"feature_weight": 1.0, "head_weight": 1.0, "mask": True, "temperature": 1.0}
    detector = load_detector(saved["student_checkpoint"])
    assert detector.spec["backbone_kwargs"] == {"width_multiplier": 0.25}
    assert detector.distill_meta["class_names"] == ["circle", "square"]

    # the no-teacher baseline reuses the cached teacher (for its row) and trains without imitation
    baseline = run(compose_config(TINY_COCO + [f"cache.dir={tmp_path / 'cache'}", "loss.feature_weight=0"]),
                   run_dir=tmp_path / "baseline")
    assert baseline["teacher"]["source"] == "cache" and baseline["distillation"]["feature_weight"] == 0.0
    assert baseline["teacher"]["metrics"]["map"] == pytest.approx(saved["teacher"]["metrics"]["map"])
