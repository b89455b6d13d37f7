"""ONNX / TorchScript export of a student checkpoint: outputs equal PyTorch's, dynamic batch, atomic writes, errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from distill import export
from distill.checkpoint import CheckpointError, save_student
from distill.export import ExportError, export_student, main
from distill.models import MobileNetV1

RESOLUTION = 64
KWARGS = {"width_multiplier": 0.25, "num_classes": 10}
META = {"resolution": RESOLUTION, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _student() -> MobileNetV1:
    """A 0.25 MobileNetV1 with random BatchNorm statistics, so its outputs are far from zero and differ per input."""
    torch.manual_seed(0)
    model = MobileNetV1(**KWARGS)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.8, 1.6)
                module.bias.normal_(0.1, 0.1)
            elif isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 0.5)
    return model.eval()


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
    assert torch.allclose(torch.from_numpy(output), expected, atol=1e-4, rtol=0)

    model = onnx.load(str(onnx_file))
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["distill_meta"]) == META
    assert not onnx_file.with_name(onnx_file.name + ".data").exists()  # weights inside the one file


def test_torchscript_matches_pytorch_on_a_batch_of_three(checkpoint, student, batch, capsys):
    out = checkpoint.with_name("traced.pt")
    assert main([str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.startswith(str(out)) and "MB" in summary and "max abs diff" in summary

    extra = {"distill_meta.json": ""}
    traced = torch.jit.load(str(out), _extra_files=extra)
    with torch.no_grad():
        assert torch.allclose(traced(batch), student(batch), atol=1e-4, rtol=0)
    assert json.loads(extra["distill_meta.json"]) == META


def test_default_output_name_and_resolution_override(tmp_path, student):
    ckpt = save_student(tmp_path / "student.ckpt", student, "mobilenet_v1", KWARGS, meta={})
    with pytest.raises(ValueError, match="resolution"):
        export_student(ckpt, "torchscript")  # meta has no resolution and none is given
    path = export_student(ckpt, "torchscript", resolution=32)
    assert path == tmp_path / "student.pt"
    assert sorted(os.listdir(tmp_path)) == ["student.ckpt", "student.pt"]  # no temporary file left
    small = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(path))(small), student(small), atol=1e-4, rtol=0)


def test_failed_verification_keeps_the_old_file_and_leaves_no_temporary(tmp_path, checkpoint, monkeypatch):
    out = tmp_path / "model.pt"
    out.write_bytes(b"previous export")
    real_run = export._run_torchscript
    monkeypatch.setattr(export, "_run_torchscript", lambda path, images: real_run(path, images) + 1e-3)
    with pytest.raises(ExportError, match=r"model\.pt.*differs from PyTorch by 0\.001"):
        export_student(checkpoint, "torchscript", out=out)
    assert out.read_bytes() == b"previous export"
    assert os.listdir(tmp_path) == ["model.pt"]


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
