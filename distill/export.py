"""Export a trained student (student.ckpt) to ONNX or TorchScript, verified against PyTorch.

    python -m distill.export outputs/.../student.ckpt --format onnx          # -> outputs/.../student.onnx
    python -m distill.export outputs/.../student.ckpt --format torchscript   # -> outputs/.../student.pt

Classifiers and embedders: the model is traced with dummy images at the checkpoint's resolution
(``meta["resolution"]``). It takes one input ``image`` (B, 3, R, R), normalised as in training
(``meta["mean"]``/``meta["std"]``), and gives one output ``output``; the ONNX graph keeps the batch dimension B
dynamic. ONNX uses PyTorch's ``torch.export``-based exporter, which needs the ``onnxscript`` package
(``pip install "distill[export]"``).

The file is written under a temporary name, run once on a random batch and compared with the PyTorch
student, and renamed into place only when the outputs agree: max abs difference <= ``tolerance`` (1e-4)
x max(1, largest |output|). A failed export never leaves a file behind. The checkpoint's ``meta`` travels
with the file as JSON: ONNX metadata property ``distill_meta``, TorchScript extra file ``distill_meta.json``.

Detectors (torchvision SSD / Faster R-CNN students of the coco recipe) take images, not a normalised batch:

- TorchScript: the detector is scripted (``torch.jit.script``, not traced: its box decoding and NMS depend on
  the data). The file takes a list of (3, H, W) float images in [0, 1], of any size, and returns a list of
  {"boxes" (N, 4) in input pixels, "scores" (N,), "labels" (N,)} dicts, like the eager detector in eval mode.
  ``import torchvision`` before ``torch.jit.load``: the file calls torchvision's NMS and RoIAlign operators.
- ONNX: torch.export cannot capture the data-dependent NMS, so the TorchScript-based exporter (torchvision's
  supported path, opset >= 11) is used. The graph takes one image ``image`` (3, R, R) at the checkpoint's
  resolution and gives the detector's outputs by name (``boxes``, ``scores``, ``labels``, in its order).

Both are verified on random images: the same number of detections, equal labels, and boxes and scores within
the tolerance above (relative to the largest box coordinate / score). A detector that cannot be scripted or
exported, or whose exported file does not reproduce it, raises ExportError (the ONNX one suggests torchscript)
and writes nothing.
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
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.ssd import SSD

from distill.core.deploy import INPUT_NAME, META_KEY, OUTPUT_NAME, write_onnx
from distill.core.io import atomic_write
from distill.models.checkpoint import load_student

__all__ = ["FORMATS", "META_KEY", "TOLERANCE", "ExportError", "export_student", "main"]

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # format -> default file extension
TOLERANCE = 1e-4
_INPUT, _OUTPUT = INPUT_NAME, OUTPUT_NAME
# TorchScript is deprecated upstream (PyTorch 2.9+) but still works; asked for explicitly, its notices are noise.
_JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
# Traced with a batch of 2: torch.export turns a dimension of size 1 into a constant, which would fix the batch.
_TRACE_BATCH = 2
_VERIFY_BATCH = 3  # another batch size than the traced one, so verification exercises the dynamic batch
_DETECTOR_MIN_OPSET = 11


class ExportError(RuntimeError):
    """The exported model does not reproduce the PyTorch student, or the student cannot be exported so."""


def _resolution(model: nn.Module, resolution: int | None, checkpoint_path: Path) -> int:
    if resolution is None:
        resolution = getattr(model, "distill_meta", {}).get("resolution")
        if resolution is None and _is_detector(model):
            resolution = getattr(model, "spec", {}).get("size")  # build_detector's input size
        if resolution is None:
            raise ValueError(f"{checkpoint_path} has no meta['resolution']; pass resolution=N (--resolution N)")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution!r}")
    return resolution


def _export_onnx(model: nn.Module, dummy: torch.Tensor, path: str, opset: int | None, meta_json: str) -> None:
    # The one ONNX writer (distill.core.deploy), shared with the compress stage and the benchmarks.
    write_onnx(model, dummy, path, opset=opset, metadata={META_KEY: meta_json})


def _run_onnx(path: str, images: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (output,) = session.run([_OUTPUT], {_INPUT: images.numpy()})
    return torch.from_numpy(output)


def _export_torchscript(model: nn.Module, dummy: torch.Tensor, path: str, meta_json: str) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        traced = torch.jit.trace(model, dummy, check_trace=False)  # checked below against PyTorch's output
        torch.jit.save(traced, path, _extra_files={f"{META_KEY}.json": meta_json})


def _run_torchscript(path: str, images: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        return torch.jit.load(path, map_location="cpu")(images)


_DETECTOR_TYPES = (GeneralizedRCNN, SSD, RetinaNet, FCOS)
_DETECTOR_VERIFY_IMAGES = 2  # TorchScript: a list of two images; the ONNX graph takes one


def _is_detector(model: nn.Module) -> bool:
    """A torchvision detector (its forward takes a list of images and returns boxes, scores and labels)."""
    return isinstance(model, _DETECTOR_TYPES)


class _Detections(nn.Module):
    """The detector's detections only: scripted torchvision detectors return (losses, detections)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        if torch.jit.is_scripting():
            return self.detector(images)[1]
        return self.detector(images)


