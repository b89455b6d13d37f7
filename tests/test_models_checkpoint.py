"""The model registry and the one student checkpoint format (version 2), and the older files it still reads."""

from __future__ import annotations

import os

import pytest
import timm
import torch
from torch import nn

import distill
from distill.models import MobileNetV1, registry
from distill.models.checkpoint import (
    CheckpointError,
    load_student,
    read_student_checkpoint,
    save_student,
)
from distill.models.registry import (
    UnknownBuilderError,
    build_model,
    builder_path,
    list_builders,
    register_builder,
)
from distill.models.timm_models import create_timm_model

MOBILENET = "distill.models.mobilenet.MobileNetV1"
TIMM = "distill.models.timm_models.create_timm_model"
DETECTOR = "distill.models.detection.detectors.build_detector"
KWARGS = {"width_multiplier": 0.25, "num_classes": 3}


def _outputs(model: nn.Module, seed: int = 1) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))


@pytest.fixture
def fresh_registry(monkeypatch):
    """Builders registered by a test disappear after it."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))


def tiny_linear(features: int = 4) -> nn.Module:
    return nn.Linear(features, 2)


# --- registry -----------------------------------------------------------------------------------------------------
def test_the_package_builders_are_registered_under_their_import_paths():
    assert {MOBILENET, TIMM, DETECTOR, "distill.models.teachers.facenet.build_facenet_teacher",
            "distill.models.teachers.timm_teacher.build_timm_teacher"} <= set(list_builders())
    assert builder_path(MobileNetV1) == MOBILENET
    assert builder_path(create_timm_model) == TIMM
    # a Hydra _target_ may name a re-export; the key is where the builder is defined
    assert builder_path("distill.models.MobileNetV1") == MOBILENET
    assert builder_path("distill.models.detection.build_detector") == DETECTOR
    net = build_model("distill.models.MobileNetV1", **KWARGS)
    assert type(net) is MobileNetV1 and net.config["width_multiplier"] == 0.25 and net.num_classes == 3


def test_unregistered_builders_are_refused_with_the_registered_list(fresh_registry):
    with pytest.raises(UnknownBuilderError, match=r"'distill.models.registry.build_model' is not a registered model "
                                                  r"builder.*registered: .*distill.models.mobilenet.MobileNetV1"):
        build_model("distill.models.registry.build_model")  # exists and is callable, but is no builder
    with pytest.raises(UnknownBuilderError, match="not a registered model builder"):
        builder_path(tiny_linear)
    with pytest.raises(UnknownBuilderError, match=r"Did you mean: distill.models.mobilenet.MobileNetV1"):
        builder_path("distill.models.mobilenet.MobileNetV2")
    register_builder(tiny_linear)
    key = f"{tiny_linear.__module__}.tiny_linear"
    assert builder_path(tiny_linear) == key and key in list_builders()
    assert build_model(key, features=5).in_features == 5

    def local_builder() -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match="define it at module level"):
        register_builder(local_builder)


def test_a_string_never_imports_code_outside_distill_models(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_builders.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnknownBuilderError, match="'evil_builders.build' is not a registered model builder"):
        build_model("evil_builders.build")
    assert not marker.exists()


def test_timm_builder_names_unknown_models_with_close_matches():
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet_18'.*Did you mean: resnet18"):
        create_timm_model("resnet_18")
    with pytest.raises(ValueError, match="pretrained weights are never downloaded"):
        create_timm_model("resnet18", pretrained=True)
    net = build_model(TIMM, model_name="test_resnet", num_classes=3)
    assert type(net).__module__.startswith("timm.") and net.num_classes == 3


# --- version 2 ----------------------------------------------------------------------------------------------------
def test_version_2_round_trip_is_plain_data(tmp_path):
    torch.manual_seed(0)
    student = MobileNetV1(**KWARGS)
    meta = {"resolution": 32, "mean": [0.5, 0.5, 0.5], "class_names": ("a", "b", "c")}
    path = save_student(tmp_path / "student.ckpt", student, "distill.models.MobileNetV1", KWARGS, meta=meta)
    payload = torch.load(path, map_location="cpu", weights_only=True)  # no pickled objects
    assert set(payload) == {"format", "version", "builder", "kwargs", "state_dict", "meta"}
    assert (payload["format"], payload["version"], payload["builder"]) == ("distill.student", 2, MOBILENET)
    assert payload["kwargs"] == KWARGS and payload["meta"]["class_names"] == ["a", "b", "c"]
    loaded = distill.load_student(path)
    assert type(loaded) is MobileNetV1 and not loaded.training
    assert loaded.distill_meta == {**meta, "class_names": ["a", "b", "c"]}
    assert torch.equal(_outputs(loaded), _outputs(student))
    assert os.listdir(tmp_path) == ["student.ckpt"]  # written atomically: no temporary left


def test_timm_student_round_trip(tmp_path):
    torch.manual_seed(0)
    kwargs = {"model_name": "test_resnet", "num_classes": 3}
    student = create_timm_model(**kwargs)
    path = save_student(tmp_path / "student.ckpt", student, create_timm_model, kwargs)
    assert torch.load(path, weights_only=True)["builder"] == TIMM
    assert torch.equal(_outputs(load_student(path)), _outputs(student))


def test_saving_refuses_what_could_not_be_loaded(tmp_path):
    student = MobileNetV1(**KWARGS)
    with pytest.raises(UnknownBuilderError, match="'mobilenet_v1' is not a registered model builder"):
        save_student(tmp_path / "a.ckpt", student, "mobilenet_v1", KWARGS)  # a student name is not a builder
    with pytest.raises(TypeError, match=r"kwargs.dtype holds a dtype; checkpoints hold plain data only"):
        save_student(tmp_path / "b.ckpt", student, MobileNetV1, {**KWARGS, "dtype": torch.float32})
    assert os.listdir(tmp_path) == []


# --- older files --------------------------------------------------------------------------------------------------
def test_version_1_files_still_load(tmp_path):
    torch.manual_seed(0)
    mobilenet, resnet = MobileNetV1(**KWARGS), create_timm_model("test_resnet", num_classes=3)
    for name, model, kwargs in (("mobilenet_v1", mobilenet, KWARGS), ("test_resnet", resnet, {"num_classes": 3})):
        path = tmp_path / f"{name}.ckpt"
        torch.save({"format": "distill.student", "version": 1, "student": {"name": name, "kwargs": kwargs},
                    "state_dict": model.state_dict(), "meta": {"resolution": 32}}, path)
        payload = read_student_checkpoint(path)
        assert payload["version"] == 1 and payload["builder"] == (MOBILENET if model is mobilenet else TIMM)
        loaded = load_student(path)
        assert type(loaded) is type(model) and loaded.distill_meta == {"resolution": 32}
        assert torch.equal(_outputs(loaded), _outputs(model))
    torch.save({"format": "distill.student", "version": 1, "student": {"name": "mobilenet_v2", "kwargs": {}},
                "state_dict": {}}, tmp_path / "gone.ckpt")
    with pytest.raises(CheckpointError, match=r"gone.ckpt: cannot rebuild student 'mobilenet_v2'"):
        load_student(tmp_path / "gone.ckpt")


def test_errors_name_the_file_and_what_was_expected(tmp_path, monkeypatch):
    student = MobileNetV1(**KWARGS)
    good = torch.load(save_student(tmp_path / "good.ckpt", student, MobileNetV1, KWARGS), weights_only=True)

    def write(name: str, payload) -> str:
        torch.save(payload, tmp_path / name)
        return str(tmp_path / name)

    cases = [
        (write("tensor.ckpt", torch.zeros(3)), r"tensor.ckpt is not a distill student checkpoint .*found a Tensor"),
        (write("lightning.ckpt", {"state_dict": {}, "pytorch-lightning_version": "2.4"}),
         r"lightning.ckpt is not a distill student checkpoint.*Lightning training checkpoint; use the run's student"),
        (write("future.ckpt", {**good, "version": 3}),
         r"future.ckpt has student checkpoint version 3; this distill reads versions 1 and 2"),
        (write("evil.ckpt", {**good, "builder": "os.system", "kwargs": {"command": "true"}}),
         r"evil.ckpt: unknown builder: 'os.system' is not a registered model builder"),
        (write("args.ckpt", {**good, "kwargs": {"width": 0.25}}),
         r"args.ckpt: cannot rebuild the student with distill.models.mobilenet.MobileNetV1"),
        (write("shapes.ckpt", {**good, "kwargs": {**KWARGS, "width_multiplier": 0.5}}),
         r"shapes.ckpt: weights do not fit distill.models.mobilenet.MobileNetV1.*wrong shape \['stem.conv.weight'"),
        (write("noweights.ckpt", {k: v for k, v in good.items() if k != "state_dict"}),
         r"noweights.ckpt has no 'state_dict' entry"),
        (write("detector.ckpt", {"format": "distill.detector", "version": 1, "detector": {"kind": "ssd"}}),
         r"detector.ckpt has no 'detector' entry with \['kind', 'backbone'"),
    ]
    for path, message in cases:
        with pytest.raises(CheckpointError, match=message):
            load_student(path)
    with pytest.raises(FileNotFoundError, match="student checkpoint not found: .*missing.ckpt"):
        load_student(tmp_path / "missing.ckpt")


def test_a_width_sweep_works_for_timm_families_that_name_their_width():
    from distill.models.timm_models import create_timm_model, width_variant

    half = create_timm_model("mobilenetv2_100", width_multiplier=0.5, num_classes=3)
    reference = timm.create_model("mobilenetv2_050", num_classes=3)
    assert [p.shape for p in half.parameters()] == [p.shape for p in reference.parameters()]
    assert width_variant("mobilenetv3_large_100", 0.75) == "mobilenetv3_large_075"
    with pytest.raises(ValueError, match=r"the widths of mobilenetv2_\* are \[0.35, 0.5, 0.75, 1.0, 1.4\]"):
        create_timm_model("mobilenetv2_100", width_multiplier=0.3)
    with pytest.raises(ValueError, match="has no width in its name"):
        create_timm_model("resnet18", width_multiplier=0.5)
