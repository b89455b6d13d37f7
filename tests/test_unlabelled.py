"""Student images without labels: the labels' cross-entropy skips them, DKD takes the teacher's class, and the
synthetic dogs and shapes add them to the student's split only."""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill.core.labels import UNLABELLED
from distill.data.modules.fine_grained import SyntheticFineGrainedDataModule
from distill.data.modules.shapes import SyntheticShapesDataModule
from distill.engine.build import warn_unlabelled_without_teacher
from distill.engine.distillation import parse_loss_terms
from distill.losses.logits import DKDLoss
from distill.tasks.classification import ClassificationTask


def test_cross_entropy_skips_unlabelled_images():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [9.0, -9.0, 0.0]])
    target = torch.tensor([0, UNLABELLED, 2])
    loss = ClassificationTask().ground_truth_loss(logits, target)
    by_hand = (-F.log_softmax(logits[0], 0)[0] - F.log_softmax(logits[2], 0)[2]) / 2
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_cross_entropy_of_an_unlabelled_batch_is_zero_with_a_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = ClassificationTask().ground_truth_loss(logits, torch.full((4,), UNLABELLED))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_dkd_takes_the_teachers_class_for_unlabelled_images():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    labels = torch.tensor([1, 0, 3, 2, 1])
    target = labels.clone()
    target[[1, 3]] = UNLABELLED
    filled = labels.clone()
    filled[[1, 3]] = teacher.argmax(1)[[1, 3]]
    loss = DKDLoss()
    assert loss(student, teacher, target).item() == pytest.approx(loss(student, teacher, filled).item(), rel=1e-6)
    with pytest.raises(ValueError, match="must lie in"):
        loss(student, teacher, torch.tensor([1, 0, -2, 2, 1]))


@pytest.mark.parametrize("module", [SyntheticFineGrainedDataModule, SyntheticShapesDataModule])
def test_synthetic_data_add_unlabelled_images_to_the_students_split_only(module):
    sizes = dict(num_classes=4, image_size=16, num_teacher_train=6, num_train=7, num_test=6, seed=2)
    plain = module(**sizes)
    more = module(num_unlabelled=9, **sizes)
    train = more.split("train")
    assert len(train) == 16
    assert np.array_equal(train.targets[:7], plain.split("train").targets)
    assert np.array_equal(train.images[:7], plain.split("train").images)
    assert (train.targets[7:] == UNLABELLED).all()
    # the hidden images are new renderings, not copies of a labelled split
    for name in ("teacher_train", "train", "test"):
        assert not any(np.array_equal(hidden, seen) for hidden in train.images[7:] for seen in plain.split(name).images)
    for name in ("teacher_train", "test"):
        assert np.array_equal(more.split(name).images, plain.split(name).images)
    assert more.fingerprint() != plain.fingerprint()
    assert module(num_unlabelled=0, **sizes).fingerprint() == plain.fingerprint()
    assert more.summary()["unlabelled"] == 9
    with pytest.raises(ValueError, match=r"data\.num_unlabelled must be >= 0, got -3"):
        module(num_unlabelled=-3, **sizes)


@pytest.mark.parametrize("value", ["many", 2.5, None])
def test_a_number_of_unlabelled_images_that_is_not_a_whole_number_is_refused_by_key(value):
    with pytest.raises(ValueError, match=r"data\.num_unlabelled must be a whole number >= 0, got "):
        SyntheticShapesDataModule(num_unlabelled=value, num_teacher_train=2, num_train=2, num_test=2)
    assert SyntheticShapesDataModule(num_unlabelled="3", num_teacher_train=2, num_train=2, num_test=2).num_unlabelled == 3


def test_images_without_labels_and_no_teacher_term_are_warned_about(caplog):
    """A labels-only loss takes steps on the unlabelled images without learning from them: the run says so."""
    sizes = dict(num_classes=4, image_size=16, num_teacher_train=6, num_train=7, num_test=6, seed=2)
    more = SyntheticShapesDataModule(num_unlabelled=9, **sizes)
    labels_only = parse_loss_terms({"ground_truth": {"weight": 1.0}})
    distilled = parse_loss_terms({"ground_truth": {"weight": 1.0}, "kd": {"weight": 1.0}})
    with caplog.at_level(logging.WARNING, logger="distill.engine.build"):
        assert warn_unlabelled_without_teacher(distilled, more) == 0
        assert warn_unlabelled_without_teacher(labels_only, SyntheticShapesDataModule(**sizes)) == 0
        assert not caplog.records
        assert warn_unlabelled_without_teacher(labels_only, more) == 9
    assert "holds 9 images without labels" in caplog.text and "data.num_unlabelled=0" in caplog.text
