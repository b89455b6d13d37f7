"""What a compression request asks for (``cfg.compress``), checked before any work starts.

``methods`` run in order on the distilled student: ``prune`` first (structured channel pruning, then distillation
fine-tuning), then at most one int8 method (``int8_ptq``: static post-training quantisation; ``int8_qat``:
quantisation-aware distillation). Everything that would fail later (an unknown method, a prune ratio outside
(0, 1), a detector, a missing package) is refused here with a message that says what to change.
"""

from __future__ import annotations

import importlib.util
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["METHODS", "INT8_METHODS", "BACKENDS", "CompressRequest", "parse_request", "check_request"]

METHODS = ("int8_ptq", "int8_qat", "prune")
INT8_METHODS = ("int8_ptq", "int8_qat")
BACKENDS = ("onnxruntime", "torchao")
IMPORTANCES = ("l1", "l2")
_INSTALL = 'pip install "distill[compress]"'
# The packages each part needs (import name, pip name). Judging always runs ONNX Runtime.
_JUDGE_PACKAGES = (("onnx", "onnx"), ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime"))
_PACKAGES = {"prune": (("torch_pruning", "torch-pruning"),), "int8_qat": (("torchao", "torchao"),),
             "torchao": (("torchao", "torchao"),)}


@dataclass(frozen=True)
class CompressRequest:
    methods: tuple[str, ...] = ()
    backend: str = "onnxruntime"
    calibration_images: int = 512
    per_channel: bool = True
    float_convs: int = 2
    epochs: int = 2
    lr_scale: float = 0.1
    target_mult_adds: float = 0.5
    tolerance: float = 0.02
    importance: str = "l2"
    max_layer_pruning: float = 0.8
    pruning_steps: int = 100
    round_to: int = 8
    prune_epochs: int = 6
    prune_lr_scale: float = 1.0
    threads: int | None = None
    latency_runs: int = 20
    throughput_batch: int = 32
    throughput_runs: int = 5

    def settings(self) -> dict[str, Any]:
        """The settings that shaped the result of ``method`` (for results.json)."""
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def _error(message: str) -> ValueError:
    return ValueError(f"compress: {message}")


def _number(settings: Mapping[str, Any], key: str, kind: type, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, hint: str = "") -> Any:
    value = settings[key]
    integral = kind is int
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integral else numbers.Real):
        raise _error(f"compress.{key} must be {'an int' if integral else 'a number'}{hint}, got {value!r}")
    fails_low = low is not None and (value <= low if low_open else value < low)
    fails_high = high is not None and (value >= high if high_open else value > high)
    if fails_low or fails_high:
        span = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, " \
               f"{high if high is not None else 'inf'}{')' if high_open else ']'}"
        raise _error(f"compress.{key} must be in {span}{hint}, got {value!r}")
    return kind(value)


