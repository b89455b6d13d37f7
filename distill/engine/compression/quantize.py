"""int8 quantisation of a student: ONNX Runtime static QDQ (the deployment path) and torchao's pt2e flow with the
X86 Inductor quantizer (PyTorch-native: post-training, and the fake-quantised student of quantisation-aware
distillation). torchao is imported when used; anything missing or failing raises QuantizationError naming it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.core.deploy import (
           META_KEY,
           OnnxRuntimeModel,
           TensorCalibrationReader,
           export_onnx,
           quantize_onnx_int8,
           write_onnx,
)
from distill.core.io import atomic_write

__all__ = ["QuantizationError", "ExportedModel", "ptq_onnxruntime", "ptq_torchao", "save_pt2", "prepare_qat",
           "convert_qat", "write_int8_onnx", "mean_cosine", "MIN_COSINE"]

# An int8 file must reproduce the model it was made from on real images at least this closely (mean cosine).
MIN_COSINE = 0.9
_TORCHAO = "torchao's pt2e quantisation (torchao.quantization.pt2e with X86InductorQuantizer)"


class QuantizationError(RuntimeError):
    """A quantiser that is unavailable, or that fails on this model or CPU."""


class ExportedModel(nn.Module):
    """A converted pt2e graph as an ordinary module: ``.eval()`` / ``.train()`` / ``.to()`` return the module, as
    evaluation code expects (an exported graph's own switches return nothing)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.graph(images)


def _torchao() -> SimpleNamespace:
    pytree_log = logging.getLogger("torch.utils._pytree")  # torchao's import warns about torch's own API change
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except Exception as error:  # ImportError, or an API that moved in another torchao release
        raise QuantizationError(f"{_TORCHAO} is unavailable: {type(error).__name__}: {error}. "
                                f'pip install "torchao==0.18.*"') from error
    finally:
        pytree_log.setLevel(level)

    def quantizer(is_qat: bool) -> Any:
        return X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=is_qat))

    return SimpleNamespace(prepare_pt2e=prepare_pt2e, prepare_qat_pt2e=prepare_qat_pt2e, convert_pt2e=convert_pt2e,
                           allow_train_eval=allow_exported_model_train_eval, to_eval=move_exported_model_to_eval,
                           quantizer=quantizer)


def _without_unused_weights(graph: nn.Module) -> nn.Module:
    """Drop the float weights that conversion replaced by int8 constants (the graph no longer reads them), so a saved
    int8 model does not carry its float32 weights too."""
    nodes = list(graph.graph.nodes)
    used = {node.target for node in nodes if node.op == "get_attr"}
    called = tuple(f"{node.target}." for node in nodes if node.op == "call_module")  # modules keep their own
    for name, _ in [*graph.named_parameters(), *graph.named_buffers()]:
        if name not in used and not name.startswith(called):
            owner, _, attribute = name.rpartition(".")
            delattr(graph.get_submodule(owner) if owner else graph, attribute)
    return graph


def _example(resolution: int) -> torch.Tensor:
    return torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))


def _captured(model: nn.Module, resolution: int) -> nn.Module:
    """The model as a torch.export graph (batch dynamic), what pt2e quantisers annotate."""
    return torch.export.export(model, (_example(resolution),),
                               dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)).module()


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1).mean())


def _check_close(path: Path, produced: torch.Tensor, expected: torch.Tensor) -> float:
    similarity = mean_cosine(produced, expected)
    if not similarity >= MIN_COSINE:
        raise QuantizationError(f"{path.name}: the int8 model's outputs on calibration images are far from the "
                                f"float model's (mean cosine {similarity:.3f} < {MIN_COSINE}); file not written")
    return similarity


def ptq_onnxruntime(model: nn.Module, resolution: int, reader: TensorCalibrationReader, fp32_path: Path, out: Path,
                    *, per_channel: bool = True, float_convs: int = 0,
                    meta: dict[str, Any] | None = None) -> tuple[Path, float]:
    """ONNX Runtime static int8 (QDQ) of ``model``: its float32 graph at ``fp32_path`` (written when absent),
    calibrated on ``reader``, its first ``float_convs`` convolutions left float32; the int8 file ``out`` is checked
    against the model. Returns (out, mean cosine)."""
    model = model.cpu().eval()
    if not fp32_path.is_file():
        export_onnx(model, fp32_path, resolution, meta=meta)
    quantize_onnx_int8(fp32_path, out, reader, per_channel=per_channel, float_convs=float_convs)
    check = torch.from_numpy(reader.batches[0])
    with torch.no_grad():
        expected = model(check)
    try:
        similarity = _check_close(out, OnnxRuntimeModel(out, threads=1)(check), expected)
    except QuantizationError:
        os.unlink(out)
        raise
    return out, similarity


