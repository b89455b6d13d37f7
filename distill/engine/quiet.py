"""Third-party notices a user cannot act on, kept out of a normal run's output (warnings that matter still show)."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party"]

_NOTICES = (
    r"Found \d+ module\(s\) in eval mode",            # the teacher is kept in eval mode on purpose
    r".*isinstance\(treespec, LeafSpec\)",            # Lightning's own use of a deprecated torch API
    r"predict returned None",                         # the teacher-output stage stores its outputs itself
    r"The number of training batches .* is smaller than the logging interval",
    r"You're resuming from a checkpoint that ended before the epoch ended",  # our samplers skip what was trained
    r"Checkpoint directory .* exists and is not empty",  # a resumed run's own folder; a fresh run moved it aside
)


# Loggers that narrate their passes at INFO (the ONNX exporter's optimiser, int8 quantisation): warnings only.
_CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "onnxruntime", "torchao")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip")


def quiet_third_party() -> None:
    """Idempotent: filters the notices above, Lightning's advertising tip and the ONNX exporter's pass-by-pass log."""
    for pattern in _NOTICES:
        warnings.filterwarnings("ignore", message=pattern)
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in logger.filters):
        logger.addFilter(_DropTips())
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
