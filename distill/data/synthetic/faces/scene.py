"""What surrounds the face, in canvas coordinates: the cluttered background and an occluding patch now and then."""

from __future__ import annotations

import numpy as np

from distill.data.synthetic.faces.canvas import _Canvas
from distill.data.synthetic.faces.sdf import _box_sdf, _ellipse_sdf

__all__: list[str] = []


def _draw_background(canvas: _Canvas, background: np.ndarray, clutter: np.ndarray) -> None:
    """A plain colour with four translucent boxes or ellipses over it."""
    canvas.img[:] = (background * 0.8 + 0.1).astype(np.float32)
    for kind, cx, cy, w, h, r, g, b in clutter.tolist():
        cu, cv = 2 * cx - 1, 2 * cy - 1
        if kind < 0.5:
            hw, hh = 0.1 + 0.5 * w, 0.1 + 0.5 * h
            sdf = lambda u, v, cu=cu, cv=cv, hw=hw, hh=hh: _box_sdf(u, v, cu, cv, hw, hh)
        else:
            hw, hh = 0.1 + 0.4 * w, 0.1 + 0.4 * h
            sdf = lambda u, v, cu=cu, cv=cv, hw=hw, hh=hh: _ellipse_sdf(u, v, cu, cv, hw, hh)
        canvas.draw_screen((cu - hw, cu + hw, cv - hh, cv + hh), sdf,
                           (r * 0.9 + 0.05, g * 0.9 + 0.05, b * 0.9 + 0.05), 0.7)


def _draw_occluder(canvas: _Canvas, occluder: np.ndarray) -> None:
    """An opaque box somewhere over the image, in 15% of the images."""
    present, ou, ov, ow, oh, r, g, b = occluder.tolist()
    if present < 0.15:
        ou, ov, ow, oh = ou * 1.6 - 0.8, ov * 1.6 - 0.8, 0.1 + 0.18 * ow, 0.1 + 0.18 * oh
        canvas.draw_screen((ou - ow, ou + ow, ov - oh, ov + oh), lambda u, v: _box_sdf(u, v, ou, ov, ow, oh),
                           (r * 0.9 + 0.05, g * 0.9 + 0.05, b * 0.9 + 0.05))
