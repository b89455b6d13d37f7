"""What a person wears: a necktie or an open neckline, a necklace, a hat, glasses, earrings.

Whether each is worn is an attribute of the image; its looks (colour, style, metal) come from the image's
nuisance draws (``draws._Nuisance``), drawn whether or not it is worn.
"""

from __future__ import annotations

import numpy as np

from distill.data.synthetic.faces.canvas import _Canvas
from distill.data.synthetic.faces.draws import _Nuisance
from distill.data.synthetic.faces.identity import IdentityParams
from distill.data.synthetic.faces.layout import SIDES, _Layout
from distill.data.synthetic.faces.sdf import _box_sdf, _ellipse_sdf

__all__: list[str] = []


def _draw_neckwear(canvas: _Canvas, L: _Layout, tie_colour: np.ndarray, jewel: float) -> None:
    """A shirt collar and necktie, else the skin of an open neckline; then a necklace."""
    on, shoulder_y, nw = L.on, L.shoulder_y, L.nw
    if on["Wearing_Necktie"]:
        collar = lambda x, y: np.maximum(np.abs(x) - 0.13 * (1 - (y - shoulder_y) / 0.35), shoulder_y - 0.02 - y)
        canvas.draw((-0.14, 0.14, shoulder_y - 0.03, shoulder_y + 0.37), collar, (0.93, 0.93, 0.95))
        tie = lambda x, y: np.minimum(
            np.maximum(np.abs(x) - (0.02 + 0.12 * (y - shoulder_y)), np.abs(y - shoulder_y - 0.3) - 0.27),
            _box_sdf(x, y, 0.0, shoulder_y + 0.02, 0.028, 0.024))
        canvas.draw((-0.1, 0.1, shoulder_y - 0.01, shoulder_y + 0.6), tie, tie_colour)
    else:
        canvas.ellipse(0.0, shoulder_y - 0.02, nw * 1.15, 0.09 if on["Male"] else 0.14, L.skin * 0.82)
    if on["Wearing_Necklace"]:
        necklace = (0.86, 0.70, 0.28) if jewel < 0.5 else (0.88, 0.88, 0.92)
        canvas.arc(0.0, shoulder_y + 0.04, nw * 1.25, -0.08, 0.011, necklace, opacity=0.95)


def _draw_accessories(canvas: _Canvas, idn: IdentityParams, L: _Layout, n: _Nuisance) -> None:
    """Hat, glasses and earrings, in that order (each only when its attribute is on)."""
    if L.on["Wearing_Hat"]:
        _draw_hat(canvas, L, n.hat_colour, n.hat_style, n.yaw)
    if L.on["Eyeglasses"]:
        _draw_glasses(canvas, idn, L, n.glasses_colour, n.glasses_style)
    if L.on["Wearing_Earrings"]:
        _draw_earrings(canvas, L, n.jewel)


def _draw_hat(canvas: _Canvas, L: _Layout, hat_colour: np.ndarray, hat_style: float, yaw: float) -> None:
    """A crown over the hair, then by style a beanie's folded band, a brim, or a cap's peak."""
    fw, fh, fcy, vol = L.fw, L.fh, L.fcy, L.vol
    brim_y = fcy - fh * 0.58
    crown = lambda x, y: np.maximum(_ellipse_sdf(x, y, 0.0, brim_y, fw * 1.13 + vol, 0.36), y - brim_y)
    canvas.draw((-fw * 1.13 - vol, fw * 1.13 + vol, brim_y - 0.36, brim_y), crown, hat_colour)
    if hat_style < 1.0:  # beanie with a folded band
        canvas.draw((-fw * 1.13 - vol, fw * 1.13 + vol, brim_y - 0.07, brim_y),
                    lambda x, y: np.maximum(crown(x, y), brim_y - 0.06 - y), hat_colour * 0.75)
    elif hat_style < 2.0:  # brimmed hat
        canvas.ellipse(0.0, brim_y, fw * 1.65, 0.045, hat_colour * 0.85)
    else:  # cap with a peak
        canvas.ellipse(0.25 * fw * (1.0 if yaw >= 0 else -1.0), brim_y + 0.01, fw * 0.95, 0.05, hat_colour * 0.7)


def _draw_glasses(canvas: _Canvas, idn: IdentityParams, L: _Layout, glasses_colour: np.ndarray,
                  glasses_style: float) -> None:
    """Clear or dark lenses, thin or thick rims, the bridge and the arms."""
    fw, eye_y, eye_x = L.fw, L.eye_y, L.eye_x
    sunglasses = glasses_style >= 2.0
    frame = 0.012 if glasses_style < 1.0 else 0.02
    gx_a, gy_a = idn.eye_width * 1.6, idn.eye_width * 1.2
    lens = (0.05, 0.05, 0.07) if sunglasses else (0.85, 0.9, 0.95)
    canvas.ellipses([(cx, eye_y, gx_a, gy_a) for cx in eye_x], lens, 0.88 if sunglasses else 0.18)
    rims = lambda x, y: np.minimum(*[
        np.abs(_ellipse_sdf(x, y, cx, eye_y, gx_a, gy_a)) - frame for cx in eye_x])
    canvas.draw((eye_x[0] - gx_a - frame, eye_x[1] + gx_a + frame, eye_y - gy_a - frame, eye_y + gy_a + frame),
                rims, glasses_colour)
    canvas.segments([(cx + side * gx_a, eye_y - 0.01, side * fw, eye_y - 0.005) for cx, side in zip(eye_x, SIDES)]
                    + [(eye_x[0] + gx_a, eye_y - 0.01, eye_x[1] - gx_a, eye_y - 0.01)], frame * 0.75,
                    glasses_colour)


def _draw_earrings(canvas: _Canvas, L: _Layout, jewel: float) -> None:
    """Gold or silver hoops, or studs, below the ear lobes."""
    ear_x = L.ear_x
    metal = (0.9, 0.75, 0.3) if jewel < 0.6 else (0.85, 0.86, 0.9)
    ey = L.ear_y + 0.095 * L.ear + 0.025
    if jewel < 0.3 or jewel > 0.8:  # hoops
        hoops = lambda x, y: np.minimum(*[
            np.abs(_ellipse_sdf(x, y, ex, ey, 0.032, 0.032)) - 0.007 for ex in ear_x])
        canvas.draw((ear_x[0] - 0.04, ear_x[1] + 0.04, ey - 0.04, ey + 0.04), hoops, metal)
    else:  # studs and drops
        canvas.ellipses([(ex, ey, 0.022, 0.026) for ex in ear_x], metal)