def _script_detector(detector: nn.Module) -> torch.jit.ScriptModule:
    if hasattr(detector, "_has_warned"):
        detector._has_warned = True  # torchvision warns on every scripted call that it returns (losses, detections)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        try:
            return torch.jit.script(_Detections(detector))
        except Exception as error:  # TorchScript's frontend raises many types; the message says what failed
            raise ExportError(f"{type(detector).__name__} cannot be scripted for TorchScript export: "
                              f"{str(error).strip()[:2000]}") from error


def _compare_detections(out: Path, actual: list[dict[str, torch.Tensor]], expected: list[dict[str, torch.Tensor]],
                        tolerance: float) -> tuple[float, int]:
    """Max abs difference of boxes and scores (labels equal, same counts); raises ExportError otherwise."""
    if len(actual) != len(expected):
        raise ExportError(f"{out}: exported detector gives {len(actual)} results for {len(expected)} images; "
                          "file not written")
    difference, count = 0.0, 0
    for index, (got, want) in enumerate(zip(actual, expected)):
        if sorted(got) != sorted(want):
            raise ExportError(f"{out}: exported detector gives outputs {sorted(got)}, PyTorch {sorted(want)}; "
                              "file not written")
        if got["boxes"].shape != want["boxes"].shape:
            raise ExportError(f"{out}: exported detector finds {len(got['boxes'])} objects in random image {index}, "
                              f"PyTorch {len(want['boxes'])}; file not written")
        if not torch.equal(got["labels"].long(), want["labels"].long()):
            raise ExportError(f"{out}: exported detector gives other labels than PyTorch on random image {index}; "
                              "file not written")
        for key in ("boxes", "scores"):
            if want[key].numel() == 0:
                continue
            gap = float((got[key].float() - want[key].float()).abs().max())
            allowed = tolerance * max(1.0, float(want[key].abs().max()))
            if not gap <= allowed:  # also catches NaN
                raise ExportError(f"{out}: exported detector's {key} differ from PyTorch by {gap:.3g} (max abs; allowed "
                                  f"{allowed:.3g}) on random image {index}; file not written")
            difference = max(difference, gap)
        count += len(want["boxes"])
    return difference, count


def _export_detector_onnx(detector: nn.Module, image: torch.Tensor, path: str, opset: int | None,
                          output_names: list[str], meta_json: str) -> None:
    try:
        import onnx
    except ImportError as error:
        raise ImportError('ONNX export needs onnx and onnxruntime: pip install "distill[export]"') from error
    if opset is not None and opset < _DETECTOR_MIN_OPSET:
        raise ValueError(f"detector ONNX export needs opset >= {_DETECTOR_MIN_OPSET} (torchvision's NMS and "
                         f"RoIAlign), got {opset}")
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated upstream and its tracer warns about every data-dependent
        # step of box decoding; the graph is checked against the detector below instead.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(detector, ([image],), path, input_names=[_INPUT], output_names=output_names,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        except Exception as error:  # the exporter raises many types; the message says which operator failed
            raise ExportError(f"ONNX export of {type(detector).__name__} is not supported by this PyTorch / "
                              f"torchvision ({type(error).__name__}: {str(error).strip()[:500]}); "
                              "use --format torchscript") from error
    model = onnx.load(path)
    produced = {o.domain: o.version for o in model.opset_import}.get("")
    if opset is not None and produced != opset:
        raise ValueError(f"opset {opset} is not available from this PyTorch's ONNX exporter (it produced opset "
                         f"{produced}); leave opset out or ask for {produced} or later")
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta_json
    onnx.save(model, path)


