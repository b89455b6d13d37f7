"""Deployment latency of the facenet student: MobileNetV1 at four widths, 96 px input, 512-d embedding, batch 1.

    python benchmarks/deploy.py                                     # widths 1.0 0.75 0.5 0.25, 1 and 2 threads
    python benchmarks/deploy.py --widths 0.25 --threads 1 --runs 3  # a quick check that everything runs
    python benchmarks/deploy.py --checkpoints run/student.ckpt run/student.pruned.ckpt --threads 1 --no-compile
                                                                    # trained students (e.g. pruned against unpruned)

Six ways to run the same network, side by side in one process (interleaved round by round, each round a burst
of back-to-back calls per runtime, the median round counts: ``distill.core.deploy_latency.measure_side_by_side``),
at each thread count:

- ``eager``:         PyTorch eager, float32, ``torch.inference_mode``;
- ``compile``:       ``torch.compile`` (Inductor, weights frozen), float32;
- ``ORT fp32``:      ONNX Runtime, the float32 graph of ``distill.core.deploy.export_onnx``;
- ``ORT int8``:      ONNX Runtime, static int8 QDQ (per-channel weights, calibrated on random images:
                     latency does not depend on the values), the first ``--float-convs`` convolutions float32
                     as ``compress=int8_ptq`` writes it; ``ORT int8 all convs`` beside it quantises every one;
- ``torchao int8``:  torchao pt2e with the X86 Inductor quantizer, compiled by ``torch.compile`` (oneDNN int8
                     kernels), where it works on this CPU (else the error is printed).

Beside them the compute limit of this CPU: the network's mult-adds divided by the multiply-accumulates per second
that a large GEMM reaches here (float32 ``torch.mm``; int8 ``torch._int_mm`` where PyTorch has it), at the same
thread count. "of limit" is the int8 latency's multiple of the int8 limit (1.0 would be GEMM speed).
Run on a quiet machine: the figures are only as good as the machine's idleness.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from distill.core.cost import profile
from distill.core.deploy import TensorCalibrationReader, export_onnx, quantize_onnx_int8
from distill.core.deploy_latency import eager_runner, measure_side_by_side, ort_runner
from distill.engine.compression.quantize import ptq_torchao
from distill.engine.quiet import quiet_third_party
from distill.models.checkpoint import load_student
from distill.models.mobilenet import MobileNetV1

RUNTIMES = ("eager", "compile", "ort_fp32", "ort_int8_all", "ort_int8", "torchao_int8")
LABELS = {"eager": "eager", "compile": "compile", "ort_fp32": "ORT fp32", "ort_int8_all": "ORT int8 all convs",
          "ort_int8": "ORT int8", "torchao_int8": "torchao int8"}


def gemm_macs_per_s(dtype: str, size: int, threads: int, runs: int = 5) -> float | None:
    """Multiply-accumulates per second of one (size x size) @ (size x size) product (median of ``runs``)."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    if dtype == "int8":
        if not hasattr(torch, "_int_mm"):
            return None
        a = torch.randint(-128, 128, (size, size), dtype=torch.int8, generator=generator)
        b = torch.randint(-128, 128, (size, size), dtype=torch.int8, generator=generator)
        multiply: Callable[[], Any] = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
        multiply = lambda: torch.mm(a, b)  # noqa: E731
    try:
        multiply()
    except RuntimeError:  # no int8 GEMM kernel for this CPU / build
        return None
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        multiply()
        times.append(time.perf_counter() - start)
    return size ** 3 / statistics.median(times)


