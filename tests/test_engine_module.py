"""DistillationModule: frozen teacher, loss terms, adapters, cached vs live teacher, NaN handling."""

import pytest
import torch
from torch import nn

from distill.losses import KDLoss
from distill.models import MobileNetV1
from distill.engine.distillation import DistillationModule, LossTermSpec, parse_loss_terms
from distill.tasks import ClassificationTask


def _module(terms, *, ground_truth_weight=0.0, teacher=None):
    torch.manual_seed(0)
    student = MobileNetV1(width_multiplier=0.25, num_classes=5)
    teacher = teacher or MobileNetV1(width_multiplier=0.5, num_classes=5)
    terms = dict(terms)
    if ground_truth_weight:
        terms["ground_truth"] = {"weight": ground_truth_weight}
    return DistillationModule(student, teacher, ClassificationTask(), parse_loss_terms(terms),
                              optimizer=lambda params: torch.optim.SGD(params, lr=0.1), scheduler="none",
                              student_resolution=32)


def _total(module, losses):
    weights = module.loss_weights()
    return sum(weights[name] * value for name, value in losses.items())


def _batch(n=4):
    generator = torch.Generator().manual_seed(1)
    return {"image": torch.randn(n, 3, 32, 32, generator=generator), "target": torch.tensor([0, 1, 2, 3][:n]),
            "index": torch.arange(n), "view": torch.zeros(n, dtype=torch.long)}


def test_parse_loss_terms_mapping_and_list_forms():
    specs = parse_loss_terms({"kd": {"weight": 0.5, "temperature": 2.0},
                              "hint": {"name": "fitnet", "student": "stage3", "teacher": "layer2"},
                              "off": {"name": "kd", "weight": None}})
    assert specs[0] == LossTermSpec(id="kd", name="kd", weight=0.5, kwargs={"temperature": 2.0})
    assert (specs[1].name, specs[1].student, specs[1].teacher, specs[1].weight) == ("fitnet", "stage3", "layer2", 1.0)
    assert len(specs) == 2  # weight null switches a term off
    listed = parse_loss_terms([{"name": "kd", "weight": 1.0}, {"name": "rkd", "weight": 2.0}])
    assert [s.id for s in listed] == ["kd_0", "rkd_1"]
    with pytest.raises(ValueError, match=r"loss.terms\[0\] has no 'name'"):
        parse_loss_terms([{"weight": 1.0}])


def test_teacher_is_frozen_in_eval_mode_and_not_optimised():
    module = _module({"kd": {}})
    module.train()
    assert not module.teacher.training and module.student.training
    assert all(not p.requires_grad for p in module.teacher.parameters())
    optimised = {id(p) for p in module.trainable_parameters()}
    assert optimised == {id(p) for p in module.student.parameters()}
    loss = _total(module, module.compute_losses(_batch()))
    loss.backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.student.parameters())
    # the teacher's BN statistics do not move during training steps
    before = module.teacher.stem[1].running_mean.clone()
    module.compute_losses(_batch())
    assert torch.equal(before, module.teacher.stem[1].running_mean)


def test_total_is_the_weighted_sum_of_terms_plus_ground_truth():
    module = _module({"kd": {"weight": 0.3, "temperature": 2.0}, "second": {"name": "kd", "weight": 2.0}},
                     ground_truth_weight=0.5)
    module.eval()
    batch = _batch()
    losses = module.compute_losses(batch)
    assert set(losses) == {"kd", "second", "ground_truth"}
    with torch.no_grad():
        student, teacher = module.student(batch["image"]), module.teacher(batch["image"])
    assert losses["kd"].item() == pytest.approx(KDLoss(2.0)(student, teacher).item(), rel=1e-5)
    assert losses["second"].item() == pytest.approx(KDLoss(4.0)(student, teacher).item(), rel=1e-5)
    ce = nn.functional.cross_entropy(student, batch["target"]).item()
    assert losses["ground_truth"].item() == pytest.approx(ce, rel=1e-5)
    expected = 0.3 * losses["kd"] + 2.0 * losses["second"] + 0.5 * losses["ground_truth"]
    assert _total(module, losses).item() == pytest.approx(expected.item(), rel=1e-6)


def test_feature_terms_get_adapters_where_shapes_differ():
    module = _module({"hint": {"name": "fitnet", "student": "stage3", "teacher": "stage3"},
                      "at": {"name": "attention", "student": "stage4", "teacher": "stage4"},
                      "kd": {}})
    adapter = module.adapters["hint"]
    # 0.25 width: 64 channels at stage3; 0.5 teacher: 128 channels -> a 1x1 conv adapter
    assert adapter.proj[0].in_channels == 64 and adapter.proj[0].out_channels == 128
    assert isinstance(module.adapters["at"], nn.Identity)  # attention maps compare across channel counts
    assert isinstance(module.adapters["kd"], nn.Identity)
    assert {id(p) for p in adapter.parameters()} <= {id(p) for p in module.trainable_parameters()}
    losses = module.compute_losses(_batch())
    assert all(torch.isfinite(v) for v in losses.values())


