"""Finding the checkpoint a ``resume=...`` run continues from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["resume_checkpoint"]

log = logging.getLogger(__name__)


def resume_checkpoint(resume: Any, run_dir: Path) -> str | None:
    """``resume``: false, true (this run's folder), or a run folder or Lightning .ckpt file."""
    if resume in (False, None, "false", ""):
        return None
    candidate = run_dir if resume is True or resume == "true" else Path(str(resume)).expanduser()
    if candidate.is_dir():
        candidate = candidate / "checkpoints" / "last.ckpt"
    if not candidate.is_file():
        raise FileNotFoundError(
            f"resume={resume}: no checkpoint at {candidate}. Point hydra.run.dir at the interrupted run's folder "
            f"(or pass resume=<run folder or .ckpt file>).")
    log.info("Resuming from %s", candidate)
    return str(candidate)
