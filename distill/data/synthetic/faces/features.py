"""The inner face: eyes (with make-up and bags), brows, nose and mouth, from the rendering's layout."""

from __future__ import annotations

import numpy as np

from distill.data.synthetic.faces.canvas import _Canvas
from distill.data.synthetic.faces.identity import IdentityParams
from distill.data.synthetic.faces.layout import SIDES, _Layout
from distill.data.synthetic.faces.sdf import _arc_sdf
from distill.data.synthetic.faces.shading import _mix

__all__: list[str] = []


def _draw_eyes(canvas: _Canvas, idn: IdentityParams, L: _Layout, gaze: float, makeup_shade: np.ndarray) -> None:
    """Eye shadow, bags, the whites, irises turned by the gaze, pupils and lids."""
    on, eye_y, ew, eh, eye_x = L.on, L.eye_y, L.ew, L.eh, L.eye_x
    if on["Heavy_Makeup"]:
        shade = np.clip(0.25 + 0.6 * makeup_shade, 0, 1)
        canvas.ellipses([(cx, eye_y - eh * 0.9, ew * 1.15, eh * 1.5 + 0.01) for cx in eye_x], shade, 0.6)
    if on["Bags_Under_Eyes"]:
        bags = lambda x, y: np.minimum(*[
            _arc_sdf(x, y, cx, eye_y + eh + 0.018, ew * 0.9, -0.012, 0.011, 0.6) for cx in eye_x])
        canvas.draw((eye_x[0] - ew, eye_x[1] + ew, eye_y + eh, eye_y + eh + 0.04), bags,
                    L.skin * np.array([0.62, 0.52, 0.6]), 0.9)
    whites = [(cx, eye_y, ew, eh) for cx in eye_x]
    canvas.ellipses(whites, (0.93, 0.91, 0.88))
    r = min(eh * 1.05, ew * 0.55)
    iris_x = [cx + gaze * ew * 0.35 for cx in eye_x]
    canvas.ellipses([(ix, eye_y, r, r) for ix in iris_x], idn.iris, clip=whites)
    canvas.ellipses([(ix, eye_y, r * 0.45, r * 0.45) for ix in iris_x], (0.04, 0.03, 0.03))
    lid = 0.011 if on["Heavy_Makeup"] else 0.0055 if on["Male"] else 0.0075
    lids = lambda x, y: np.minimum(*[
        _arc_sdf(x, y, cx, eye_y - eh, ew * 1.02, eh * 0.9, lid, 0.5) for cx in eye_x])
    canvas.draw((eye_x[0] - ew, eye_x[1] + ew, eye_y - eh - 0.02, eye_y + 0.01), lids, (0.12, 0.08, 0.07), 0.95)


def _draw_brows(canvas: _Canvas, idn: IdentityParams, L: _Layout) -> None:
    """Both brows; u runs from the inner (-1) to the outer (+1) end of each."""
    on = L.on
    peak = 0.35 if on["Arched_Eyebrows"] else 0.0
    arch = idn.brow_arch * (2.2 if on["Arched_Eyebrows"] else 1.0)
    thick = idn.brow_thickness * (1.3 if on["Male"] else 1.0) * (1.8 if on["Bushy_Eyebrows"] else 1.0) / 2
    by = L.eye_y - idn.brow_gap - arch
    ragged = 0.004 if on["Bushy_Eyebrows"] else 0.0
    half_len = idn.brow_length * (1.1 if on["Bushy_Eyebrows"] else 1.0)
    brow_x = [side * L.eye_sep * 1.03 + L.dx for side in SIDES]

    def brows(x, y):
        sdf = np.minimum(*[_arc_sdf(x, y, bx, by, half_len, arch, thick, 0.45, peak, idn.brow_tilt, side)
                           for bx, side in zip(brow_x, SIDES)])
        if ragged:
            sdf -= ragged * np.sin(150 * x) * np.sin(130 * y)
        return sdf

    canvas.draw((brow_x[0] - half_len, brow_x[1] + half_len, by - 0.05, by + 0.06), brows, L.brow_colour, 0.92)


