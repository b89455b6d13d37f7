"""Where distill keeps what it caches (fitted teachers, teacher outputs, generated data)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir"]


def default_cache_dir(configured: str | os.PathLike | None = None) -> Path:
    """``configured`` if given, else ``$DISTILL_CACHE_DIR``, else ``~/.cache/distill``."""
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("DISTILL_CACHE_DIR", Path.home() / ".cache" / "distill"))
