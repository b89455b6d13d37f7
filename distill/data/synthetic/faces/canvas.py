"""The canvas of one image: every pixel's face coordinates under the image's pose, and the drawing operations.

Face coordinates: face half-width ~0.4, y grows downwards, centred on the face; canvas coordinates (u, v) run over
[-1, 1]. Each operation composites one colour (or a colour function of face x, y) where a signed distance is
negative, over the pixels of the shape's bounding box only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from distill.data.synthetic.faces.sdf import _arc_sdf, _coverage, _segment_sdf

__all__: list[str] = []


class _Canvas:
    """One image being drawn: face coordinates of every pixel under this image's pose."""

    def __init__(self, size: int, scale: float, angle: float, tx: float, ty: float) -> None:
        self.size = size
        grid = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0)
        self.u = np.broadcast_to(grid[None, :], (size, size))  # canvas coordinates in [-1, 1]
        self.v = np.broadcast_to(grid[:, None], (size, size))
        self.c, self.s = math.cos(angle), math.sin(angle)
        self.scale, self.tx, self.ty = scale, tx, ty
        px, py = self.u - np.float32(tx), self.v - np.float32(ty)
        c, s, inv = np.float32(self.c), np.float32(self.s), np.float32(1.0 / scale)
        self.x = (c * px + s * py) * inv
        self.y = (c * py - s * px) * inv
        self.pix = 2.0 / (size * scale)  # one pixel in face units
        self.img = np.zeros((size, size, 3), dtype=np.float32)

    def _pixel_box(self, cu: float, cv: float, hu: float, hv: float) -> tuple[slice, slice] | None:
        """Pixels of the canvas box centred at (cu, cv) with half extents (hu, hv), plus a margin."""
        half = self.size / 2.0
        j0 = max(int((cu - hu + 1.0) * half - 0.5) - 1, 0)
        j1 = min(int((cu + hu + 1.0) * half - 0.5) + 3, self.size)
        i0 = max(int((cv - hv + 1.0) * half - 0.5) - 1, 0)
        i1 = min(int((cv + hv + 1.0) * half - 0.5) + 3, self.size)
        if j0 >= j1 or i0 >= i1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def region(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel box covering the face-space box, or None when it is off the image."""
        k, c, s = self.scale, self.c, self.s
        mx, my, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
        cu, cv = k * (c * mx - s * my) + self.tx, k * (s * mx + c * my) + self.ty
        ac, as_ = abs(c), abs(s)
        return self._pixel_box(cu, cv, k * (ac * hx + as_ * hy), k * (as_ * hx + ac * hy))

    def _composite(self, box, alpha, colour, x, y) -> None:
        col = colour(x, y) if callable(colour) else np.asarray(colour, dtype=np.float32)
        target = self.img[box]
        target += alpha[..., None] * (col - target)

    def draw(self, bounds: tuple[float, float, float, float], sdf: Callable, colour, opacity: float = 1.0) -> None:
        """Composite ``colour`` (RGB or a function of face x, y) where ``sdf(x, y)`` is negative."""
        if opacity <= 0.0:
            return
        box = self.region(*bounds)
        if box is None:
            return
        x, y = self.x[box], self.y[box]
        self._composite(box, _coverage(sdf(x, y), self.pix, opacity), colour, x, y)

    def draw_screen(self, bounds: tuple[float, float, float, float], sdf: Callable, colour,
                    opacity: float = 1.0) -> None:
        """Like ``draw`` but in canvas coordinates (u, v in [-1, 1]), for the scene around the face."""
        u0, u1, v0, v1 = bounds
        box = self._pixel_box((u0 + u1) / 2, (v0 + v1) / 2, (u1 - u0) / 2, (v1 - v0) / 2)
        if box is None:
            return
        u, v = self.u[box], self.v[box]
        self._composite(box, _coverage(sdf(u, v), 2.0 / self.size, opacity), colour, u, v)

    def ellipses(self, shapes: Sequence[tuple[float, float, float, float]], colour, opacity: float = 1.0,
                 clip: Sequence[tuple[float, float, float, float]] = ()) -> None:
        """Union of axis-aligned ellipses (cx, cy, ax, ay) in one colour, intersected with the union of ``clip``."""
        if opacity <= 0.0:
            return
        box = self.region(min(e[0] - e[2] for e in shapes), max(e[0] + e[2] for e in shapes),
                          min(e[1] - e[3] for e in shapes), max(e[1] + e[3] for e in shapes))
        if box is None:
            return
        x, y = self.x[box], self.y[box]
        alpha = None
        for cx, cy, ax, ay in shapes:
            field = self._ellipse_field(x, y, cx, cy, ax, ay, opacity)
            alpha = field if alpha is None else np.minimum(alpha, field, out=alpha)
        if clip:
            inside = None
            for cx, cy, ax, ay in clip:
                field = self._ellipse_field(x, y, cx, cy, ax, ay, opacity)
                inside = field if inside is None else np.minimum(inside, field, out=inside)
            np.maximum(alpha, inside, out=alpha)
        np.negative(alpha, out=alpha)
        np.maximum(alpha, 0.0, out=alpha)
        np.minimum(alpha, opacity, out=alpha)
        self._composite(box, alpha, colour, x, y)

    def _ellipse_field(self, x, y, cx, cy, ax, ay, opacity):
        """Minus the coverage of an ellipse before clipping: coverage ~ 0.5 - (r^2 - 1) m / (2 pix)."""
        gain = opacity * min(ax, ay) / (2.0 * self.pix)
        dx = x - cx
        dx *= 1.0 / ax
        dy = y - cy
        dy *= 1.0 / ay
        dx *= dx
        dy *= dy
        dx += dy
        dx *= gain
        dx -= opacity * 0.5 + gain
        return dx

    def ellipse(self, cx, cy, ax, ay, colour, opacity=1.0) -> None:
        self.ellipses([(cx, cy, ax, ay)], colour, opacity)

    def segment(self, x0, y0, x1, y1, radius, colour, opacity=1.0) -> None:
        self.segments([(x0, y0, x1, y1)], radius, colour, opacity)

    def segments(self, lines: Sequence[tuple[float, float, float, float]], radius, colour, opacity=1.0) -> None:
        """Union of line segments (x0, y0, x1, y1) with round caps of ``radius``, in one colour."""
        bounds = (min(min(s[0], s[2]) for s in lines) - radius, max(max(s[0], s[2]) for s in lines) + radius,
                  min(min(s[1], s[3]) for s in lines) - radius, max(max(s[1], s[3]) for s in lines) + radius)

        def sdf(x, y):
            out = None
            for line in lines:
                dist = _segment_sdf(x, y, *line, radius)
                out = dist if out is None else np.minimum(out, dist, out=out)
            return out

        self.draw(bounds, sdf, colour, opacity)

    def arc(self, cx, cy, half_len, bend, half_thick, colour, opacity=1.0, taper=0.0, peak=0.0, tilt=0.0,
            side=1.0) -> None:
        reach = abs(bend) * (1 + abs(peak)) ** 2 + abs(tilt) + half_thick
        bounds = (cx - half_len, cx + half_len, cy - reach, cy + reach)
        self.draw(bounds, lambda x, y: _arc_sdf(x, y, cx, cy, half_len, bend, half_thick, taper, peak, tilt, side),
                  colour, opacity)