def ptq_torchao(model: nn.Module, resolution: int, batches: list[torch.Tensor]) -> nn.Module:
    """torchao pt2e static int8: capture, annotate with the X86 Inductor quantizer (per-channel int8 weights, uint8
    activations), calibrate on ``batches``, convert. The result runs the int8 arithmetic in eager PyTorch as
    quantise/dequantise reference ops; ``torch.compile`` lowers it to oneDNN int8 kernels."""
    ao = _torchao()
    try:
        prepared = ao.prepare_pt2e(_captured(model.cpu().eval(), resolution), ao.quantizer(is_qat=False))
        with torch.no_grad():
            for images in batches:
                prepared(images)
        converted = _without_unused_weights(ao.convert_pt2e(prepared))
        ao.allow_train_eval(converted)  # .eval() switches the graph's ops, never raises
        return ExportedModel(converted)
    except QuantizationError:
        raise
    except Exception as error:
        raise QuantizationError(f"{_TORCHAO} failed on this model / CPU: {type(error).__name__}: "
                                f"{str(error).strip()[:800]}") from error


def save_pt2(model: nn.Module, path: Path, resolution: int, meta: dict[str, Any] | None = None) -> Path:
    """``torch.export.save`` of a (quantised) model with a dynamic batch, atomically (``torch.export.load`` reads
    it back; its ``.module()`` is callable)."""
    if isinstance(model, ExportedModel):  # export the graph itself (a module around a graph does not load back)
        model = model.graph
    program = torch.export.export(model, (_example(resolution),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    extra = {f"{META_KEY}.json": json.dumps({**(meta or {}), "resolution": int(resolution)}, sort_keys=True)}
    return atomic_write(path, lambda tmp: torch.export.save(program, tmp, extra_files=extra))


def prepare_qat(model: nn.Module, resolution: int) -> nn.Module:
    """The fake-quantised student for quantisation-aware training (torchao ``prepare_qat_pt2e``, X86 quantizer,
    batch norms folded the QAT way), captured in training mode; ``.train()`` / ``.eval()`` work on it."""
    ao = _torchao()
    try:
        prepared = ao.prepare_qat_pt2e(_captured(model.cpu().train(), resolution), ao.quantizer(is_qat=True))
        ao.allow_train_eval(prepared)
    except Exception as error:
        raise QuantizationError(f"{_TORCHAO}: prepare_qat_pt2e failed on this model: {type(error).__name__}: "
                                f"{str(error).strip()[:800]}") from error
    return prepared


def convert_qat(prepared: nn.Module) -> nn.Module:
    """The int8 model (quantise/dequantise ops around the trained weights) from a trained fake-quantised one."""
    ao = _torchao()
    prepared = prepared.cpu()
    ao.to_eval(prepared)
    try:
        converted = _without_unused_weights(ao.convert_pt2e(prepared))
        ao.allow_train_eval(converted)
        return ExportedModel(converted)
    except Exception as error:
        raise QuantizationError(f"{_TORCHAO}: convert_pt2e failed: {type(error).__name__}: "
                                f"{str(error).strip()[:800]}") from error


def write_int8_onnx(converted: nn.Module, path: Path, resolution: int, check: torch.Tensor,
                    meta: dict[str, Any] | None = None) -> tuple[Path, float]:
    """The pt2e int8 model as a QDQ ONNX file (ONNX Runtime runs it with int8 kernels), atomically, checked on the
    images ``check`` against the PyTorch int8 model. Returns (path, mean cosine)."""
    metadata = {META_KEY: json.dumps({**(meta or {}), "resolution": int(resolution)}, sort_keys=True)}
    graph = converted.graph if isinstance(converted, ExportedModel) else converted  # the graph itself exports
    similarity = float("nan")

    def write(tmp: str) -> None:
        nonlocal similarity
        try:
            write_onnx(graph, _example(resolution), tmp, metadata=metadata)
        except Exception as error:
            raise QuantizationError(f"ONNX export of the int8 (pt2e) model failed: {type(error).__name__}: "
                                    f"{str(error).strip()[:800]}") from error
        with torch.no_grad():
            expected = converted(check)
        similarity = _check_close(path, OnnxRuntimeModel(tmp, threads=1)(check), expected)

    return atomic_write(path, write), similarity
