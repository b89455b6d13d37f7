"""Shapes as signed distances (negative inside), in whatever coordinates they are given, and their coverage.

Every part of a face is drawn as a signed distance field evaluated on the pixels of its bounding box and turned
into an anti-aliased coverage (``_coverage``): ellipses, round-capped segments, (rounded) boxes and bent bands
(``_arc_sdf``, for brows, lips, lids and wrinkles).
"""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


def _coverage(sdf: np.ndarray, pix: float, opacity: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage (times ``opacity``) of a signed distance, negative inside, at pixel size ``pix``."""
    alpha = sdf * (-opacity / pix)
    alpha += 0.5 * opacity
    np.maximum(alpha, 0.0, out=alpha)
    return np.minimum(alpha, opacity, out=alpha)


def _ellipse_sdf(x, y, cx, cy, ax, ay):
    """Approximate signed distance to an ellipse: (r^2 - 1) / |grad r^2| in normalised radius r."""
    dx, dy = (x - cx) * (1.0 / ax), (y - cy) * (1.0 / ay)
    gx, gy = dx * (1.0 / ax), dy * (1.0 / ay)
    grad = np.sqrt(gx * gx + gy * gy)
    grad += 1e-9
    return (dx * dx + dy * dy - 1.0) / (grad + grad)


def _segment_sdf(x, y, x0, y0, x1, y1, radius):
    bx, by = x1 - x0, y1 - y0
    px, py = x - x0, y - y0
    h = np.clip((px * bx + py * by) * (1.0 / (bx * bx + by * by)), 0.0, 1.0)
    return np.hypot(px - h * bx, py - h * by) - radius


def _box_sdf(x, y, cx, cy, hw, hh, radius=0.0):
    """Box with corners rounded by ``radius`` (0 = sharp, the max-norm approximation)."""
    qx, qy = np.abs(x - cx) - (hw - radius), np.abs(y - cy) - (hh - radius)
    if radius <= 0.0:
        return np.maximum(qx, qy)
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - radius


def _arc_sdf(x, y, cx, cy, half_len, bend, half_thick, taper=0.0, peak=0.0, tilt=0.0, side=1.0):
    """Band around the curve y = cy + bend * (u - peak)^2 + tilt * u, u = side * (x - cx) / half_len in [-1, 1]."""
    u = (x - cx) * (side / half_len)
    w = u - peak
    yc = w * w * bend + tilt * u + cy
    slope = (w * (2.0 * bend) + tilt) * (1.0 / half_len)
    dist = np.abs(y - yc) / np.sqrt(slope * slope + 1.0)
    thick = np.maximum(1.0 - taper * u * u, 0.05) * half_thick
    return np.maximum(dist - thick, (np.abs(u) - 1.0) * half_len)