def _draw_nose(canvas: _Canvas, L: _Layout) -> None:
    """Bridge shading, the tip and wings, a pointed tip (Pointy_Nose) or a round one, the nostrils."""
    skin, dark_skin, eye_y, nose_w, nose_tip = L.skin, L.dark_skin, L.eye_y, L.nose_w, L.nose_tip
    nx = 1.6 * L.dx
    canvas.segment(nx + nose_w * 0.5, eye_y + 0.05, nx + nose_w * 0.62, nose_tip - 0.03, 0.009, dark_skin, 0.45)
    canvas.ellipse(nx, nose_tip + nose_w * 0.35, nose_w * 0.95, nose_w * 0.22, skin * 0.78, 0.5)
    canvas.ellipses([(nx + side * nose_w * 0.72, nose_tip, nose_w * 0.38, nose_w * 0.32) for side in SIDES],
                    skin * 0.86, 0.8)
    if L.on["Pointy_Nose"]:  # a narrow, shaded bridge ending in a sharp tip
        canvas.segments([(nx + side * nose_w * 0.45, eye_y + 0.06, nx + side * nose_w * 0.3, nose_tip - nose_w * 0.5)
                         for side in SIDES], 0.007, dark_skin, 0.6)
        canvas.segment(nx, eye_y + 0.06, nx, nose_tip - nose_w * 0.3, 0.008, L.light_skin, 0.7)
        canvas.draw((nx - nose_w, nx + nose_w, nose_tip - nose_w, nose_tip + nose_w * 0.5),
                    lambda x, y: np.maximum(np.abs(x - nx) - 0.55 * (y - (nose_tip - nose_w * 0.8)),
                                            y - nose_tip - nose_w * 0.15), np.clip(skin * 1.08, 0, 1), 0.8)
    else:
        canvas.ellipse(nx, nose_tip - nose_w * 0.1, nose_w * 0.55, nose_w * 0.48, np.clip(skin * 1.06, 0, 1), 0.7)
    canvas.ellipses([(nx + side * nose_w * 0.34, nose_tip + nose_w * 0.18, nose_w * 0.21, nose_w * 0.12)
                     for side in SIDES], skin * 0.38, 0.9)


def _draw_mouth(canvas: _Canvas, idn: IdentityParams, L: _Layout, lipstick_shade: float) -> None:
    """Lips (lipstick or the identity's tint), open or closed, teeth in a smile."""
    on, dx, mouth_y, mouth_w, lip = L.on, L.dx, L.mouth_y, L.mouth_w, L.lip
    smiling = on["Smiling"]
    curve = -0.03 if smiling else idn.mouth_curve
    opening = (0.03 if smiling else 0.02) if on["Mouth_Slightly_Open"] else 0.0
    if on["Wearing_Lipstick"]:
        lip_colour = _mix((0.78, 0.08, 0.18), (0.72, 0.25, 0.45), lipstick_shade)
    else:
        lip_colour = _mix(L.skin, idn.lip_tint, 0.35 if on["Male"] else 0.5)
    if opening > 0:
        canvas.arc(dx, mouth_y + opening * 0.5, mouth_w * 0.88, curve, opening * 0.5 + 0.004, (0.22, 0.05, 0.06),
                   taper=0.8)
        if smiling:
            canvas.arc(dx, mouth_y + opening * 0.3, mouth_w * 0.7, curve, opening * 0.28, (0.95, 0.93, 0.88),
                       taper=0.7)
    else:
        canvas.arc(dx, mouth_y, mouth_w * 0.98, curve, 0.004, lip_colour * 0.45, taper=0.5)
    canvas.arc(dx, mouth_y - lip * 0.55, mouth_w, curve, lip * 0.55, lip_colour, taper=0.75)
    canvas.arc(dx, mouth_y + opening + lip * 0.7, mouth_w * 0.88, curve * 0.8, lip * 0.7, lip_colour * 1.05,
               taper=0.8)