def parse_request(settings: Mapping[str, Any] | None) -> CompressRequest:
    """The request ``cfg.compress`` describes (missing keys take the defaults); ValueError names a bad key."""
    settings = dict(settings or {})
    known = set(CompressRequest.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise _error(f"unknown key(s) {unknown}; compress takes {sorted(known)}")
    merged = {**CompressRequest().settings(), **settings}
    methods = merged["methods"]
    if methods is None:
        methods = []
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
        raise _error(f"compress.methods must be a list of method names from {list(METHODS)}, got {methods!r}")
    methods = tuple(str(m).strip() for m in methods if str(m).strip() not in ("", "none"))
    for method in methods:
        if method not in METHODS:
            raise _error(f"unknown method {method!r}; known: {', '.join(METHODS)} (chain them in order, e.g. "
                         f"compress.methods=[prune,int8_qat])")
    if len(set(methods)) != len(methods):
        raise _error(f"compress.methods lists a method twice: {list(methods)}")
    if "prune" in methods and methods[0] != "prune":
        raise _error(f"prune must come first in compress.methods (an int8 model is not pruned), got {list(methods)}")
    int8 = [m for m in methods if m in INT8_METHODS]
    if len(int8) > 1:
        raise _error(f"compress.methods takes one int8 method, got {int8}")
    if int8 and methods[-1] != int8[0]:
        raise _error(f"the int8 method comes last in compress.methods, got {list(methods)}")
    if merged["backend"] not in BACKENDS:
        raise _error(f"compress.backend must be one of {list(BACKENDS)} (int8_ptq's quantiser), got "
                     f"{merged['backend']!r}")
    if merged["importance"] not in IMPORTANCES:
        raise _error(f"compress.importance must be one of {list(IMPORTANCES)}, got {merged['importance']!r}")
    if not isinstance(merged["per_channel"], bool):
        raise _error(f"compress.per_channel must be true or false, got {merged['per_channel']!r}")
    threads = merged["threads"]
    if threads is not None:
        threads = _number(merged, "threads", int, low=1, hint=" (or null: torch's thread count)")
    request = CompressRequest(
        methods=methods, backend=str(merged["backend"]),
        calibration_images=_number(merged, "calibration_images", int, low=1),
        per_channel=bool(merged["per_channel"]),
        float_convs=_number(merged, "float_convs", int, low=0, hint=" (0: every convolution int8)"),
        epochs=_number(merged, "epochs", int, low=0),
        lr_scale=_number(merged, "lr_scale", float, low=0, low_open=True),
        target_mult_adds=_number(merged, "target_mult_adds", float, low=0, high=1, low_open=True, high_open=True,
                                 hint=" (the share of the student's mult-adds to keep, e.g. 0.5 keeps half)"),
        tolerance=_number(merged, "tolerance", float, low=0, high=0.5, low_open=True, high_open=True),
        importance=str(merged["importance"]),
        max_layer_pruning=_number(merged, "max_layer_pruning", float, low=0, high=1, low_open=True, high_open=True),
        pruning_steps=_number(merged, "pruning_steps", int, low=1),
        round_to=_number(merged, "round_to", int, low=1, hint=" (1: no rounding)"),
        prune_epochs=_number(merged, "prune_epochs", int, low=0),
        prune_lr_scale=_number(merged, "prune_lr_scale", float, low=0, low_open=True),
        threads=threads,
        latency_runs=_number(merged, "latency_runs", int, low=1),
        throughput_batch=_number(merged, "throughput_batch", int, low=1),
        throughput_runs=_number(merged, "throughput_runs", int, low=0),
    )
    if not request.per_channel and ("int8_qat" in methods or ("int8_ptq" in methods and request.backend == "torchao")):
        raise _error("compress.per_channel=false applies to the onnxruntime int8_ptq backend only; torchao's X86 "
                     "quantizer always quantises weights per channel")
    if "int8_qat" in methods and request.epochs < 1:
        raise _error("int8_qat fine-tunes the fake-quantised student: compress.epochs must be at least 1")
    return request


def check_request(request: CompressRequest, task: Any, loss_terms: list[Any] | None = None) -> None:
    """Refuse, before any work, what the methods cannot do for this task, loss or installation."""
    if not request.methods:
        return
    asked = f"compress.methods={list(request.methods)}"
    if not task.compressible:
        raise _error(f"{asked} does not apply to the {getattr(task, 'name', type(task).__name__)} task: int8 "
                     f"quantisation and pruning here work on students that map an image batch to one tensor, not on "
                     f"detectors (their box decoding and NMS); use compress=none")
    if "int8_qat" in request.methods:
        inner = [f"{spec.id} (student layer {spec.student!r})" for spec in loss_terms or []
                 if getattr(spec, "student", "output") != "output"]
        if inner:
            raise _error(f"{asked}: quantisation-aware distillation trains a traced (pt2e) student whose inner "
                         f"layers cannot be hooked, but loss terms {inner} read them; use int8_ptq, or terms on "
                         f"the student's output")
    needed = list(_JUDGE_PACKAGES)
    for method in request.methods:
        needed += _PACKAGES.get(method, ())
    if "int8_ptq" in request.methods and request.backend == "torchao":
        needed += _PACKAGES["torchao"]
    missing = sorted({pip for module, pip in needed if importlib.util.find_spec(module) is None})
    if missing:
        raise _error(f"{asked} needs {', '.join(missing)}: {_INSTALL}")
