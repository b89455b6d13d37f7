"""ONNX / TorchScript export of a student checkpoint: outputs equal PyTorch's, dynamic batch, atomic writes, errors."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from distill import export
from distill.checkpoint import CheckpointError, save_student
from distill.export import ExportError, export_student, main
from distill.models import MobileNetV1

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
    return save_student(tmp_path_factory.mktemp("run") / "student.ckpt", student, "mobilenet_v1", KWARGS, meta=META)


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
    ckpt = save_student(tmp_path / "student.ckpt", student, "mobilenet_v1", KWARGS, meta={})
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
