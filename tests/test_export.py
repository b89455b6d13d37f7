"""ONNX / TorchScript export of a student checkpoint: outputs equal PyTorch's, dynamic batch, atomic writes, errors;
detector students (SSD, Faster R-CNN) scripted and traced with the same boxes, scores and labels as PyTorch."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from distill import export
from distill.export import ExportError, export_student, main
from distill.models import MobileNetV1
from distill.models.checkpoint import CheckpointError, save_student
from distill.models.detection import build_detector

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")

RESOLUTION = 64
KWARGS = {"width_multiplier": 0.25, "num_classes": 10}
META = {"resolution": RESOLUTION, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _student() -> MobileNetV1:
    """A 0.25 MobileNetV1 whose BatchNorm statistics are estimated on random images (not the identity of a fresh
    model), so its outputs are of order one and differ from image to image."""
    torch.manual_seed(0)
    model = MobileNetV1(**KWARGS)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    with torch.no_grad():
        model.train()
        for _ in range(2):
            model(torch.randn(16, 3, RESOLUTION, RESOLUTION))
        model.fc.weight.normal_(0.0, 0.5)
    return model.eval()


def _tolerance(expected: torch.Tensor) -> float:
    """The export contract: 1e-4 of the largest output magnitude (absolute 1e-4 for outputs within [-1, 1])."""
    return 1e-4 * max(1.0, float(expected.abs().max()))


@pytest.fixture(scope="module")
def student():
    return _student()


@pytest.fixture(scope="module")
def batch():
    return torch.randn(3, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, student):
    return save_student(tmp_path_factory.mktemp("run") / "student.ckpt", student, MobileNetV1, KWARGS, meta=META)


@pytest.fixture(scope="module")
def onnx_file(checkpoint):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return export_student(checkpoint, "onnx", opset=18)  # ONNX export takes seconds: once for the module


def test_reference_outputs_are_not_trivial(student, batch):
    # guards the comparisons below: a 1e-4 tolerance means nothing on outputs that are all ~0
    with torch.no_grad():
        output = student(batch)
    assert output.shape == (3, 10)
    assert output.abs().mean() > 0.1
    assert (output[0] - output[1]).abs().max() > 0.1


def test_onnx_matches_pytorch_on_a_batch_of_three(onnx_file, checkpoint, student, batch):
    import onnx
    import onnxruntime

    assert onnx_file == checkpoint.with_suffix(".onnx")
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    assert image.name == "image" and image.shape[1:] == [3, RESOLUTION, RESOLUTION]
    assert isinstance(image.shape[0], str)  # symbolic batch dimension
    (output,) = session.run(None, {"image": batch.numpy()})
    with torch.no_grad():
        expected = student(batch)
    assert output.shape == (3, 10)
    assert torch.allclose(torch.from_numpy(output), expected, atol=_tolerance(expected), rtol=0)

    model = onnx.load(str(onnx_file))
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["distill_meta"]) == META
    assert sorted(os.listdir(onnx_file.parent)) == ["student.ckpt", "student.onnx"]  # one file, no temporary


def test_torchscript_matches_pytorch_on_a_batch_of_three(checkpoint, student, batch, capsys):
    out = checkpoint.with_name("traced.pt")
    assert main([str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.startswith(str(out)) and "MB" in summary and "max abs diff" in summary

    extra = {"distill_meta.json": ""}
    traced = torch.jit.load(str(out), _extra_files=extra)
    with torch.no_grad():
        expected = student(batch)
        assert torch.allclose(traced(batch), expected, atol=_tolerance(expected), rtol=0)
    assert json.loads(extra["distill_meta.json"]) == META


def test_resolution_override_and_output_folder(tmp_path, student):
    ckpt = save_student(tmp_path / "student.ckpt", student, MobileNetV1, KWARGS, meta={})
    with pytest.raises(ValueError, match="resolution"):
        export_student(ckpt, "torchscript")  # meta has no resolution and none is given
    folder = tmp_path / "exports"
    folder.mkdir()
    path = export_student(ckpt, "torchscript", out=folder, resolution=32)
    assert path == folder / "student.pt"
    assert os.listdir(folder) == ["student.pt"]  # no temporary file left
    small = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = student(small)
        assert torch.allclose(torch.jit.load(str(path))(small), expected, atol=_tolerance(expected), rtol=0)


def test_failed_verification_keeps_the_old_file_and_leaves_no_temporary(tmp_path, checkpoint, monkeypatch):
    out = tmp_path / "model.pt"
    out.write_bytes(b"previous export")
    real_run = export._run_torchscript
    monkeypatch.setattr(export, "_run_torchscript", lambda path, images: real_run(path, images) + 0.01)
    with pytest.raises(ExportError, match=r"model\.pt.*differs from PyTorch by 0\.01 .*file not written"):
        export_student(checkpoint, "torchscript", out=out)
    assert out.read_bytes() == b"previous export"
    assert os.listdir(tmp_path) == ["model.pt"]


def test_onnx_without_onnxscript_says_what_to_install(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    with pytest.raises(ImportError, match=r"onnxscript.*distill\[export\]"):
        export_student(checkpoint, "onnx", out=tmp_path / "student.onnx")
    assert os.listdir(tmp_path) == []


def test_bad_inputs(tmp_path, checkpoint, capsys):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        export_student(tmp_path / "missing.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.ckpt"):
        export_student(corrupt, "torchscript")
    with pytest.raises(ValueError, match=r"'tflite'.*\['onnx', 'torchscript'\]"):
        export_student(checkpoint, "tflite")
    with pytest.raises(ValueError, match="opset"):
        export_student(checkpoint, "torchscript", opset=18)
    with pytest.raises(ValueError, match="positive"):
        export_student(checkpoint, "torchscript", resolution=0)

    with pytest.raises(SystemExit) as exited:
        main([str(checkpoint), "--format", "tflite"])
    assert exited.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path / "missing.ckpt")])
    assert exited.value.code == 1
    assert "student checkpoint not found" in capsys.readouterr().err


def test_out_equal_to_the_checkpoint_is_refused(tmp_path, student, capsys):
    ckpt = save_student(tmp_path / "student.ckpt", student, MobileNetV1, KWARGS, meta=META)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"would overwrite its input checkpoint .*student\.ckpt; choose another --out"):
        export_student(ckpt, "torchscript", out=ckpt)
    named_pt = save_student(tmp_path / "weights.pt", student, MobileNetV1, KWARGS, meta=META)
    with pytest.raises(ValueError, match=r"would overwrite its input checkpoint .*weights\.pt"):
        export_student(named_pt, "torchscript")  # the default output, weights.pt, is the checkpoint itself
    with pytest.raises(SystemExit) as exited:
        main([str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "." / "student.ckpt")])
    assert exited.value.code == 1 and "would overwrite" in capsys.readouterr().err
    assert ckpt.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["student.ckpt", "weights.pt"]


# --- detectors ------------------------------------------------------------------------------------------------------
DETECTOR_SIZE = 64
DETECTOR_OPTIONS = {"ssd": {}, "faster_rcnn": {"roi_output_size": 7, "rpn_pre_nms_top_n_test": 200,
                                               "rpn_post_nms_top_n_test": 50}}


def _detector(kind: str) -> torch.nn.Module:
    """A 0.25 MobileNetV1 detector whose BatchNorm statistics are estimated on (normalised) random images and whose
    class predictor is widened, so that it gives many detections of both classes with distinct scores."""
    torch.manual_seed(0)
    detector = build_detector(kind, backbone="mobilenet_v1", num_classes=2, size=DETECTOR_SIZE,
                              backbone_kwargs={"width_multiplier": 0.25}, options=DETECTOR_OPTIONS[kind])
    for module in detector.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        detector.train()
        maps = detector.backbone(detector.transform(list(torch.rand(8, 3, DETECTOR_SIZE, DETECTOR_SIZE)))[0].tensors)
        if kind == "faster_rcnn":
            detector.roi_heads.box_head(maps)  # the stride-32 stage runs on region crops: its statistics too
        for parameter in (detector.head if kind == "ssd" else detector.roi_heads.box_predictor).parameters():
            parameter.normal_(0.0, 0.1)
    return detector.eval()


@pytest.fixture(scope="module", params=["ssd", "faster_rcnn"])
def detector_checkpoint(request, tmp_path_factory):
    detector = _detector(request.param)
    meta = {"resolution": DETECTOR_SIZE, "task": "detection", "class_names": ["circle", "square"]}
    path = save_student(tmp_path_factory.mktemp(request.param) / "student.ckpt", detector, build_detector,
                        detector.spec, meta=meta)
    return request.param, detector, path


def _assert_same_detections(actual, expected, size: int = DETECTOR_SIZE):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert set(got) == {"boxes", "scores", "labels"}
        assert len(want["boxes"]) >= 10 and set(want["labels"].tolist()) == {1, 2}  # a real comparison
        assert torch.equal(got["labels"].long(), want["labels"])
        assert torch.allclose(got["boxes"], want["boxes"], atol=1e-4 * size, rtol=0)
        assert torch.allclose(got["scores"], want["scores"], atol=1e-4, rtol=0)


def test_detector_torchscript_gives_pytorchs_detections(detector_checkpoint, capsys):
    kind, detector, ckpt = detector_checkpoint
    out = ckpt.with_name("detector.pt")
    assert main([str(ckpt), "--format", "torchscript", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(str(out))
    extra = {"distill_meta.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["distill_meta.json"])["class_names"] == ["circle", "square"]
    generator = torch.Generator().manual_seed(5)
    # a list of images of any size, like the eager detector (the detector resizes them itself)
    images = [torch.rand(3, DETECTOR_SIZE, DETECTOR_SIZE, generator=generator),
              torch.rand(3, 80, 96, generator=generator)]
    with torch.no_grad():
        _assert_same_detections(scripted(images), detector(images), size=96)
    assert sorted(os.listdir(out.parent)) == ["detector.pt", "student.ckpt"]


def test_detector_onnx_gives_pytorchs_detections(detector_checkpoint):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    kind, detector, ckpt = detector_checkpoint
    path = export_student(ckpt, "onnx")
    assert path == ckpt.with_suffix(".onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    assert image_input.name == "image" and image_input.shape == [3, DETECTOR_SIZE, DETECTOR_SIZE]
    names = [output.name for output in session.get_outputs()]
    assert sorted(names) == ["boxes", "labels", "scores"]
    image = torch.rand(3, DETECTOR_SIZE, DETECTOR_SIZE, generator=torch.Generator().manual_seed(6))
    outputs = dict(zip(names, session.run(None, {"image": image.numpy()})))
    with torch.no_grad():
        _assert_same_detections([{k: torch.from_numpy(v) for k, v in outputs.items()}], detector([image]))
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["distill_meta"])["resolution"] == DETECTOR_SIZE


def test_detector_export_failures_are_clear_and_leave_nothing(detector_checkpoint, tmp_path, monkeypatch):
    kind, _, ckpt = detector_checkpoint
    name = "SSD" if kind == "ssd" else "FasterRCNN"

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'torchvision::nms' to ONNX opset version 20 is not supported")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(ExportError, match=rf"ONNX export of {name} is not supported by this PyTorch / torchvision "
                                          r"\(RuntimeError: .*torchvision::nms.*\); use --format torchscript"):
        export_student(ckpt, "onnx", out=tmp_path / "student.onnx")
    real_run = export._run_torchscript

    def shifted(path, images):
        return [{**d, "boxes": d["boxes"] + 1.0} for d in real_run(path, images)]

    monkeypatch.setattr(export, "_run_torchscript", shifted)
    with pytest.raises(ExportError, match=r"student.pt: exported detector's boxes differ from PyTorch by 1 .*file not "
                                          r"written"):
        export_student(ckpt, "torchscript", out=tmp_path / "student.pt")
    with pytest.raises(ValueError, match="detector ONNX export needs opset >= 11"):
        export_student(ckpt, "onnx", out=tmp_path / "student.onnx", opset=10)
    assert os.listdir(tmp_path) == []
