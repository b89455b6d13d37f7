"""The dogs recipe (MobileNet paper Table 10): its configuration and one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, compose_config
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from distill.losses import DKDLoss
from distill.engine.distillation import parse_loss_terms
from distill.paper import PAPER_TABLES

TINY_DOGS = TINY["dogs"]


def test_recipe_composes_the_distilled_default_and_its_alternatives():
    cfg = compose_config(["recipe=dogs"])
    assert cfg.recipe_name == "dogs"
    assert cfg.data._target_ == "distill.data.modules.fine_grained.SyntheticFineGrainedDataModule"
    assert cfg.data.num_classes == 40
    assert cfg.task._target_ == "distill.tasks.ClassificationTask" and list(cfg.task.top_k) == [1, 5]
    # distilled default: KD at temperature 32 (near logit matching) plus cross-entropy on the labels
    assert set(cfg.loss.terms) == {"kd", "ground_truth"} and cfg.loss.terms.ground_truth.weight > 0
    assert cfg.loss.terms.kd.temperature == 32.0 and cfg.loss.terms.kd.weight == 0.9
    # swapping the loss group leaves no trace of the default's temperature
    assert compose_config(["recipe=dogs", "loss=kd_ce"]).loss.terms.kd.temperature == 4.0
    assert compose_config(["recipe=dogs", "loss=labels_only"]).loss.terms == {"ground_truth": {"weight": 1.0}}
    dkd = compose_config(["recipe=dogs", "loss=dkd_ce"])
    spec, ground_truth = parse_loss_terms(dict(dkd.loss.terms))
    assert spec.name == "dkd" and spec.kwargs == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}
    assert isinstance(DKDLoss(**spec.kwargs), DKDLoss) and ground_truth.weight == 1.0
    # the teacher sees the full decoded images, whatever the student's resolution (one teacher per sweep)
    assert cfg.teacher.resolution == cfg.data.image_size == 64
    sweep_row = compose_config(["recipe=dogs", "student.width_multiplier=1.0", "data.resolution=56"])
    assert sweep_row.teacher.resolution == 64
    # the student learns from unlabelled images too: twice as many as its labelled ones
    assert cfg.data.num_unlabelled == 2 * cfg.data.num_train
    inception = compose_config(["recipe=dogs", "teacher=inception_v3", "data.image_size=96"])
    assert inception.teacher.builder.model_name == "inception_v3" and inception.teacher.resolution == 96


def test_real_data_configs_name_their_modules():
    for group, target in (("stanford_dogs", "StanfordDogsDataModule"), ("image_folder", "ImageFolderDataModule")):
        cfg = compose_config(["recipe=dogs", f"data={group}"])
        assert cfg.data._target_ == f"distill.data.modules.fine_grained.{target}" and cfg.data.strict is True
        with pytest.raises(InstantiationException, match="data.root is required"):
            instantiate(cfg.data)


def test_paper_table_10_is_the_reference():
    table = PAPER_TABLES["dogs"]
    assert table.rows[(1.0, 224)].metric == pytest.approx(0.833)
    assert table.rows[(0.75, 192)].metric == pytest.approx(0.805)
    assert table.teacher.label == "Inception V3"


@pytest.mark.slow
def test_tiny_dogs_run_writes_top1_top5_and_confusions(tiny_run):
    cfg, results, run_dir = tiny_run("dogs")
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["recipe"] == "dogs" and saved["primary_metric"] == "top1"
    assert saved["student"]["width_multiplier"] == 0.25 and saved["student"]["resolution"] == 32
    for role in ("teacher", "student"):
        metrics = saved[role]["metrics"]
        assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
        # 40 test images: accuracies are multiples of 1/40
        assert metrics["top1"] * 40 == pytest.approx(round(metrics["top1"] * 40), abs=1e-4)
        confusions = metrics["most_confused"]
        assert sum(pair["count"] for pair in confusions) <= round((1 - metrics["top1"]) * 40)
        for pair in confusions:
            assert pair["true"] != pair["predicted"]
            assert pair["true"].split()[1] in {"plain", "spotted"}  # classes 0-9: plain and spotted coats
    # the student's split: its 60 labelled images and 20 more without labels
    assert saved["data"]["splits"] == {"teacher_train": 80, "train": 80, "test": 40}
    assert saved["data"]["unlabelled"] == 20
    assert saved["data"]["classes"] == 10
    assert results["student"]["metrics"]["top1"] == saved["student"]["metrics"]["top1"]
