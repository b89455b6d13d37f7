"""The head: torso and neck, long hair behind, ears, the face and chin, skin details, facial hair, hair on top.

Each function draws one group of parts onto the canvas, in face coordinates, from the rendering's layout
(``layout._Layout``); ``render._render_one`` calls them back to front.
"""

from __future__ import annotations

import numpy as np

from distill.data.synthetic.faces.canvas import _Canvas
from distill.data.synthetic.faces.identity import IdentityParams
from distill.data.synthetic.faces.layout import SIDES, _Layout
from distill.data.synthetic.faces.sdf import _box_sdf, _ellipse_sdf

__all__: list[str] = []


def _draw_body(canvas: _Canvas, idn: IdentityParams, L: _Layout, clothes: np.ndarray) -> None:
    """Shoulders in their clothes, long hair falling behind the head, the neck."""
    on, fcy, chin, skin, shoulder_y, nw = L.on, L.fcy, L.chin, L.skin, L.shoulder_y, L.nw
    canvas.ellipse(0.0, shoulder_y + 0.45, 0.9 if on["Male"] else 0.8, 0.47, clothes)
    if not on["Bald"] and L.hair_len > 0.3:
        _draw_back_hair(canvas, idn, L)
    neck_mid, neck_half = (fcy + shoulder_y + 0.15) / 2, (shoulder_y + 0.15 - fcy) / 2
    neck_shade = lambda x, y: (skin * 0.8)[None, None, :] * (0.85 + 0.5 * np.clip(y - chin, 0, 0.3))[..., None]
    canvas.draw((-nw, nw, fcy, shoulder_y + 0.15), lambda x, y: _box_sdf(x, y, 0.0, neck_mid, nw, neck_half),
                neck_shade)


def _draw_back_hair(canvas: _Canvas, idn: IdentityParams, L: _Layout) -> None:
    fw, fh, fcy, vol, hair_tex = L.fw, L.fh, L.fcy, L.vol, L.hair_tex
    bottom = 0.1 + 0.75 * L.hair_len
    hw = fw * 1.18 + vol
    ripple = 0.02 if L.on["Wavy_Hair"] else 0.0
    mid, half = (fcy + bottom) / 2, (bottom - fcy) / 2

    def back_hair(x, y):
        box = _box_sdf(x, y, 0.0, mid, hw, half, radius=0.12)
        if ripple:
            box = box + ripple * np.sin(25 * y + idn.hair_phase)
        return np.minimum(_ellipse_sdf(x, y, 0.0, fcy - 0.1, hw, fh + vol), box)

    canvas.draw((-hw - 0.03, hw + 0.03, fcy - 0.1 - fh - vol, bottom + 0.03), back_hair,
                lambda x, y: hair_tex(x, y) * 0.85)


def _draw_face(canvas: _Canvas, L: _Layout) -> None:
    """Ears, the shaded face, a double chin."""
    fw, fh, fcy, chin, skin, ear_y, ear, ear_x = L.fw, L.fh, L.fcy, L.chin, L.skin, L.ear_y, L.ear, L.ear_x
    canvas.ellipses([(ex, ear_y, 0.05 * ear, 0.095 * ear) for ex in ear_x], skin * 0.92)
    canvas.ellipses([(ex + side * 0.012, ear_y, 0.025 * ear, 0.06 * ear) for ex, side in zip(ear_x, SIDES)],
                    skin * 0.75, 0.7)
    skin32 = skin.astype(np.float32)

    def face_colour(x, y):
        r2 = (x * (1.0 / fw)) ** 2 + ((y - fcy) * (1.0 / fh)) ** 2
        return skin32[None, None, :] * (1.05 - 0.2 * r2)[..., None]

    canvas.draw((-fw, fw, fcy - fh, chin), L.face_sdf, face_colour)
    if L.on["Double_Chin"]:
        canvas.ellipse(0.0, chin - 0.005, fw * 0.42, 0.07, skin * 0.97)
        canvas.arc(0.0, chin - 0.02, fw * 0.38, -0.03, 0.0055, skin * 0.7, 0.9, taper=0.6)


