"""Pixels as a person sees them: a decoded PIL image turned upright by its EXIF orientation and made RGB.

Shared by every place an image becomes model input, so that training (``distill.data.readers.image_files``) and a
loaded student's own preprocessing agree: phone photos store their pixels sideways and say so in the EXIF
(orientation 6 or 8); grayscale is spread to three channels; transparency is composited over white (as a viewer
shows it; dropping the alpha channel would show whatever colour the transparent pixels happen to store); 16-bit
and float samples are scaled to 8 bits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

__all__ = ["EXIF_ORIENTATION", "SWAPS_SIDES", "orientation", "to_rgb", "upright"]

EXIF_ORIENTATION = 0x0112
SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the stored pixels by 90 degrees

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def orientation(img: Image.Image) -> int:
    """The EXIF orientation of ``img`` (1: as stored; also for a missing or malformed EXIF block)."""
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a malformed EXIF block: the pixels as stored are the image
        return 1
    return value if 1 <= value <= 8 else 1


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned by its EXIF orientation (``PIL.ImageOps.exif_transpose``); as stored if the EXIF is bad."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a malformed EXIF block: the pixels as stored are the image
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB: grayscale spread to three channels, transparency composited over white, 16-bit and float scaled."""
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit integer or float samples
        values = np.asarray(img, dtype=np.float64)
        top = values.max() if values.size else 0.0
        if img.mode == "F" and top <= 1.0:
            values = values * 255.0
        elif top > 255.0:
            values = values / (257.0 if top <= 65535.0 else top / 255.0)
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")
