"""The face_attributes recipe: the multi-label task, label-free distillation, and one tiny end-to-end run."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY, compose_config
from distill.cost import profile
from distill.data.modules.attributes import SyntheticAttributesDataModule
from distill.data.modules.base import ArrayDataModule, Split
from distill.models import MobileNetV1
from distill.engine.distillation import DistillationModule, parse_loss_terms
from distill.tasks import MultiLabelTask
from distill.engine.run import run

TINY_DATA = dict(image_size=32, num_teacher_train=8, num_train=6, num_test=4, resolution=32, use_cache=False)


def _numpy_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the precision at the rank of each positive, ranking by decreasing score (no ties)."""
    order = np.argsort(-scores)
    hits = labels[order]
    precision_at_rank = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at_rank[hits == 1].mean())


class _Fixed(nn.Module):
    """Returns preset scores for the images it is shown (identified by their first pixel)."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, images):
        index = ((images[:, 0, 0, 0] * 0.5 + 0.5) * 255).round().long()
        return self.scores[index]


class _Labelled(ArrayDataModule):
    """Test split of images numbered by their first pixel, with given labels."""

    def __init__(self, labels: np.ndarray, names) -> None:
        super().__init__(resolution=4, eval_batch_size=7, augment=False)
        self.labels, self.attribute_names = labels, tuple(names)

    @property
    def num_classes(self):
        return self.labels.shape[1]

    def build_splits(self):
        images = np.zeros((len(self.labels), 4, 4, 3), dtype=np.uint8)
        images[:, 0, 0, 0] = np.arange(len(self.labels))
        return {"train": Split(images), "test": Split(images, self.labels)}


def test_evaluate_matches_an_independent_average_precision():
    rng = np.random.default_rng(0)
    labels = (rng.random((30, 4)) < [0.5, 0.2, 0.1, 0.0]).astype(np.uint8)
    labels[0, 2] = 1  # at least one positive in the rare column; the last column has none
    scores = torch.from_numpy(rng.normal(size=(30, 4)).astype(np.float32)) + torch.from_numpy(labels) * 0.8
    names = ("Smiling", "Eyeglasses", "Bald", "Never")
    with pytest.warns(RuntimeWarning, match=r"over 3 of 4 attributes: 1 have no positive .*\(Never\)"):
        metrics = MultiLabelTask(num_labels=4).evaluate(_Fixed(scores), _Labelled(labels, names), resolution=4)
    assert metrics["attributes_averaged"] == 3 and metrics["attributes_without_positives"] == ["Never"]
    expected = {name: _numpy_average_precision(scores[:, j].numpy(), labels[:, j]) for j, name in enumerate(names[:3])}
    assert metrics["ap_per_attribute"]["Never"] is None
    for name, value in expected.items():
        assert metrics["ap_per_attribute"][name] == pytest.approx(value, abs=1e-6)
    assert metrics["mAP"] == pytest.approx(sum(expected.values()) / 3, abs=1e-6)
    # a perfect ranking has AP 1 (a hand-checkable case)
    perfect = MultiLabelTask(num_labels=4).evaluate(_Fixed(torch.from_numpy(labels.astype(np.float32))),
                                                    _Labelled(labels, names), resolution=4)
    assert perfect["mAP"] == pytest.approx(1.0)


def test_fit_and_ground_truth_losses_are_binary_cross_entropy():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    target = torch.tensor([[1, 0], [0, 1]], dtype=torch.uint8)
    p = torch.sigmoid(logits)
    by_hand = -(torch.log(p[0, 0]) + torch.log(1 - p[0, 1]) + torch.log(1 - p[1, 0]) + torch.log(p[1, 1])) / 4
    task = MultiLabelTask(num_labels=2)
    assert task.fit_loss(logits, target).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert task.ground_truth_loss(logits, target).item() == pytest.approx(by_hand.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"expected targets of shape \(2, 2\)"):
        task.fit_loss(logits, torch.tensor([1, 0]))


def test_output_sizes_follow_the_data():
    data = SyntheticAttributesDataModule(**TINY_DATA)
    task = MultiLabelTask()
    assert task.teacher_num_classes(data) == 40 and task.student_num_classes(data, 40) == 40
    with pytest.raises(ValueError, match="teacher outputs 512 values per image but the data has 40 attributes"):
        task.student_num_classes(data, 512)
    with pytest.raises(ValueError, match="task.num_labels=10 but SyntheticAttributesDataModule has 40"):
        MultiLabelTask(num_labels=10).teacher_num_classes(data)


def _module(ground_truth_weight=0.0):
    torch.manual_seed(0)
    terms = {"multilabel_kd": {"weight": 1.0}}
    if ground_truth_weight:
        terms["ground_truth"] = {"weight": ground_truth_weight}
    return DistillationModule(
        MobileNetV1(width_multiplier=0.25, num_classes=40), MobileNetV1(width_multiplier=0.5, num_classes=40),
        MultiLabelTask(), parse_loss_terms(terms),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1), scheduler="none", student_resolution=32)


def test_the_student_never_sees_a_label():
    data = SyntheticAttributesDataModule(**TINY_DATA)
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"image", "index", "view"}
    with pytest.raises(ValueError, match="'ground_truth' loss term needs labels"):  # never silently skipped
        _module(ground_truth_weight=1.0).compute_losses(batch)
    module = _module()
    losses = module.compute_losses(batch)
    assert set(losses) == {"multilabel_kd"}
    # ... and the loss is the teacher-matching term alone, computed independently
    with torch.no_grad():
        student, teacher = module.student(batch["image"]), module.teacher(batch["image"])
    expected = nn.functional.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher))
    assert losses["multilabel_kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    # with data.student_labels=true the labels arrive and the ground-truth term joins
    labelled = SyntheticAttributesDataModule(**TINY_DATA, student_labels=True)
    batch = next(iter(labelled.train_dataloader()))
    assert batch["target"].shape == (6, 40)
    assert set(_module(ground_truth_weight=1.0).compute_losses(batch)) == {"multilabel_kd", "ground_truth"}


TINY_RECIPE = TINY["face_attributes"]


def test_recipe_composes_the_label_free_distillation():
    cfg = compose_config(["recipe=face_attributes"])
    assert cfg.task._target_ == "distill.tasks.MultiLabelTask" and cfg.task.num_labels == 40
    assert cfg.data._target_ == "distill.data.modules.attributes.SyntheticAttributesDataModule"
    assert cfg.data.student_labels is False
    assert list(cfg.loss.terms) == ["multilabel_kd"]
    assert cfg.student.name == "mobilenet_v1" and cfg.teacher.name == cfg.teacher.builder.model_name
    celeba = compose_config(["recipe=face_attributes", "data=celeba", "data.root=/data/celeba"])
    assert celeba.data._target_ == "distill.data.modules.celeba.CelebADataModule"


def test_ground_truth_term_without_student_labels_is_a_clear_error(tmp_path):
    cfg = compose_config(TINY_RECIPE + [f"cache.dir={tmp_path}", "+loss.terms.ground_truth.weight=0.5"])
    with pytest.raises(ValueError, match=r"loss.terms.ground_truth needs labels on the student's training "
                                         r"images.*data.student_labels=true"):
        run(cfg, run_dir=tmp_path / "run")


@pytest.mark.slow
def test_tiny_face_attributes_run_writes_map_for_teacher_and_student(tiny_run):
    _, _, run_dir = tiny_run("face_attributes")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["recipe"] == "face_attributes" and results["primary_metric"] == "mAP"
    for role in ("teacher", "student"):
        metrics = results[role]["metrics"]
        per_attribute = metrics["ap_per_attribute"]
        assert list(per_attribute) == list(SyntheticAttributesDataModule.attribute_names.fget(None))
        scored = [v for v in per_attribute.values() if v is not None]
        assert len(scored) >= 20 and all(0.0 <= v <= 1.0 for v in scored)
        assert metrics["mAP"] == pytest.approx(sum(scored) / len(scored))
        assert metrics["attributes_averaged"] == len(scored)
        assert len(metrics["attributes_without_positives"]) == len(per_attribute) - len(scored)
    expected = profile(MobileNetV1(width_multiplier=0.25, num_classes=40), input_size=(3, 32, 32))
    assert (results["student"]["mult_adds"], results["student"]["params"]) == (expected.mult_adds, expected.params)
    assert results["data"]["labelled"] == {"teacher_train": True, "train": False, "test": True}
    assert results["teacher"]["name"] == "resnet10t" and results["teacher"]["source"] == "fitted"