def _draw_skin_details(canvas: _Canvas, idn: IdentityParams, L: _Layout) -> None:
    """Blemishes, a mole, cheekbones, rosy cheeks, blush, wrinkles of age and smile lines."""
    on, fw, dx, skin, eye_y = L.on, L.fw, L.dx, L.skin, L.eye_y
    if not on["Attractive"]:
        canvas.ellipses([(bx * fw / 0.4 + dx, by, br, br) for bx, by, br in idn.blemishes.tolist()],
                        skin * np.array([0.85, 0.7, 0.68]), 0.75)
    mx, my, mr = idn.mole.tolist()
    if mr > 0:
        canvas.ellipse(mx + dx, my, mr, mr, (0.25, 0.15, 0.1), 0.95)
    if on["High_Cheekbones"]:
        canvas.ellipses([(side * fw * 0.55 + dx, eye_y + 0.1, 0.085, 0.035) for side in SIDES], L.light_skin, 0.65)
        canvas.ellipses([(side * fw * 0.64 + dx, eye_y + 0.2, 0.06, 0.055) for side in SIDES], L.dark_skin, 0.5)
    if on["Rosy_Cheeks"]:
        canvas.ellipses([(side * fw * 0.5 + dx, eye_y + 0.15, 0.075, 0.055) for side in SIDES], (0.92, 0.42, 0.48),
                        0.5)
    if on["Heavy_Makeup"]:
        canvas.ellipses([(side * fw * 0.55 + dx, eye_y + 0.15, 0.08, 0.05) for side in SIDES], (0.9, 0.55, 0.55),
                        0.25)
    if not on["Young"]:
        _draw_wrinkles(canvas, idn, L)
    if on["Smiling"]:
        mouth_w, mouth_y = L.mouth_w, L.mouth_y
        canvas.segments([(side * (mouth_w + 0.02) + dx, mouth_y - 0.04, side * (mouth_w + 0.028) + dx, mouth_y + 0.02)
                         for side in SIDES], 0.006, L.dark_skin, 0.55)


def _draw_wrinkles(canvas: _Canvas, idn: IdentityParams, L: _Layout) -> None:
    """Forehead lines, nose-to-mouth folds and crow's feet."""
    fw, dx, skin, eye_y, nose_w, nose_tip = L.fw, L.dx, L.skin, L.eye_y, L.nose_w, L.nose_tip
    for k in range(2):
        canvas.arc(dx, eye_y - idn.brow_gap - 0.07 - 0.04 * k, fw * 0.45, 0.015, 0.0045, skin * 0.72, 0.85,
                   taper=0.5)
    lines = []
    for side in SIDES:
        ox = side * (L.eye_sep + idn.eye_width * 1.1) + dx
        lines += [(side * (nose_w + 0.03) + dx, nose_tip - 0.01, side * (L.mouth_w + 0.025) + dx, L.mouth_y + 0.035),
                  (ox, eye_y, ox + side * 0.035, eye_y - 0.012),
                  (ox, eye_y + 0.008, ox + side * 0.035, eye_y + 0.025)]
    canvas.segments(lines, 0.0045, skin * 0.74, 0.85)


