"""A run's folder, safe to use again: nothing an earlier run left is lost or mistaken for this run's.

- results.json is written only when a run finishes (with ``"status": "ok"``); one left by an earlier run is
  moved aside (``results.previous-<time>.json``) when a run starts, so a failed re-run never reports as finished.
- A fresh run in a used folder moves the earlier training log and checkpoint aside; a resumed run keeps them
  (its log appends, ``distill/engine/logs.py``).
- ``run_config.json`` records the configuration a run started with; ``resume=true`` refuses, naming the keys,
  a configuration that differs in anything but what a resume may change (``resume_force=true`` overrides).
Only the first process of a job does this (the other ranks of a DDP job start later in the same folder).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from distill.core.io import atomic_write_json

__all__ = ["prepare_run_folder", "config_differences", "RUN_CONFIG", "RESUMABLE_KEYS"]

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"
# What a resumed run may change: the resume switches, the epoch count, how it reports progress and latency, and the
# compression that follows the training (every key under compress.).
RESUMABLE_KEYS = ("resume", "resume_force", "trainer.max_epochs", "progress", "latency_runs", "latency_ort")
_RESUMABLE_PREFIXES = ("compress.",)
# Files of an earlier run that a fresh run moves aside rather than overwrites.
_EARLIER_RUN_FILES = ("logs/metrics.csv", "teacher_fit/metrics.csv", "checkpoints/last.ckpt")


def _is_first_process() -> bool:
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def config_differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that differs, except those a resume may change."""
    old, new = _flatten(before), _flatten(now)
    changed = []
    for key in sorted(set(old) | set(new)):
        if key in RESUMABLE_KEYS or key.startswith(_RESUMABLE_PREFIXES) or old.get(key) == new.get(key):
            continue
        changed.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return changed


def _move_aside(path: Path, stamp: str) -> None:
    if path.is_file():
        target = path.with_name(f"{path.stem}.previous-{stamp}{path.suffix}")
        os.replace(path, target)
        log.info("Kept the earlier run's %s as %s", path.name, target.name)


def prepare_run_folder(run_dir: Path, config: dict[str, Any], *, resuming: bool, force: bool = False) -> None:
    """Make ``run_dir`` ready for a run of ``config`` (see the module docstring); raises on a changed resume."""
    if not _is_first_process():
        return
    recorded = run_dir / RUN_CONFIG
    if resuming and recorded.is_file() and not force:
        changed = config_differences(json.loads(recorded.read_text(encoding="utf-8")), config)
        if changed:
            raise ValueError(
                f"resume=true in {run_dir}: the configuration differs from the interrupted run's ({recorded}) in "
                f"{len(changed)} setting(s): " + "; ".join(changed[:10]) + ". Resume with the same settings (only "
                f"{', '.join(RESUMABLE_KEYS)} may change), or pass resume_force=true to continue anyway.")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    _move_aside(run_dir / "results.json", stamp)
    if not resuming:
        for name in _EARLIER_RUN_FILES:
            _move_aside(run_dir / name, stamp)
    atomic_write_json(recorded, config)
