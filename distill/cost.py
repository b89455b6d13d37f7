"""``python -m distill.cost NAME [key=value ...]``: the cost table of a student, in the paper's convention.

The profiler itself lives in the bottom layer (``distill.core.cost``); its names are re-exported here, so
``distill.cost.profile`` keeps working.
"""

from __future__ import annotations

import argparse

from distill.core.cost import CostProfile, format_table, profile
from distill.models import create_student

__all__ = ["CostProfile", "format_table", "profile", "main"]


def _parse_value(text: str):
    """Command-line value: bool, int, float, None, or the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m distill.cost NAME [key=value ...]``: print the cost table of a student."""

    parser = argparse.ArgumentParser(
        prog="python -m distill.cost",
        description="Mult-adds and parameters of a student network in the MobileNet paper's convention.",
    )
    parser.add_argument("name", help="student name: mobilenet_v1 or any timm model name")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="resolution=<px> (default 224), and arguments of the student, e.g. width_multiplier=0.5 num_classes=10",
    )
    args = parser.parse_args(argv)

    kwargs = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"expected key=value, got {item!r}")
        kwargs[key] = _parse_value(value)
    resolution = kwargs.pop("resolution", 224)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        parser.error(f"resolution must be a positive int (pixels), got {resolution!r}")
    in_chans = kwargs.get("in_chans", 3)

    try:
        model = create_student(args.name, **kwargs)
        cost = profile(model, (in_chans, resolution, resolution))
    except ValueError as error:
        parser.error(str(error))
    settings = " ".join(f"{k}={v}" for k, v in kwargs.items())
    print(f"{args.name} {settings}".rstrip() + f", input {in_chans}x{resolution}x{resolution}")
    print(format_table(cost))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
