"""A fitted teacher's test metrics are kept beside it: read back only under the same weights, settings, data, device
and code, and a run that reads them reports the same metrics as one that scores the teacher."""

import json
import logging

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from distill.cache import scan_cache
from distill.data.modules.shapes import SyntheticShapesDataModule
from distill.engine.run import run
from distill.engine.teacher_metrics import load_teacher_metrics, save_teacher_metrics, teacher_metrics_path

CPU = torch.device("cpu")


def _setting(tmp_path, **data):
    cfg = OmegaConf.create({"cache": {"enabled": True}, "task": {"_target_": "distill.tasks.ClassificationTask"},
                            "teacher": {"name": "resnet10t"}, "data": {"eval_batch_size": 32}})
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    teacher(torch.zeros(1, 3, 8, 8))
    info = {"source": "cache", "key": "abc123", "path": str(tmp_path / "teachers" / "abc123.pt")}
    sizes = dict(num_classes=2, image_size=8, num_teacher_train=4, num_train=4, num_test=4, seed=0)
    return cfg, teacher, info, SyntheticShapesDataModule(**{**sizes, **data})


def test_the_key_follows_weights_settings_data_and_device(tmp_path):
    cfg, teacher, info, data = _setting(tmp_path)
    path = teacher_metrics_path(cfg, teacher, info, data, 8, CPU)
    assert path.parent == tmp_path / "teachers" and path.name.startswith("abc123.metrics-") and path.suffix == ".json"
    assert teacher_metrics_path(cfg, teacher, info, data, 8, CPU) == path  # stable
    other_data = _setting(tmp_path, num_test=6)[3]
    changed_task = OmegaConf.merge(cfg, {"task": {"score_thresh": 0.5}})
    with torch.no_grad():
        changed_weights = _setting(tmp_path)[1]
        changed_weights[0].bias.add_(1e-6)
    others = {
        "data": teacher_metrics_path(cfg, teacher, info, other_data, 8, CPU),
        "task": teacher_metrics_path(changed_task, teacher, info, data, 8, CPU),
        "weights": teacher_metrics_path(cfg, changed_weights, info, data, 8, CPU),
        "resolution": teacher_metrics_path(cfg, teacher, info, data, 16, CPU),
        "device": teacher_metrics_path(cfg, teacher, info, data, 8, torch.device("meta")),
    }
    assert all(other != path for other in others.values()), others
    assert len(set(others.values())) == len(others)
    # nothing is kept for a teacher loaded from a weights file, or with the cache off
    assert teacher_metrics_path(cfg, teacher, {"source": "weights", "path": "w.pt"}, data, 8, CPU) is None
    assert teacher_metrics_path(OmegaConf.merge(cfg, {"cache": {"enabled": False}}), teacher, info, data, 8,
                                CPU) is None


def test_a_detection_twin_that_changes_only_the_students_side_reads_the_same_metrics(tmp_path):
    """The coco recipe's twins (labels only, another schedule, scenes without boxes) score the same teacher on the
    same test scenes: the synthetic scenes' test split and the detector's options key the metrics, not the student's
    data, schedule or imitation weights."""
    from distill.data.modules.coco import SyntheticCocoDataModule
    from distill.tasks import DetectionTask

    cfg, teacher, info, _ = _setting(tmp_path)

    def path(options=None, task_cfg=None, **data):
        settings = dict(cache_dir=tmp_path / "cache", num_teacher_train=8, num_train=4, num_test=4, seed=0)
        task = DetectionTask({"kind": "faster_rcnn", "options": options or {"rpn_post_nms_top_n_test": 300},
                              "student_epochs": 10})
        changed = OmegaConf.merge(cfg, {"task": task_cfg or {"detector": {"student_epochs": 10}}})
        return teacher_metrics_path(changed, teacher, info, SyntheticCocoDataModule(**{**settings, **data}), 8, CPU,
                                    task=task)

    base = path()
    assert path(num_train=6) == path(num_unlabelled=5) == path(batch_size=4) == base  # the student's data
    assert path(task_cfg={"detector": {"student_epochs": 20, "box_head_imitation_weight": 0.5}}) == base
    assert path(num_teacher_train=9) == base  # the teacher's own split: its weights (keyed) tell
    others = [path(num_test=5), path(seed=1), path(eval_batch_size=8), path(image_size=96),
              path(options={"rpn_post_nms_top_n_test": 100})]
    assert base not in others and len(set(others)) == len(others)
    assert SyntheticCocoDataModule(tmp_path / "cache", flip=False).test_key_parts() == \
        SyntheticCocoDataModule(tmp_path / "cache").test_key_parts()  # test scenes are never flipped


