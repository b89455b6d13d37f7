"""Export a trained student (student.ckpt) to ONNX or TorchScript, verified against PyTorch.

    python -m distill.export outputs/.../student.ckpt --format onnx          # -> outputs/.../student.onnx
    python -m distill.export outputs/.../student.ckpt --format torchscript   # -> outputs/.../student.pt

The model is traced with one dummy image at the checkpoint's resolution (``meta["resolution"]``); the ONNX
graph keeps the batch dimension dynamic. ONNX uses PyTorch's ``torch.export``-based exporter, which needs the
``onnxscript`` package (``pip install "distill[export]"``). The exported file is written under a temporary
name, run once on a random batch and compared with the PyTorch student, and only renamed into place when the
outputs agree within ``tolerance``: a failed export never leaves a file behind. The checkpoint's ``meta``
(resolution, normalisation mean/std, ...) travels with the file: ONNX metadata property ``distill_meta``,
TorchScript extra file ``distill_meta.json``, both JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from distill.checkpoint import load_student
from distill.io import atomic_write

__all__ = ["FORMATS", "META_KEY", "TOLERANCE", "ExportError", "export_student", "main"]

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # format -> default file extension
META_KEY = "distill_meta"
TOLERANCE = 1e-4
_INPUT, _OUTPUT = "image", "output"
# TorchScript is deprecated upstream (PyTorch 2.9+) but still works; asked for explicitly, its notices are noise.
_JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
_VERIFY_BATCH = 2  # more than the traced batch of 1, so verification also exercises the batch dimension


class ExportError(RuntimeError):
    """The exported model does not reproduce the PyTorch student."""


def _resolution(model: nn.Module, resolution: int | None, checkpoint_path: Path) -> int:
    if resolution is None:
        resolution = getattr(model, "distill_meta", {}).get("resolution")
        if resolution is None:
            raise ValueError(f"{checkpoint_path} has no meta['resolution']; pass resolution=N (--resolution N)")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution!r}")
    return resolution


def _export_onnx(model: nn.Module, dummy: torch.Tensor, path: str, opset: int | None, meta_json: str) -> None:
    try:
        import onnxscript  # noqa: F401  (torch.export-based ONNX exporter needs it)
    except ImportError as error:
        raise ImportError('ONNX export needs onnxscript, onnx and onnxruntime: pip install "distill[export]"') from error
    program = torch.onnx.export(
        model, (dummy,), None,
        input_names=[_INPUT], output_names=[_OUTPUT],
        dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
        opset_version=opset, dynamo=True, verbose=False,
    )
    produced = program.model.opset_imports.get("")
    if opset is not None and produced != opset:
        raise ValueError(f"opset {opset} is not available from this PyTorch's ONNX exporter (it produced opset "
                         f"{produced}); leave opset out or ask for {produced} or later")
    program.model.metadata_props[META_KEY] = meta_json
    program.save(path, external_data=False)  # one self-contained file


def _run_onnx(path: str, images: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (output,) = session.run([_OUTPUT], {_INPUT: images.numpy()})
    return torch.from_numpy(output)


def _export_torchscript(model: nn.Module, dummy: torch.Tensor, path: str, meta_json: str) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        traced = torch.jit.trace(model, dummy)
        torch.jit.save(traced, path, _extra_files={f"{META_KEY}.json": meta_json})


def _run_torchscript(path: str, images: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        return torch.jit.load(path, map_location="cpu")(images)


def _export(checkpoint_path: str | os.PathLike, format: str, out: str | os.PathLike | None,
            resolution: int | None, opset: int | None, tolerance: float) -> tuple[Path, float]:
    """Export and verify; returns (written path, max abs difference to PyTorch)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {sorted(FORMATS)}")
    if opset is not None and format != "onnx":
        raise ValueError(f"opset applies to ONNX export only, not to format {format!r}")
    checkpoint_path = Path(checkpoint_path)
    model = load_student(checkpoint_path)  # FileNotFoundError / CheckpointError name the file
    size = _resolution(model, resolution, checkpoint_path)
    out = Path(out) if out is not None else checkpoint_path.with_suffix(FORMATS[format])
    meta_json = json.dumps({**getattr(model, "distill_meta", {}), "resolution": size}, sort_keys=True)

    generator = torch.Generator().manual_seed(0)
    dummy = torch.randn(1, 3, size, size, generator=generator)
    images = torch.randn(_VERIFY_BATCH, 3, size, size, generator=generator)
    with torch.no_grad():
        expected = model(images)
    difference = float("nan")

    def write_and_verify(tmp: str) -> None:
        nonlocal difference
        with torch.no_grad():
            if format == "onnx":
                _export_onnx(model, dummy, tmp, opset, meta_json)
                actual = _run_onnx(tmp, images)
            else:
                _export_torchscript(model, dummy, tmp, meta_json)
                actual = _run_torchscript(tmp, images)
        if actual.shape != expected.shape:
            raise ExportError(f"{out}: exported model gives shape {tuple(actual.shape)} for a batch of "
                              f"{_VERIFY_BATCH}, PyTorch gives {tuple(expected.shape)}; file not written")
        difference = float((actual.float() - expected.float()).abs().max())
        if not difference <= tolerance:  # also catches NaN
            raise ExportError(f"{out}: exported model differs from PyTorch by {difference:.3g} "
                              f"(max abs, tolerance {tolerance:g}); file not written")

    return atomic_write(out, write_and_verify), difference


def export_student(checkpoint_path: str | os.PathLike, format: str = "onnx", out: str | os.PathLike | None = None,
                   resolution: int | None = None, *, opset: int | None = None,
                   tolerance: float = TOLERANCE) -> Path:
    """Export the student of a student.ckpt; returns the written file (default: next to the checkpoint).

    ``resolution`` defaults to the checkpoint's ``meta["resolution"]``; ``opset`` to the exporter's default.
    Raises ExportError, leaving no file, when the exported model's output differs from PyTorch's by more
    than ``tolerance`` (max abs) on a random batch.
    """
    path, _ = _export(checkpoint_path, format, out, resolution, opset, tolerance)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m distill.export",
        description="Export a student checkpoint to ONNX (dynamic batch) or TorchScript and verify it against PyTorch.",
    )
    parser.add_argument("checkpoint", help="a student.ckpt written by a distill run")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx",
                        help="output format (default: onnx; TorchScript is deprecated upstream but still loads "
                             "with torch.jit.load)")
    parser.add_argument("--out", default=None,
                        help="output file (default: next to the checkpoint, student.onnx / student.pt)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="input height and width (default: the checkpoint's meta['resolution'])")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the exporter's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        path, difference = _export(args.checkpoint, args.format, args.out, args.resolution, args.opset, TOLERANCE)
    except (FileNotFoundError, ValueError, ImportError, ExportError) as error:  # CheckpointError is a ValueError
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(f"{path}  {path.stat().st_size / 1e6:.2f} MB  {args.format}  max abs diff to PyTorch {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
