"""ONNX and ONNX Runtime: the deployment side of a student, below every other layer so that the engine, the export
command and the benchmarks share one way to write a graph, run it and quantise it.

- ``write_onnx``: the float32 graph of an image model (input ``image`` (B, 3, R, R) with a dynamic batch, output
  ``output``), through PyTorch's ``torch.export``-based exporter (needs ``onnxscript``);
- ``ort_session`` / ``OnnxRuntimeModel``: an ONNX Runtime CPU session with a set number of threads, and a tiny
  ``nn.Module`` around it that takes a batch tensor and returns a tensor, so the tasks' own evaluation code judges
  an ONNX file exactly like a PyTorch model;
- ``TensorCalibrationReader`` / ``quantize_onnx_int8``: static post-training int8 quantisation with ONNX Runtime
  (QDQ format, per-channel int8 weights, uint8 activations) calibrated on batches of images, optionally keeping the
  first convolutions in float32.

onnx, onnxscript and onnxruntime are optional (``pip install "distill[export]"`` or ``"distill[compress]"``); they
are imported when used, and a missing one raises ImportError saying what to install.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from distill.core.io import atomic_write

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "META_KEY", "write_onnx", "export_onnx", "ort_session", "OnnxRuntimeModel",
           "TensorCalibrationReader", "first_convolutions", "quantize_onnx_int8", "onnx_metadata"]

INPUT_NAME, OUTPUT_NAME = "image", "output"
META_KEY = "distill_meta"
# torch.export turns a dimension of size 1 into a constant, which would fix the batch: graphs are traced with 2.
_TRACE_BATCH = 2
_INSTALL = 'pip install "distill[export]" (onnx, onnxscript, onnxruntime; "distill[compress]" adds the quantisers)'


def _needs(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is needed for ONNX export and ONNX Runtime: {_INSTALL}") from error


def write_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, *, opset: int | None = None,
               metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s graph to ``path`` (not atomically: callers write to a temporary name), batch dynamic.

    ``example`` is one input batch (its batch size is irrelevant); ``metadata`` goes to the file's metadata_props.
    Raises ValueError when ``opset`` is not what the exporter produced.
    """
    _needs("onnxscript")  # the torch.export-based exporter needs it
    if example.shape[0] == 1:
        example = example.expand(_TRACE_BATCH, *example.shape[1:]).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notices (deprecations, fallbacks) are not the user's business
        program = torch.onnx.export(
            model, (example,), None,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
            opset_version=opset, dynamo=True, verbose=False,
        )
    produced = program.model.opset_imports.get("")
    if opset is not None and produced != opset:
        raise ValueError(f"opset {opset} is not available from this PyTorch's ONNX exporter (it produced opset "
                         f"{produced}); leave opset out or ask for {produced} or later")
    for key, value in (metadata or {}).items():
        program.model.metadata_props[key] = value
    program.save(str(path), external_data=False)  # one self-contained file


def export_onnx(model: nn.Module, path: str | os.PathLike, resolution: int, *, meta: dict[str, Any] | None = None,
                check: bool = True, tolerance: float = 1e-4) -> Path:
    """Export an image model (eval mode, float32, CPU) to ``path`` atomically; returns the path.

    With ``check`` the file is run once on a random batch by ONNX Runtime and must give PyTorch's output within
    ``tolerance`` x max(1, largest |output|) (max abs difference), else ValueError and no file is written.
    """
    model = model.eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(_TRACE_BATCH, 3, resolution, resolution, generator=generator)
    images = torch.randn(3, 3, resolution, resolution, generator=generator)
    metadata = {META_KEY: json.dumps({**(meta or {}), "resolution": int(resolution)}, sort_keys=True)}

    def write(tmp: str) -> None:
        with torch.no_grad():
            write_onnx(model, example, tmp, metadata=metadata)
            if not check:
                return
            expected = model(images).float()
            actual = OnnxRuntimeModel(tmp, threads=1)(images)
        gap = float((actual - expected).abs().max()) if actual.shape == expected.shape else float("inf")
        allowed = tolerance * max(1.0, float(expected.abs().max()))
        if not gap <= allowed:
            raise ValueError(f"{path}: the ONNX graph differs from PyTorch by {gap:.3g} (max abs; allowed "
                             f"{allowed:.3g}); file not written")

    return atomic_write(path, write)


def onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``distill_meta`` JSON of a file written here (empty when absent)."""
    onnx = _needs("onnx")
    props = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[META_KEY]) if META_KEY in props else {}


def ort_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; ``threads`` sets ``intra_op_num_threads`` (None: ONNX Runtime's default)."""
    ort = _needs("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel(nn.Module):
    """An ONNX file as an ``nn.Module``: a (B, 3, R, R) float tensor in, the graph's first output as a tensor out.

    Runs on the CPU whatever device the input is on (the output comes back on the input's device), so code that
    evaluates PyTorch models (``task.evaluate``) judges the file unchanged. ``train()``/``to()`` change nothing.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        self.path = str(path)
        self.session = ort_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (output,) = self.session.run([self.output_name], {self.input_name: array})
        return torch.from_numpy(np.asarray(output)).to(images.device)

    def __deepcopy__(self, memo: dict) -> "OnnxRuntimeModel":  # sessions cannot be copied: open the file again
        return OnnxRuntimeModel(self.path, self.session.get_session_options().intra_op_num_threads or None)


class TensorCalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol (``get_next``, ``rewind``) over batches of images.

    ``batches``: (B, 3, R, R) tensors or arrays, stored once as float32 arrays; ``get_next`` returns
    ``{input_name: batch}`` for each in turn, then None.
    """

    def __init__(self, batches: Iterable[torch.Tensor | np.ndarray], input_name: str = INPUT_NAME) -> None:
        self.input_name = input_name
        self.batches = [np.ascontiguousarray(b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b,
                                             dtype=np.float32) for b in batches]
        if not self.batches:
            raise ValueError("calibration needs at least one batch of images")
        self._iterator: Iterator[np.ndarray] = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def num_images(self) -> int:
        return sum(len(b) for b in self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iterator, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._iterator = iter(self.batches)


def first_convolutions(path: str | os.PathLike, count: int) -> list[str]:
    """Names of the first ``count`` Conv nodes of the ONNX graph at ``path``, in graph (topological) order."""
    onnx = _needs("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "Conv"][:max(0, int(count))]


def quantize_onnx_int8(fp32_path: str | os.PathLike, out: str | os.PathLike,
                       reader: TensorCalibrationReader, *, per_channel: bool = True, float_convs: int = 0) -> Path:
    """Static int8 quantisation of an ONNX float32 graph (QDQ; int8 weights, per channel by default; uint8
    activations with MinMax ranges calibrated on ``reader``'s batches). Written atomically; returns ``out``.

    ``float_convs``: the first that many convolutions stay float32. In a MobileNet they are the 3-channel stem and
    the first depthwise convolution, which ONNX Runtime runs no faster in int8 than in float32 on x86 (they have
    too few channels per output for its int8 GEMM kernels to gain) and which see the least compressible inputs.
    The graph is first run through ONNX Runtime's pre-processing (shape inference, graph optimisation), as its
    documentation recommends; a graph that the pre-processing cannot handle is quantised as it is.
    """
    _needs("onnx")
    quantization = _needs("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader.rewind()

    def write(tmp: str) -> None:
        source = f"{tmp}.pre.onnx"
        try:
            try:
                quant_pre_process(str(fp32_path), source, skip_symbolic_shape=False)
            except Exception:  # the pre-processing is an optimisation; quantise the graph as exported
                source = str(fp32_path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantization.quantize_static(
                    source, tmp, reader, quant_format=quantization.QuantFormat.QDQ, per_channel=per_channel,
                    nodes_to_exclude=first_convolutions(source, float_convs),
                    activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                    calibrate_method=quantization.CalibrationMethod.MinMax,
                )
        finally:
            if source != str(fp32_path) and os.path.exists(source):
                os.unlink(source)

    return atomic_write(out, write)