def test_kept_metrics_round_trip_and_a_broken_file_is_a_miss(tmp_path, caplog):
    path = tmp_path / "teachers" / "abc123.metrics-0f.json"
    assert load_teacher_metrics(path) is None and load_teacher_metrics(None) is None
    path.parent.mkdir()
    assert save_teacher_metrics(path, {"top1": 0.75, "per_class": [0.5, 1.0]})
    assert load_teacher_metrics(path) == {"top1": 0.75, "per_class": [0.5, 1.0]}
    assert not list(path.parent.glob(".*"))  # written to a temporary name, then renamed
    # a file that cannot be written is logged, not raised: the run's own results come first
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="distill.engine.teacher_metrics"):
        assert not save_teacher_metrics(blocker / "x.json", {"top1": 0.5})
        assert not save_teacher_metrics(path.with_name("nan.json"), {"top1": float("nan")})
    assert "were not kept" in caplog.text and not path.with_name("nan.json").exists()
    assert not list(path.parent.glob(".*"))  # no temporary file left behind
    caplog.clear()
    path.write_text('{"top1": 0.7', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="distill.engine.teacher_metrics"):
        assert load_teacher_metrics(path) is None
    assert str(path) in caplog.text and "evaluating the teacher" in caplog.text


@pytest.mark.slow
def test_a_run_with_the_teacher_cached_reads_its_metrics_back(tiny_smoke_cfg, tmp_path, monkeypatch):
    first = json.loads(json.dumps(run(tiny_smoke_cfg(), run_dir=tmp_path / "first")))
    assert first["teacher"]["source"] == "fitted" and first["teacher"]["metrics_source"] == "evaluated"
    kept = list((tmp_path / "cache" / "teachers").glob("*.metrics-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == first["teacher"]["metrics"]
    # the cache listing counts the metrics file as part of its teacher's entry
    teacher_entries = [entry for entry in scan_cache(tmp_path / "cache") if entry.kind == "teachers"]
    assert len(teacher_entries) == 1 and kept[0] in teacher_entries[0].paths

    from distill.tasks.classification import ClassificationTask

    scored = []
    evaluate = ClassificationTask.evaluate
    monkeypatch.setattr(ClassificationTask, "evaluate",
                        lambda self, model, *args, **kwargs: scored.append(model) or evaluate(self, model, *args,
                                                                                               **kwargs))
    second = json.loads(json.dumps(run(tiny_smoke_cfg(), run_dir=tmp_path / "second")))
    assert second["teacher"]["source"] == "cache" and second["teacher"]["metrics_source"] == "cache"
    assert second["teacher"]["metrics"] == first["teacher"]["metrics"]
    assert len(scored) == 1  # the student only

    # another test split is another key: the teacher is scored again, and its metrics kept beside the first ones
    scored.clear()
    third = json.loads(json.dumps(run(tiny_smoke_cfg("data.num_test=48"), run_dir=tmp_path / "third")))
    assert third["teacher"]["metrics_source"] == "evaluated" and len(scored) == 2
    assert len(list((tmp_path / "cache" / "teachers").glob("*.metrics-*.json"))) == 2