def _compiled(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    torch._dynamo.reset()  # Inductor fixes the thread count when it generates code: compile per thread count
    compiled = torch.compile(model)
    with torch.inference_mode():
        compiled(example)
    return compiled


def _torchao_int8(model: torch.nn.Module, resolution: int, batches: list[torch.Tensor]) -> tuple[Any, str | None]:
    try:
        import torchao.quantization.pt2e.inductor_passes.x86  # noqa: F401  (registers the int8 lowering patterns)

        return ptq_torchao(model, resolution, batches), None
    except Exception as error:  # QuantizationError or a missing torchao: reported, not fatal
        return None, f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"


def _models(args: argparse.Namespace) -> list[tuple[str, torch.nn.Module]]:
    """(label, network) pairs: the student checkpoints given, else a fresh MobileNetV1 per width."""
    if args.checkpoints:
        return [(path.name, load_student(path).eval()) for path in args.checkpoints]
    models = []
    for width in args.widths:
        torch.manual_seed(0)
        models.append((f"{width}", MobileNetV1(width_multiplier=width, num_classes=args.dim).eval()))
    return models


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # constant weights: prepacked (float32 and int8 alike)
    results: dict[str, Any] = {"resolution": args.resolution, "dim": args.dim, "runs": args.runs,
                               "burst_ms": args.burst_ms, "float_convs": args.float_convs, "rows": [],
                               "gemm": {}, "notes": [], "checkpoints": [str(p) for p in args.checkpoints or []]}
    for threads in args.threads:
        results["gemm"][threads] = {dtype: gemm_macs_per_s(dtype, args.gemm_size, threads)
                                    for dtype in ("float32", "int8")}
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(8, 3, args.resolution, args.resolution, generator=generator)
                   for _ in range(max(1, args.calibration // 8))]
    example = torch.randn(1, 3, args.resolution, args.resolution, generator=generator)
    with tempfile.TemporaryDirectory(prefix="distill-deploy-") as folder:
        for index, (label, model) in enumerate(_models(args)):
            mult_adds = profile(model, (3, args.resolution, args.resolution)).mult_adds
            fp32 = export_onnx(model, Path(folder) / f"model_{index}.onnx", args.resolution, check=False)
            int8 = quantize_onnx_int8(fp32, Path(folder) / f"model_{index}.int8.onnx",
                                      TensorCalibrationReader(calibration), float_convs=args.float_convs)
            int8_all = None if args.float_convs == 0 else quantize_onnx_int8(
                fp32, Path(folder) / f"model_{index}.int8_all.onnx", TensorCalibrationReader(calibration))
            fp32_size, int8_size = fp32.stat().st_size, int8.stat().st_size
            quantized, failure = (None, "skipped (--no-torchao)") if args.no_torchao else \
                _torchao_int8(model, args.resolution, calibration)
            if failure:
                results["notes"].append(f"{label}: torchao int8 unavailable: {failure}")
            for threads in args.threads:
                torch.set_num_threads(threads)
                runners: dict[str, Any] = {"eager": eager_runner(model), "compile": None,
                                           "ort_fp32": ort_runner(fp32, threads),
                                           "ort_int8_all": ort_runner(int8_all, threads) if int8_all else None,
                                           "ort_int8": ort_runner(int8, threads), "torchao_int8": None}
                if not args.no_compile:
                    try:
                        runners["compile"] = eager_runner(_compiled(model, example))
                        if quantized is not None:
                            runners["torchao_int8"] = eager_runner(_compiled(quantized, example))
                    except Exception as error:  # no C++ compiler, an Inductor failure: reported, not fatal
                        results["notes"].append(f"{label}, {threads} thread(s): torch.compile failed: "
                                                f"{type(error).__name__}: {str(error).strip()[:200]}")
                measured = measure_side_by_side(runners, args.resolution, threads=threads, runs=args.runs,
                                                warmup=args.warmup, batch_runs=0, burst_ms=args.burst_ms)
                results["rows"].append({"model": label, "threads": threads, "mult_adds": mult_adds,
                                        "onnx_fp32_bytes": fp32_size, "onnx_int8_bytes": int8_size,
                                        "latency_ms": measured["latency_b1_ms"]})
    return results


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return "—" if numerator is None or not denominator else f"{numerator / denominator:.2f}x"


def to_markdown(results: dict[str, Any]) -> str:
    header = ["model" if results.get("checkpoints") else "width", "threads", "M mult-adds",
              *(f"{LABELS[r]} ms" for r in RUNTIMES), "ORT int8 vs fp32",
              "best int8 vs eager", "fp32 limit ms", "int8 limit ms", "ORT int8 / int8 limit", "int8 / fp32 file"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in results["rows"]:
        latency, gemm = row["latency_ms"], results["gemm"][row["threads"]]
        limits = {dtype: (row["mult_adds"] / gemm[dtype] * 1e3 if gemm[dtype] else None)
                  for dtype in ("float32", "int8")}
        int8 = [v for v in (latency["ort_int8"], latency["torchao_int8"]) if v is not None]
        lines.append("| " + " | ".join([
            row["model"], str(row["threads"]), f"{row['mult_adds'] / 1e6:.1f}",
            *(_ms(latency[r]) for r in RUNTIMES),
            _ratio(latency["ort_fp32"], latency["ort_int8"]),
            _ratio(latency["eager"], min(int8) if int8 else None),
            _ms(limits["float32"]), _ms(limits["int8"]),
            _ratio(latency["ort_int8"], limits["int8"]),
            f"{row['onnx_int8_bytes'] / row['onnx_fp32_bytes']:.2f}",
        ]) + " |")
    gemm_lines = [f"- {threads} thread(s): float32 GEMM {_rate(rates['float32'])}, int8 GEMM "
                  f"{_rate(rates['int8'])}" for threads, rates in results["gemm"].items()]
    notes = [f"- {note}" for note in results["notes"]]
    what = "Student checkpoints" if results.get("checkpoints") else f"MobileNetV1, {results['dim']}-d output"
    burst = (f"each a burst of >= {results['burst_ms']:g} ms of back-to-back calls" if results["burst_ms"]
             else "one call each")
    return "\n".join([f"{what}, {results['resolution']} px, batch 1, median of {results['runs']} interleaved "
                      f"rounds ({burst}); ORT int8 keeps the first {results['float_convs']} convolution(s) float32; "
                      "ratios are speed-ups (x > 1: faster).", "", *lines, "",
                      "Compute limit (mult-adds / GEMM multiply-accumulates per second):", *gemm_lines,
                      *(["", "Notes:", *notes] if notes else [])]) + "\n"


def _rate(macs_per_s: float | None) -> str:
    return "n/a" if macs_per_s is None else f"{macs_per_s / 1e9:.1f} GMAC/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--resolution", type=int, default=96, help="input size in px (the facenet recipe: 96)")
    parser.add_argument("--dim", type=int, default=512, help="output size (the facenet embedding: 512)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure at")
    parser.add_argument("--runs", type=int, default=50, help="timed rounds per runtime (median)")
    parser.add_argument("--burst-ms", type=float, default=20.0,
                        help="each round times back-to-back calls for at least this long (0: one call per round)")
    parser.add_argument("--float-convs", type=int, default=2,
                        help="ORT int8 keeps the first N convolutions float32 (compress.float_convs; 0: none)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=64, help="random images calibrating the int8 files")
    parser.add_argument("--gemm-size", type=int, default=1024, help="the GEMM microbenchmark's matrix size")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (and torchao int8)")
    parser.add_argument("--no-torchao", action="store_true", help="skip torchao int8")
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=None,
                        help="student checkpoints (distill.load_student) to measure instead of the widths; "
                             "--resolution is their input size")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    quiet_third_party()
    for name in ("torch.utils._pytree", "torch.utils.cpp_extension"):  # import-time notices of torchao, Inductor
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    results = benchmark(args)
    sys.stdout.write(to_markdown(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
