"""The class label that marks an image without one.

A classification student may train on more images than are labelled: the teacher's soft targets need no labels.
Such images carry ``UNLABELLED`` as their class; the cross-entropy on labels skips them, and losses that need a
class per image (e.g. DKD) take the teacher's top class instead.
"""

from __future__ import annotations

__all__ = ["UNLABELLED", "unlabelled_count"]

UNLABELLED = -1


def unlabelled_count(value: int) -> int:
    """``data.num_unlabelled`` as an int, refused when negative or not a whole number (every data module that adds
    unlabelled images)."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"data.num_unlabelled must be a whole number >= 0, got {value!r}") from None
    if count != value and not isinstance(value, str):  # 2.5 would silently become 2
        raise ValueError(f"data.num_unlabelled must be a whole number >= 0, got {value!r}")
    if count < 0:
        raise ValueError(f"data.num_unlabelled must be >= 0, got {value}")
    return count