def _draw_facial_hair(canvas: _Canvas, L: _Layout) -> None:
    """Stubble, a full beard, a goatee, a moustache, sideburns."""
    on, fw, chin, dx, skin, beard_colour = L.on, L.fw, L.chin, L.dx, L.skin, L.beard_colour
    eye_y, nose_tip, mouth_y, mouth_w, lip, face_sdf = L.eye_y, L.nose_tip, L.mouth_y, L.mouth_w, L.lip, L.face_sdf

    def beard_region(x, y, strap: bool):
        inside = np.maximum(face_sdf(x, y, 0.012), nose_tip + 0.04 - y)
        if strap:
            inside = np.maximum(inside, -(face_sdf(x, y) + 0.045))
        lips = _ellipse_sdf(x, y, dx, mouth_y + 0.005, mouth_w * 1.05, lip * 2.2)
        return np.maximum(inside, -lips)

    beard_box = (-fw - 0.05, fw + 0.05, nose_tip, chin + 0.05)
    if on["5_o_Clock_Shadow"]:
        stubble = np.clip(skin * 0.55, 0, 1).astype(np.float32)
        canvas.draw(beard_box, lambda x, y: beard_region(x, y, False),
                    lambda x, y: stubble * (0.85 + 0.15 * np.sin(160 * x) * np.sin(140 * y))[..., None], 0.45)
    if not on["No_Beard"]:
        beard32 = beard_colour.astype(np.float32)
        canvas.draw(beard_box, lambda x, y: beard_region(x, y, on["Goatee"]),
                    lambda x, y: beard32 * (0.9 + 0.15 * np.sin(90 * x) * np.sin(80 * y))[..., None], 0.9)
    if on["Goatee"]:
        canvas.draw((dx - mouth_w, dx + mouth_w, mouth_y, chin + 0.03),
                    lambda x, y: np.maximum(_ellipse_sdf(x, y, dx, mouth_y + 0.08, mouth_w * 0.6, 0.085),
                                            -_ellipse_sdf(x, y, dx, mouth_y + 0.005, mouth_w * 1.02, lip * 2.0)),
                    beard_colour, 0.95)
    if on["Mustache"]:
        canvas.arc(dx, mouth_y - lip - 0.02, mouth_w * 1.08, 0.025, 0.017, beard_colour, 0.95, taper=0.6)
    if on["Sideburns"]:
        burns = lambda x, y: np.maximum(
            np.minimum(_box_sdf(x, y, -fw * 0.9, eye_y + 0.02, 0.033, 0.15),
                       _box_sdf(x, y, fw * 0.9, eye_y + 0.02, 0.033, 0.15)), face_sdf(x, y, 0.01))
        canvas.draw((-fw, fw, eye_y - 0.13, eye_y + 0.17), burns, beard_colour, 0.95)


def _draw_top_hair(canvas: _Canvas, idn: IdentityParams, L: _Layout) -> None:
    """Hair on top: the cap above the hairline (receding or bald sides), its parting, bangs."""
    on, fw, fh, fcy, vol, hair_tex = L.on, L.fw, L.fh, L.fcy, L.vol, L.hair_tex
    hl = idn.hairline - (0.1 if on["Receding_Hairline"] else 0.0)
    side_drop = fcy - 0.02 - hl
    cap_ax, cap_ay, cap_cy = fw * 1.07 + vol, fh * 0.92 + vol, fcy - 0.08

    def top_hair(x, y):
        line = hl + side_drop * (x * (1.0 / fw)) ** 2
        if on["Receding_Hairline"]:
            line = line - 0.11 * np.exp(-(((np.abs(x) / fw) - 0.55) / 0.17) ** 2)
        sdf = np.maximum(_ellipse_sdf(x, y, 0.0, cap_cy, cap_ax, cap_ay), y - line)
        if on["Wavy_Hair"]:
            sdf -= 0.012 * np.sin(40 * x + idn.hair_phase)
        if on["Bald"]:
            fringe = 0.86 if on["Receding_Hairline"] else 0.78
            sdf = np.maximum(sdf, np.maximum(fringe * fw - np.abs(x), -0.22 - y))
        return sdf

    canvas.draw((-cap_ax, cap_ax, cap_cy - cap_ay, fcy + 0.02), top_hair, hair_tex)
    if not on["Bald"]:
        part = idn.hair_part * fw * 0.5
        canvas.segment(part, hl - 0.02, part * 1.3, cap_cy - cap_ay + 0.04, 0.006, L.hair * 0.5, 0.6)
    if on["Bangs"]:
        bang_y = L.eye_y - idn.brow_gap - 0.03
        bangs = lambda x, y: np.maximum(
            np.maximum(y - (bang_y + 0.02 * np.abs(np.sin(28 * x))), hl - 0.03 - y),
            _ellipse_sdf(x, y, 0.0, cap_cy, cap_ax, cap_ay))
        canvas.draw((-fw, fw, hl - 0.05, bang_y + 0.03), bangs, hair_tex)
