"""How many DataLoader worker processes a data module starts: what ``data.num_workers`` asks for, never more than
the CPU cores this process may run on (more only add processes that wait for a core and hold memory)."""

from __future__ import annotations

import logging
import os

__all__ = ["available_cores", "loader_workers"]

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform says, else ``os.cpu_count()``)."""
    cores = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)) or cores)
    return max(1, cores)


def loader_workers(requested: int, setting: str = "data.num_workers") -> int:
    """``requested`` workers, clamped to ``available_cores()`` with one INFO line saying so."""
    try:
        workers = int(requested)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0 or isinstance(requested, bool):
        raise ValueError(f"{setting} must be an integer >= 0 (0: load in the main process), got {requested!r}")
    cores = available_cores()
    if workers > cores:
        log.info("%s=%d but this machine has %d CPU cores: using %d DataLoader workers", setting, workers, cores, cores)
        return cores
    return workers
