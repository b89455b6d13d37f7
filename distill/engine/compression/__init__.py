"""The compress stage (after evaluation): int8 quantisation (ONNX Runtime static QDQ, torchao pt2e), quantisation-
aware distillation and structured pruning of the distilled student, each result judged on the recipe's test split
by the task's own metrics and measured side by side in eager PyTorch and ONNX Runtime (fp32, int8).

``check_compression`` refuses a bad request before any work; ``compress_student`` runs the methods; ``load_run``
prepares a finished run for ``python -m distill.compress``.
"""

from distill.engine.compression.request import METHODS, CompressRequest, check_request, parse_request
from distill.engine.compression.stage import (
           apply_overrides,
           check_compression,
           compress_student,
           load_run,
           record_results,
)

__all__ = ["METHODS", "CompressRequest", "apply_overrides", "check_compression", "check_request", "compress_student",
           "load_run", "parse_request", "record_results"]