def _run_detector_onnx(path: str, image: torch.Tensor, output_names: list[str]) -> list[dict[str, torch.Tensor]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = session.run(output_names, {_INPUT: image.numpy()})
    return [{name: torch.from_numpy(value) for name, value in zip(output_names, outputs)}]


def _export_detector(model: nn.Module, format: str, out: Path, size: int, opset: int | None,
                     tolerance: float) -> tuple[Path, float]:
    """Script (TorchScript) or trace (ONNX) a torchvision detector, verify its detections, write atomically."""
    meta_json = json.dumps({**getattr(model, "distill_meta", {}), "resolution": size}, sort_keys=True)
    generator = torch.Generator().manual_seed(0)
    trace_image = torch.rand(3, size, size, generator=generator)
    images = [torch.rand(3, size, size, generator=generator) for _ in range(_DETECTOR_VERIFY_IMAGES)]
    if format == "onnx":
        images = images[:1]  # the traced graph takes one image
    with torch.no_grad():
        expected = model(images)
    output_names = list(expected[0])
    difference = float("nan")

    def write_and_verify(tmp: str) -> None:
        nonlocal difference
        with torch.no_grad():
            if format == "onnx":
                _export_detector_onnx(model, trace_image, tmp, opset, output_names, meta_json)
                actual = _run_detector_onnx(tmp, images[0], output_names)
            else:
                scripted = _script_detector(model)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
                    torch.jit.save(scripted, tmp, _extra_files={f"{META_KEY}.json": meta_json})
                actual = _run_torchscript(tmp, images)
        difference, _ = _compare_detections(out, actual, expected, tolerance)

    return atomic_write(out, write_and_verify), difference


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
    if out is None:
        out = checkpoint_path.with_suffix(FORMATS[format])
    elif Path(out).is_dir():
        out = Path(out) / checkpoint_path.with_suffix(FORMATS[format]).name
    out = Path(out)
    if out.resolve() == checkpoint_path.resolve():
        raise ValueError(f"the export would overwrite its input checkpoint {checkpoint_path}; "
                         f"choose another --out (e.g. {checkpoint_path.with_name('exported' + FORMATS[format])})")
    if _is_detector(model):
        return _export_detector(model, format, out, size, opset, tolerance)
    meta_json = json.dumps({**getattr(model, "distill_meta", {}), "resolution": size}, sort_keys=True)

    generator = torch.Generator().manual_seed(0)
    dummy = torch.randn(_TRACE_BATCH, 3, size, size, generator=generator)
    images = torch.randn(_VERIFY_BATCH, 3, size, size, generator=generator)
    with torch.no_grad():
        expected = model(images)
    # float32 kernels of another runtime (ONNX Runtime folds BatchNorm into the convolutions) differ by ~1e-5
    # of the output's magnitude, so the tolerance is relative to the largest output, absolute below 1.
    scale = max(1.0, float(expected.abs().max()))
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
        allowed = tolerance * scale
        if not difference <= allowed:  # also catches NaN
            raise ExportError(f"{out}: exported model differs from PyTorch by {difference:.3g} (max abs; allowed "
                              f"{allowed:.3g} = {tolerance:g} x largest |output| {scale:.3g}); file not written")

    return atomic_write(out, write_and_verify), difference


def export_student(checkpoint_path: str | os.PathLike, format: str = "onnx", out: str | os.PathLike | None = None,
                   resolution: int | None = None, *, opset: int | None = None,
                   tolerance: float = TOLERANCE) -> Path:
    """Export the student of a student.ckpt; returns the written file.

    ``out`` defaults to the checkpoint's path with the format's extension (student.onnx / student.pt); an
    existing folder gets that file name inside it.
    ``resolution`` defaults to the checkpoint's ``meta["resolution"]``; ``opset`` to the exporter's default.
    Raises ExportError, leaving no file, when the exported model's output differs from PyTorch's on a random
    batch by more than ``tolerance`` x max(1, largest |output|) (max abs difference).
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
                        help="output file or folder (default: next to the checkpoint, student.onnx / student.pt)")
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
