"""Compress the student of a finished run: ``python -m distill.compress <run folder> method=... [key=value ...]``.

    python -m distill.compress outputs/<date>/<time> method=int8_ptq               # student.int8.onnx
    python -m distill.compress outputs/<date>/<time> method=int8_ptq backend=torchao
    python -m distill.compress outputs/<date>/<time> method=int8_qat epochs=2      # student.qat.int8.onnx
    python -m distill.compress outputs/<date>/<time> method=prune target_mult_adds=0.5
    python -m distill.compress outputs/<date>/<time> 'methods=[prune,int8_qat]'

The run's own configuration (``run_config.json``, what the run started with), data, cached teacher and teacher
outputs, and its ``student.ckpt`` are reused; bare keys set ``compress.<key>`` (see ``conf/compress/none.yaml``),
dotted keys the run's config (e.g. ``trainer.accelerator=cpu``). A bad request (unknown method, a prune ratio
outside (0, 1), a detector) is refused before any data is loaded. Every compressed model is judged on the recipe's
test split by the task's own metrics; the entries are added to the run's results.json ``compressed`` list and
printed as a table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from distill.engine.compression import compress_student, load_run, record_results
from distill.engine.quiet import quiet_third_party

__all__ = ["main", "format_entries"]


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_entries(entries: list[dict[str, Any]], primary: str) -> str:
    """A markdown table of ``compressed`` entries: metric, cost, size and the side-by-side latency."""
    lines = [f"| method | {primary} | M mult-adds | M params | file MB | size vs fp32 ONNX | "
             "b1 ms eager / ORT fp32 / ORT int8 | b32 img/s eager / ORT fp32 / ORT int8 | artefact |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for entry in entries:
        if entry.get("error"):
            lines.append(f"| {entry['method']} | **failed**: {entry['error'][:300]} |" + " |" * 7)
            continue
        latency = entry.get("latency_b1_ms") or {}
        throughput = next((v for k, v in entry.items() if k.startswith("throughput_b")), None) or {}
        size = entry.get("file_size_bytes")
        lines.append(
            f"| {entry['method']} | {_cell(entry['metrics'].get(primary), 4)} | "
            f"{_cell((entry.get('mult_adds') or 0) / 1e6)} | {_cell((entry.get('params') or 0) / 1e6, 3)} | "
            f"{_cell(size / 1e6 if size else None)} | {_cell(entry.get('size_ratio'), 3)} | "
            + " / ".join(_cell(latency.get(k)) for k in ("eager", "ort_fp32", "ort_int8")) + " | "
            + " / ".join(_cell(throughput.get(k), 1) for k in ("eager", "ort_fp32", "ort_int8"))
            + f" | {entry['artifact']} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m distill.compress",
        description="Compress a finished run's student (int8 PTQ / QAT, structured pruning) and judge it on the "
                    "recipe's test split.")
    parser.add_argument("run_dir", help="the folder of a finished distill run (run_config.json, student.ckpt)")
    parser.add_argument("overrides", nargs="*",
                        help="method=int8_ptq|int8_qat|prune or methods=[prune,int8_qat]; compress keys "
                             "(epochs=2 target_mult_adds=0.5 backend=torchao ...); dotted config keys")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    quiet_third_party()
    run_dir = Path(args.run_dir)
    try:
        cfg, request, task, datamodule, models = load_run(run_dir, args.overrides)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    entries = compress_student(cfg, run_dir, task, datamodule, models, request)
    written = record_results(run_dir, entries)
    print(format_entries(entries, task.primary_metric))
    if written is not None:
        print(f"\nadded to {written} (\"compressed\")")
    return 1 if any(entry.get("error") for entry in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
