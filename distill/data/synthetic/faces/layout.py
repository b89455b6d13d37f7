"""Where everything goes on one rendering: the face outline, feature positions and colours, in face units.

The identity's stable parameters, adjusted by the image's attributes (a Chubby face is wider, a smile widens the
mouth and narrows the eyes, a Pale_Skin lightens it, ...) and by the head's turn (``dx``: the internal features
shift with the yaw).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from distill.data.synthetic.faces.identity import IdentityParams
from distill.data.synthetic.faces.sdf import _ellipse_sdf
from distill.data.synthetic.faces.shading import _hair_texture, _mix

__all__: list[str] = []

SIDES = (-1.0, 1.0)  # left, right

_HAIR_COLOURS = {  # rendered colour of each labelled hair colour
    "Black_Hair": (0.07, 0.06, 0.06), "Blond_Hair": (0.86, 0.72, 0.42),
    "Brown_Hair": (0.42, 0.27, 0.15), "Gray_Hair": (0.70, 0.70, 0.70),
}
_PALE_SKIN = np.array([0.99, 0.92, 0.88])


@dataclass
class _Layout:
    """One rendering's geometry and colours (``on``: the image's attributes by name)."""

    on: dict[str, bool]
    # outline: face half-width and half-height, jaw taper, face centre y, chin y, the features' shift with the yaw
    fw: float
    fh: float
    taper: float
    fcy: float
    chin: float
    dx: float
    shoulder_y: float
    nw: float  # neck half-width
    # colours
    skin: np.ndarray
    light_skin: np.ndarray
    dark_skin: np.ndarray
    hair: np.ndarray
    hair_tex: Callable
    brow_colour: np.ndarray
    beard_colour: np.ndarray
    # hair, eyes, nose, mouth, ears
    vol: float
    hair_len: float
    eye_y: float
    eye_sep: float
    ew: float
    eh: float
    eye_x: list[float]
    nose_tip: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip: float
    ear_y: float
    ear: float
    ear_x: list[float]

    def face_sdf(self, x, y, grow=0.0):
        """The face outline: an ellipse narrowing towards the chin by ``taper``, grown by ``grow``."""
        t = np.clip((y - self.fcy) * (1.0 / self.fh), 0.0, 1.0)
        w = 1.0 - self.taper * t * t
        return _ellipse_sdf(x / w, y, 0.0, self.fcy, self.fw + grow, self.fh + grow)


def _outline(idn: IdentityParams, on: dict[str, bool], yaw: float) -> dict[str, float]:
    male = on["Male"]
    fw = idn.face_width * (1.05 if male else 1.0) * (1.14 if on["Chubby"] else 1.0) * (0.93 if on["Oval_Face"] else 1.0)
    fh = idn.face_height * (1.07 if on["Oval_Face"] else 1.0) * (1.03 if male else 1.0)
    taper = 0.45 if on["Oval_Face"] else idn.jaw_taper * (0.7 if male else 1.0)
    if on["Chubby"]:
        taper *= 0.4
    fcy = 0.04
    chin = fcy + fh
    dx = 0.045 * yaw  # internal features turn with the head
    return dict(fw=fw, fh=fh, taper=taper, fcy=fcy, chin=chin, dx=dx, shoulder_y=chin + 0.16,
                nw=idn.neck_width * (1.15 if male else 1.0))


def _colours(idn: IdentityParams, on: dict[str, bool], hair_jitter: float) -> dict[str, Any]:
    skin = np.asarray(idn.skin, dtype=np.float64)
    if on["Pale_Skin"]:
        skin = _mix(skin, _PALE_SKIN, 0.7)
    if not on["Young"]:
        skin = _mix(skin, skin.mean() * np.ones(3), 0.25) * 0.96
    skin = np.clip(skin, 0.0, 1.0)
    light_skin, dark_skin = np.clip(skin * 1.14, 0, 1), skin * 0.8

    hair_names = [n for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair") if on[n]]
    hair = (np.mean([_HAIR_COLOURS[n] for n in hair_names], axis=0) + idn.hair_tint) if hair_names else idn.own_hair
    hair = np.clip(hair + hair_jitter, 0.0, 1.0)
    hair_tex = _hair_texture(hair, on["Wavy_Hair"], on["Straight_Hair"], idn.hair_phase)
    brow_colour = np.clip(hair * 0.55 + 0.02, 0, 1) if not on["Gray_Hair"] else np.array([0.45, 0.44, 0.43])
    beard_colour = np.clip(hair * 0.7, 0, 1)
    return dict(skin=skin, light_skin=light_skin, dark_skin=dark_skin, hair=hair, hair_tex=hair_tex,
                brow_colour=brow_colour, beard_colour=beard_colour)


def _features(idn: IdentityParams, on: dict[str, bool], fw: float, dx: float) -> dict[str, Any]:
    male, smiling = on["Male"], on["Smiling"]
    eye_y, eye_sep = idn.eye_y, idn.eye_spacing
    nose_tip = eye_y + idn.nose_length * (1.15 if on["Big_Nose"] else 1.0) * (1.1 if on["Pointy_Nose"] else 1.0)
    ew = idn.eye_width * (1.08 if on["Attractive"] else 1.0) * (0.92 if on["Chubby"] else 1.0)
    return dict(
        vol=idn.hair_volume * (0.6 if male else 1.0),
        hair_len=idn.hair_length * (0.3 if male else 1.0),
        eye_y=eye_y, eye_sep=eye_sep, ew=ew,
        eh=ew * idn.eye_aspect * (0.5 if on["Narrow_Eyes"] else 1.0) * (0.8 if smiling else 1.0),
        eye_x=[side * eye_sep + dx for side in SIDES],
        nose_tip=nose_tip,
        nose_w=idn.nose_width * (1.4 if on["Big_Nose"] else 1.0) * (0.85 if on["Pointy_Nose"] else 1.0),
        mouth_y=nose_tip + idn.mouth_gap,
        mouth_w=idn.mouth_width * (1.15 if smiling else 1.0),
        lip=idn.lip_thickness * (1.6 if on["Big_Lips"] else 1.0) * (0.8 if male else 1.0),
        ear_y=eye_y + 0.07, ear=idn.ear_size,
        ear_x=[side * fw * 0.97 - 0.25 * dx for side in SIDES],
    )


def _layout(idn: IdentityParams, on: dict[str, bool], yaw: float, hair_jitter: float) -> _Layout:
    outline = _outline(idn, on, yaw)
    return _Layout(on=on, **outline, **_colours(idn, on, hair_jitter),
                   **_features(idn, on, outline["fw"], outline["dx"]))