def test_unknown_layer_names_are_reported_with_the_model():
    with pytest.raises(ValueError, match="layer 'stage9' of the student"):
        _module({"hint": {"name": "fitnet", "student": "stage9", "teacher": "stage3"}})
    with pytest.raises(ValueError, match="unknown loss|Unknown loss|kdd"):
        _module({"x": {"name": "kdd"}})


def test_cached_teacher_outputs_give_the_same_losses_as_the_live_teacher():
    module = _module({"kd": {}, "hint": {"name": "fitnet", "student": "stage3", "teacher": "stage3"}})
    module.eval()
    batch = _batch()
    live = module.compute_losses(batch)
    outputs = module.teacher_forward(batch)

    class FakeCache:
        def get(self, indices, views):
            assert torch.equal(indices, batch["index"]) and torch.equal(views, batch["view"])
            return outputs

    module.teacher_cache = FakeCache()
    cached = module.compute_losses(batch)
    for name in live:
        assert cached[name].item() == pytest.approx(live[name].item(), rel=1e-6)


def test_ground_truth_term_takes_only_a_weight():
    with pytest.raises(ValueError, match="ground_truth term takes only a weight"):
        parse_loss_terms({"ground_truth": {"weight": 1.0, "temperature": 2.0}})


def test_labels_only_module_needs_no_teacher_and_trains_on_cross_entropy():
    torch.manual_seed(0)
    student = MobileNetV1(width_multiplier=0.25, num_classes=5)
    module = DistillationModule(student, None, ClassificationTask(), parse_loss_terms({"ground_truth": {}}),
                                optimizer=lambda params: torch.optim.SGD(params, lr=0.1), student_resolution=32)
    batch = _batch()
    losses = module.compute_losses(batch)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(student(batch["image"]), batch["target"]).item()
    assert list(losses) == ["ground_truth"] and losses["ground_truth"].item() == pytest.approx(expected, rel=1e-5)


def test_non_finite_loss_stops_training_naming_the_term():
    module = _module({"kd": {}})
    batch = _batch()
    batch["image"][0, 0, 0, 0] = float("nan")
    module.log = lambda *args, **kwargs: None
    with pytest.raises(FloatingPointError, match="loss term 'kd' became nan"):
        module.training_step(batch, 0)


def test_nothing_to_train_on_is_an_error():
    with pytest.raises(ValueError, match="nothing to train on"):
        _module({}, ground_truth_weight=0.0)


def test_training_checkpoints_leave_out_the_frozen_teacher_and_refuse_another_one():
    module = _module({"kd": {}})
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not [key for key in checkpoint["state_dict"] if key.startswith("teacher.")]
    assert any(key.startswith("student.") for key in checkpoint["state_dict"])
    # loading puts the rebuilt teacher's weights back, so a strict load of the whole module succeeds
    resumed = _module({"kd": {}})
    resumed.on_load_checkpoint(checkpoint)
    resumed.load_state_dict(checkpoint["state_dict"], strict=True)
    for key, value in module.teacher.state_dict().items():
        assert torch.equal(resumed.teacher.state_dict()[key], value), key
    torch.manual_seed(5)
    other = _module({"kd": {}}, teacher=MobileNetV1(width_multiplier=0.5, num_classes=5))
    with pytest.raises(ValueError, match="trained with another teacher"):
        other.on_load_checkpoint({"state_dict": dict(checkpoint["state_dict"]),
                                  "distill_teacher_fingerprint": checkpoint["distill_teacher_fingerprint"]})


def test_evaluation_gathers_outputs_into_one_tensor_without_keeping_them_per_batch():
    """``predict`` copies each batch's outputs into one tensor: kept per batch until the end, they pinned the memory
    of every batch in between and evaluation memory grew with the test set."""
    import weakref

    from torch.utils.data import DataLoader

    from distill.tasks.base import predict

    class Recorded(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(12, 3)
            self.outputs, self.alive = [], []

        def forward(self, images):
            self.alive.append(sum(ref() is not None for ref in self.outputs))
            output = self.linear(images.flatten(1))
            self.outputs.append(weakref.ref(output))
            return output

    samples = [{"image": torch.randn(3, 2, 2), "target": torch.tensor(i % 3)} for i in range(23)]
    model = Recorded()
    for loader in (DataLoader(samples, batch_size=5), (batch for batch in DataLoader(samples, batch_size=5))):
        model.outputs.clear(), model.alive.clear()
        outputs, targets = predict(model, loader)
        assert model.alive == [0] * 5  # nothing of an earlier batch is held
        with torch.no_grad():
            expected = model.linear(torch.stack([sample["image"] for sample in samples]).flatten(1))
        assert torch.allclose(outputs, expected, atol=1e-6) and outputs.shape == (23, 3)
        assert targets.tolist() == [i % 3 for i in range(23)]
