"""Synthetic faces with real structure, for the face recipes when no real data set is given.

An identity is a set of stable parameters (face shape, skin tone, eyes, brows, nose, mouth, hair, ears,
marks) plus identity-level attributes (Male, Big_Nose, Bald, ...) and per-image attribute tendencies
(Smiling, Eyeglasses, Wearing_Hat, ...). Each image is a random rendering of its identity: pose, lighting,
background clutter, blur, noise, an occluding patch, and per-image attributes sampled with the identity's
tendencies, using CelebA's 40 attribute names and roughly CelebA's base rates and correlations.

Image ``i`` is a function of (seed, image id, identity parameters, attribute vector) only, so any subset
renders reproducibly and rendering in chunks gives the same bytes as rendering at once. Shapes are drawn
with numpy on coordinate grids (anti-aliased signed distances), restricted to each shape's bounding box,
at about 230 faces of 96x96 per second per core; large sets render in one process per core.

``python -m distill.data.synthetic_faces --out /tmp/grid.png`` writes a grid (rows = identities,
columns = renderings) to look at.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = [
    "ATTRIBUTE_BASE_RATES",
    "ATTRIBUTE_NAMES",
    "IDENTITY_ATTRIBUTES",
    "IMAGE_ATTRIBUTES",
    "IdentityParams",
    "SyntheticFaceSet",
    "face_grid",
    "make_face_set",
    "render_faces",
    "sample_attributes",
    "sample_identities",
]

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)

# CelebA's training-set positive rates (rounded); the sampler is tuned to land near them.
ATTRIBUTE_BASE_RATES: dict[str, float] = {
    "5_o_Clock_Shadow": 0.111, "Arched_Eyebrows": 0.267, "Attractive": 0.513, "Bags_Under_Eyes": 0.205,
    "Bald": 0.022, "Bangs": 0.152, "Big_Lips": 0.241, "Big_Nose": 0.235, "Black_Hair": 0.239,
    "Blond_Hair": 0.148, "Blurry": 0.051, "Brown_Hair": 0.205, "Bushy_Eyebrows": 0.142, "Chubby": 0.058,
    "Double_Chin": 0.047, "Eyeglasses": 0.065, "Goatee": 0.063, "Gray_Hair": 0.042, "Heavy_Makeup": 0.387,
    "High_Cheekbones": 0.455, "Male": 0.417, "Mouth_Slightly_Open": 0.483, "Mustache": 0.042,
    "Narrow_Eyes": 0.115, "No_Beard": 0.835, "Oval_Face": 0.284, "Pale_Skin": 0.043, "Pointy_Nose": 0.277,
    "Receding_Hairline": 0.080, "Rosy_Cheeks": 0.066, "Sideburns": 0.056, "Smiling": 0.482,
    "Straight_Hair": 0.208, "Wavy_Hair": 0.320, "Wearing_Earrings": 0.189, "Wearing_Hat": 0.048,
    "Wearing_Lipstick": 0.472, "Wearing_Necklace": 0.123, "Wearing_Necktie": 0.073, "Young": 0.774,
}

# Fixed for every image of an identity; the others are drawn per image from the identity's propensity.
IDENTITY_ATTRIBUTES: tuple[str, ...] = (
    "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Big_Lips", "Big_Nose", "Black_Hair",
    "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Gray_Hair", "High_Cheekbones",
    "Male", "Narrow_Eyes", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Straight_Hair",
    "Wavy_Hair", "Young",
)
IMAGE_ATTRIBUTES: tuple[str, ...] = tuple(n for n in ATTRIBUTE_NAMES if n not in IDENTITY_ATTRIBUTES)

_A = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
_NUM_ATTR = len(ATTRIBUTE_NAMES)
_IDENTITY_STREAM, _IMAGE_STREAM = 0, 1  # keeps identity and image random streams apart for the same seed
_NUM_IMAGE_DRAWS = 128  # uniforms drawn per image, always all of them, so toggling an attribute moves nothing else

_HAIR_COLOURS = {  # rendered colour of each labelled hair colour
    "Black_Hair": (0.07, 0.06, 0.06), "Blond_Hair": (0.86, 0.72, 0.42),
    "Brown_Hair": (0.42, 0.27, 0.15), "Gray_Hair": (0.70, 0.70, 0.70),
}
_OTHER_HAIR = np.array([(0.55, 0.22, 0.10), (0.24, 0.15, 0.10), (0.62, 0.42, 0.24), (0.35, 0.20, 0.14)])
_IRIS = np.array([(0.30, 0.18, 0.08), (0.12, 0.08, 0.05), (0.25, 0.45, 0.70), (0.30, 0.50, 0.30),
                  (0.45, 0.35, 0.15)])
_LIGHT_SKIN, _DARK_SKIN = np.array([0.97, 0.80, 0.69]), np.array([0.34, 0.21, 0.14])
_PALE_SKIN = np.array([0.99, 0.92, 0.88])


@dataclass(eq=False)
class IdentityParams:
    """Stable parameters of one synthetic person (face units: face half-width ~0.4, y grows downwards)."""

    attributes: np.ndarray  # (40,) int8: identity-level attribute values, 0 for per-image ones
    propensity: np.ndarray  # (40,) float: per-image probability of each attribute (0/1 for identity-level)
    beard_prob: float  # probability of a full beard on an image (sets No_Beard = 0)
    face_width: float
    face_height: float
    jaw_taper: float
    skin: np.ndarray  # (3,) RGB in [0, 1]
    eye_spacing: float
    eye_y: float
    eye_width: float
    eye_aspect: float
    iris: np.ndarray
    brow_gap: float
    brow_thickness: float
    brow_arch: float
    brow_tilt: float
    brow_length: float
    nose_length: float
    nose_width: float
    mouth_gap: float
    mouth_width: float
    lip_thickness: float
    mouth_curve: float
    lip_tint: np.ndarray
    own_hair: np.ndarray  # hair colour when no hair-colour attribute is set (red, auburn, ...)
    hair_tint: np.ndarray  # small per-identity shift of the labelled hair colours
    hair_length: float  # 0..1
    hair_volume: float
    hairline: float
    hair_part: float
    hair_phase: float
    ear_size: float
    neck_width: float
    mole: np.ndarray  # (x, y, radius); radius 0 = none
    blemishes: np.ndarray  # (k, 3) skin spots (x, y, radius), shown when not Attractive

    def traits(self) -> dict[str, bool]:
        """The identity-level attributes by name."""
        return {name: bool(self.attributes[_A[name]]) for name in IDENTITY_ATTRIBUTES}


def _propensity(rng: np.random.Generator, mean: float, concentration: float) -> float:
    """Per-identity probability with the given mean: low concentration = strong personal habits."""
    if mean <= 0.0:
        return 0.0
    return float(rng.beta(mean * concentration, (1.0 - mean) * concentration))


def _sample_identity(rng: np.random.Generator) -> IdentityParams:
    u = rng.random
    geometry = dict(
        face_width=u() * 0.06 + 0.36, face_height=u() * 0.07 + 0.47, jaw_taper=u() * 0.3 + 0.15,
        eye_spacing=u() * 0.04 + 0.145, eye_y=u() * 0.06 - 0.06, eye_width=u() * 0.018 + 0.056,
        eye_aspect=u() * 0.14 + 0.42, brow_gap=u() * 0.03 + 0.07, brow_thickness=u() * 0.008 + 0.015,
        brow_arch=u() * 0.02 + 0.004, brow_tilt=u() * 0.05 - 0.02, brow_length=u() * 0.03 + 0.075,
        nose_length=u() * 0.06 + 0.15, nose_width=u() * 0.02 + 0.046, mouth_gap=u() * 0.04 + 0.09,
        mouth_width=u() * 0.035 + 0.09, lip_thickness=u() * 0.007 + 0.014, mouth_curve=u() * 0.02 - 0.008,
        hair_length=u(), hair_volume=u() * 0.07 + 0.02, hairline=u() * 0.1 - 0.38, hair_part=u() * 2 - 1,
        hair_phase=u() * 2 * math.pi, ear_size=u() * 0.35 + 0.85, neck_width=u() * 0.04 + 0.13,
    )
    tone = rng.beta(1.5, 2.6)
    skin = (1 - tone) * _LIGHT_SKIN + tone * _DARK_SKIN + rng.normal(0, 0.02, 3)
    iris = _IRIS[rng.integers(len(_IRIS))] + rng.normal(0, 0.03, 3)
    lip_tint = np.array([0.72, 0.33, 0.35]) + rng.normal(0, 0.04, 3)
    own_hair = _OTHER_HAIR[rng.integers(len(_OTHER_HAIR))] + rng.normal(0, 0.03, 3)
    hair_tint = rng.normal(0, 0.03, 3)
    mole = np.array([rng.uniform(-0.28, 0.28), rng.uniform(-0.15, 0.35), rng.uniform(0.008, 0.014)])
    if rng.random() > 0.4:
        mole[2] = 0.0
    blemishes = np.stack([rng.uniform(-0.3, 0.3, 6), rng.uniform(-0.3, 0.4, 6), rng.uniform(0.008, 0.018, 6)], 1)

    # Identity-level attributes: base rates and correlations close to CelebA's.
    t = rng.random(24)
    male = t[0] < 0.417
    young = t[1] < 0.774
    attractive = t[2] < (0.15 if not young else 0.45 if male else 0.75)
    bald = male and t[3] < 0.05
    receding = (not bald) and t[4] < ((0.10 if young else 0.30) if male else 0.03)
    gray = (not young) and t[5] < 0.18
    hair_colour = None
    if not gray:
        cuts = (0.30, 0.33, 0.53) if male else (0.20, 0.45, 0.67)  # black | blond | brown | other
        hair_colour = ("Black_Hair", "Blond_Hair", "Brown_Hair", None)[int(np.searchsorted(cuts, t[6]))]
    wavy_cut, straight_cut = (0.14, 0.34) if male else (0.45, 0.67)
    wavy, straight = t[7] < wavy_cut, wavy_cut <= t[7] < straight_cut
    chubby = t[8] < (0.03 if young else 0.15)
    traits = {
        "Male": male, "Young": young, "Attractive": attractive, "Bald": bald, "Receding_Hairline": receding,
        "Gray_Hair": gray, "Black_Hair": hair_colour == "Black_Hair", "Blond_Hair": hair_colour == "Blond_Hair",
        "Brown_Hair": hair_colour == "Brown_Hair", "Wavy_Hair": wavy, "Straight_Hair": straight,
        "Chubby": chubby, "Double_Chin": t[9] < (0.5 if chubby else 0.02),
        "Oval_Face": (not chubby) and t[10] < 0.30, "Pale_Skin": t[11] < (0.02 if male else 0.06),
        "Big_Nose": t[12] < (0.38 if male else 0.13), "Pointy_Nose": t[13] < (0.16 if male else 0.36),
        "Big_Lips": t[14] < (0.19 if male else 0.28), "Narrow_Eyes": t[15] < 0.115,
        "Arched_Eyebrows": t[16] < (0.05 if male else 0.42), "Bushy_Eyebrows": t[17] < (0.25 if male else 0.06),
        "Bags_Under_Eyes": t[18] < (0.15 if young else 0.40), "High_Cheekbones": t[19] < (0.32 if male else 0.55),
    }
    attributes = np.zeros(_NUM_ATTR, dtype=np.int8)
    propensity = np.zeros(_NUM_ATTR, dtype=np.float64)
    for name, value in traits.items():
        attributes[_A[name]] = int(value)
        propensity[_A[name]] = float(value)

    f = 0.0 if male else 1.0  # female share of a mixed rate
    habits = {  # per-image attributes: (mean, concentration); conditionals are resolved in _image_attributes
        "Smiling": (0.48, 4.0), "Mouth_Slightly_Open": (0.49, 4.0), "Blurry": (0.051, 1e4),
        "Eyeglasses": (0.065, 0.3), "Wearing_Hat": (0.048, 4.0), "Bangs": (0.10 + 0.09 * f, 0.8),
        "Heavy_Makeup": (0.667 * f, 2.0), "Wearing_Lipstick": (0.54 * f, 2.0),
        "Wearing_Earrings": (0.30 * f + 0.035 * (1 - f), 1.5), "Wearing_Necklace": (0.20 * f + 0.017 * (1 - f), 1.5),
        "Wearing_Necktie": (0.006 * f + 0.165 * (1 - f), 1.0), "Rosy_Cheeks": (0.105 * f + 0.012 * (1 - f), 1.0),
        "Goatee": (0.15 * (1 - f), 0.8), "Mustache": (0.10 * (1 - f), 0.8), "Sideburns": (0.133 * (1 - f), 0.8),
        "5_o_Clock_Shadow": (0.43 * (1 - f), 1.0),
    }
    for name, (mean, concentration) in habits.items():
        propensity[_A[name]] = _propensity(rng, mean, concentration)
    beard_prob = _propensity(rng, 0.28 * (1 - f), 0.8)
    return IdentityParams(attributes=attributes, propensity=propensity, beard_prob=beard_prob, skin=skin,
                          iris=iris, lip_tint=lip_tint, own_hair=own_hair, hair_tint=hair_tint, mole=mole,
                          blemishes=blemishes, **geometry)


def sample_identities(num_identities: int, seed: int) -> list[IdentityParams]:
    """``num_identities`` people; person k depends only on (seed, k), so a smaller set is a prefix."""
    if int(num_identities) < 1:
        raise ValueError(f"num_identities must be >= 1, got {num_identities}")
    return [_sample_identity(np.random.default_rng([int(seed), _IDENTITY_STREAM, k]))
            for k in range(int(num_identities))]


def _image_attributes(identity: IdentityParams, draws: np.ndarray) -> np.ndarray:
    """Per-image attributes from the identity's tendencies and the image's first uniform draws."""
    p, a = identity.propensity, identity.attributes.copy()

    def hit(name: str, prob: float | None = None) -> bool:
        return bool(draws[_A[name]] < (p[_A[name]] if prob is None else prob))

    for name in ("Blurry", "Eyeglasses", "Wearing_Hat", "Bangs", "Wearing_Earrings", "Wearing_Necklace",
                 "Wearing_Necktie", "Rosy_Cheeks", "Mustache", "Sideburns", "Goatee", "Heavy_Makeup"):
        a[_A[name]] = hit(name)
    if a[_A["Bald"]]:
        a[_A["Bangs"]] = 0
    smiling = hit("Smiling")
    a[_A["Smiling"]] = smiling
    p_open = p[_A["Mouth_Slightly_Open"]] * (1.35 if smiling else 0.65)
    a[_A["Mouth_Slightly_Open"]] = hit("Mouth_Slightly_Open", min(p_open, 1.0))
    if a[_A["Heavy_Makeup"]]:
        a[_A["Wearing_Lipstick"]] = hit("Wearing_Lipstick", 0.95)
    else:
        a[_A["Wearing_Lipstick"]] = hit("Wearing_Lipstick")
    beard = bool(draws[_NUM_ATTR] < identity.beard_prob)
    no_beard = not (beard or a[_A["Goatee"]])
    a[_A["No_Beard"]] = no_beard
    a[_A["5_o_Clock_Shadow"]] = no_beard and hit("5_o_Clock_Shadow")
    return a


def _image_rng(seed: int, image_id: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _IMAGE_STREAM, int(image_id)])


def _check_index(identities: Sequence[IdentityParams], identity_index: np.ndarray,
                 image_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    index = np.asarray(identity_index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"identity_index must be a 1-D integer array, got shape {index.shape} dtype {index.dtype}")
    if len(index) and (index.min() < 0 or index.max() >= len(identities)):
        raise ValueError(f"identity_index values must lie in [0, {len(identities)}), "
                         f"got range [{index.min()}, {index.max()}]")
    ids = np.arange(len(index)) if image_ids is None else np.asarray(image_ids)
    if ids.shape != index.shape or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"image_ids must be integers of the same shape as identity_index {index.shape}, "
                         f"got {ids.shape} {ids.dtype}")
    return index, ids


def sample_attributes(identities: Sequence[IdentityParams], identity_index: np.ndarray, seed: int,
                      image_ids: np.ndarray | None = None) -> np.ndarray:
    """The (N, 40) int8 attributes ``render_faces`` would draw, without rendering (cheap)."""
    index, ids = _check_index(identities, identity_index, image_ids)
    out = np.empty((len(index), _NUM_ATTR), dtype=np.int8)
    for n, (k, image_id) in enumerate(zip(index, ids)):
        draws = _image_rng(seed, image_id).random(_NUM_IMAGE_DRAWS)
        out[n] = _image_attributes(identities[k], draws)
    return out


# ----------------------------------------------------------------------------------------------- drawing

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


class _Draws:
    """The image's uniforms, handed out in a fixed order whatever the attributes are."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.pos = values, _NUM_ATTR + 2

    def take(self, n: int = 1) -> np.ndarray:
        out = self.values[self.pos:self.pos + n]
        if len(out) < n:
            raise RuntimeError("synthetic face renderer ran out of per-image draws")
        self.pos += n
        return out

    def uniform(self, low: float, high: float) -> float:
        return float(low + (high - low) * self.take(1)[0])


def _mix(a, b, t):
    return (1.0 - t) * np.asarray(a, dtype=np.float64) + t * np.asarray(b, dtype=np.float64)


def _hair_texture(base: np.ndarray, wavy: bool, straight: bool, phase: float) -> Callable:
    """Hair colour with strands: fine vertical streaks (straight), undulating bands (wavy), or plain."""
    base = np.asarray(base, dtype=np.float32)
    gain = (0.22 + 0.5 * base).astype(np.float32)

    def colour(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if wavy:
            mod = 0.22 * np.sin(32.0 * x + 3.2 * np.sin(20.0 * y + phase))
            if straight:
                mod += 0.16 * np.sin(70.0 * x + phase)
        elif straight:
            mod = 0.16 * np.sin(70.0 * x + phase)
        else:
            mod = 0.05 * np.sin(17.0 * x + 11.0 * y + phase)
        return base + mod[..., None] * gain

    return colour


def _render_one(idn: IdentityParams, a: np.ndarray, d: _Draws, noise_rng: np.random.Generator,
                size: int) -> np.ndarray:
    on = {name: bool(a[i]) for i, name in enumerate(ATTRIBUTE_NAMES)}
    male, young, smiling = on["Male"], on["Young"], on["Smiling"]
    sides = (-1.0, 1.0)

    # ---- per-image nuisance draws (fixed order, all drawn) ----
    tx, ty = d.uniform(-0.1, 0.1), d.uniform(-0.08, 0.1)
    angle = d.uniform(-0.2, 0.2)
    scale = 1.22 * d.uniform(0.9, 1.1)
    yaw = d.uniform(-1.0, 1.0)
    gaze = d.uniform(-0.5, 0.5)
    brightness, light_dir, light_amount = d.uniform(0.72, 1.18), d.uniform(0, 2 * math.pi), d.uniform(0.0, 0.4)
    cast = 0.9 + 0.2 * d.take(3)
    background = d.take(3)
    clutter = d.take(4 * 8).reshape(4, 8)
    clothes = d.take(3) * 0.8 + 0.1
    hat_colour, hat_style = d.take(3) * 0.85 + 0.05, d.uniform(0, 3)
    glasses_colour, glasses_style = d.take(3) * 0.4, d.uniform(0, 3)
    jewel = d.uniform(0, 1)
    lipstick_shade = d.uniform(0, 1)
    makeup_shade = d.take(3)
    tie_colour = d.take(3) * 0.7 + 0.1
    blur_draw, noise_level = d.uniform(0, 1), d.uniform(0.01, 0.05)
    occluder = d.take(8)
    hair_jitter = d.uniform(-0.03, 0.03)

    canvas = _Canvas(size, scale, angle, tx, ty)
    img = canvas.img

    # ---- background with clutter (canvas coordinates) ----
    img[:] = (background * 0.8 + 0.1).astype(np.float32)
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

    # ---- geometry of this rendering ----
    fw = idn.face_width * (1.05 if male else 1.0) * (1.14 if on["Chubby"] else 1.0) * (0.93 if on["Oval_Face"] else 1.0)
    fh = idn.face_height * (1.07 if on["Oval_Face"] else 1.0) * (1.03 if male else 1.0)
    taper = 0.45 if on["Oval_Face"] else idn.jaw_taper * (0.7 if male else 1.0)
    if on["Chubby"]:
        taper *= 0.4
    fcy = 0.04
    chin = fcy + fh
    dx = 0.045 * yaw  # internal features turn with the head
    skin = np.asarray(idn.skin, dtype=np.float64)
    if on["Pale_Skin"]:
        skin = _mix(skin, _PALE_SKIN, 0.7)
    if not young:
        skin = _mix(skin, skin.mean() * np.ones(3), 0.25) * 0.96
    skin = np.clip(skin, 0.0, 1.0)
    light_skin, dark_skin = np.clip(skin * 1.14, 0, 1), skin * 0.8

    hair_names = [n for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair") if on[n]]
    hair = (np.mean([_HAIR_COLOURS[n] for n in hair_names], axis=0) + idn.hair_tint) if hair_names else idn.own_hair
    hair = np.clip(hair + hair_jitter, 0.0, 1.0)
    hair_tex = _hair_texture(hair, on["Wavy_Hair"], on["Straight_Hair"], idn.hair_phase)
    brow_colour = np.clip(hair * 0.55 + 0.02, 0, 1) if not on["Gray_Hair"] else np.array([0.45, 0.44, 0.43])
    beard_colour = np.clip(hair * 0.7, 0, 1)
    vol = idn.hair_volume * (0.6 if male else 1.0)
    hair_len = idn.hair_length * (0.3 if male else 1.0)
    eye_y, eye_sep = idn.eye_y, idn.eye_spacing
    nose_tip = eye_y + idn.nose_length * (1.15 if on["Big_Nose"] else 1.0) * (1.1 if on["Pointy_Nose"] else 1.0)
    nose_w = idn.nose_width * (1.4 if on["Big_Nose"] else 1.0) * (0.85 if on["Pointy_Nose"] else 1.0)
    mouth_y = nose_tip + idn.mouth_gap
    mouth_w = idn.mouth_width * (1.15 if smiling else 1.0)
    lip = idn.lip_thickness * (1.6 if on["Big_Lips"] else 1.0) * (0.8 if male else 1.0)

    def face_sdf(x, y, grow=0.0):
        t = np.clip((y - fcy) * (1.0 / fh), 0.0, 1.0)
        w = 1.0 - taper * t * t
        return _ellipse_sdf(x / w, y, 0.0, fcy, fw + grow, fh + grow)

    # ---- torso, long hair behind, neck, neckwear ----
    shoulder_y = chin + 0.16
    canvas.ellipse(0.0, shoulder_y + 0.45, 0.9 if male else 0.8, 0.47, clothes)
    nw = idn.neck_width * (1.15 if male else 1.0)
    if not on["Bald"] and hair_len > 0.3:
        bottom = 0.1 + 0.75 * hair_len
        hw = fw * 1.18 + vol
        ripple = 0.02 if on["Wavy_Hair"] else 0.0
        mid, half = (fcy + bottom) / 2, (bottom - fcy) / 2

        def back_hair(x, y):
            box = _box_sdf(x, y, 0.0, mid, hw, half, radius=0.12)
            if ripple:
                box = box + ripple * np.sin(25 * y + idn.hair_phase)
            return np.minimum(_ellipse_sdf(x, y, 0.0, fcy - 0.1, hw, fh + vol), box)

        canvas.draw((-hw - 0.03, hw + 0.03, fcy - 0.1 - fh - vol, bottom + 0.03), back_hair,
                    lambda x, y: hair_tex(x, y) * 0.85)
    neck_mid, neck_half = (fcy + shoulder_y + 0.15) / 2, (shoulder_y + 0.15 - fcy) / 2
    neck_shade = lambda x, y: (skin * 0.8)[None, None, :] * (0.85 + 0.5 * np.clip(y - chin, 0, 0.3))[..., None]
    canvas.draw((-nw, nw, fcy, shoulder_y + 0.15), lambda x, y: _box_sdf(x, y, 0.0, neck_mid, nw, neck_half),
                neck_shade)
    if on["Wearing_Necktie"]:
        collar = lambda x, y: np.maximum(np.abs(x) - 0.13 * (1 - (y - shoulder_y) / 0.35), shoulder_y - 0.02 - y)
        canvas.draw((-0.14, 0.14, shoulder_y - 0.03, shoulder_y + 0.37), collar, (0.93, 0.93, 0.95))
        tie = lambda x, y: np.minimum(
            np.maximum(np.abs(x) - (0.02 + 0.12 * (y - shoulder_y)), np.abs(y - shoulder_y - 0.3) - 0.27),
            _box_sdf(x, y, 0.0, shoulder_y + 0.02, 0.028, 0.024))
        canvas.draw((-0.1, 0.1, shoulder_y - 0.01, shoulder_y + 0.6), tie, tie_colour)
    else:
        canvas.ellipse(0.0, shoulder_y - 0.02, nw * 1.15, 0.09 if male else 0.14, skin * 0.82)
    if on["Wearing_Necklace"]:
        necklace = (0.86, 0.70, 0.28) if jewel < 0.5 else (0.88, 0.88, 0.92)
        canvas.arc(0.0, shoulder_y + 0.04, nw * 1.25, -0.08, 0.011, necklace, opacity=0.95)

    # ---- ears, face, chin ----
    ear_y, ear = eye_y + 0.07, idn.ear_size
    ear_x = [side * fw * 0.97 - 0.25 * dx for side in sides]
    canvas.ellipses([(ex, ear_y, 0.05 * ear, 0.095 * ear) for ex in ear_x], skin * 0.92)
    canvas.ellipses([(ex + side * 0.012, ear_y, 0.025 * ear, 0.06 * ear) for ex, side in zip(ear_x, sides)],
                    skin * 0.75, 0.7)
    skin32 = skin.astype(np.float32)

    def face_colour(x, y):
        r2 = (x * (1.0 / fw)) ** 2 + ((y - fcy) * (1.0 / fh)) ** 2
        return skin32[None, None, :] * (1.05 - 0.2 * r2)[..., None]

    canvas.draw((-fw, fw, fcy - fh, chin), face_sdf, face_colour)
    if on["Double_Chin"]:
        canvas.ellipse(0.0, chin - 0.005, fw * 0.42, 0.07, skin * 0.97)
        canvas.arc(0.0, chin - 0.02, fw * 0.38, -0.03, 0.0055, skin * 0.7, 0.9, taper=0.6)

    # ---- skin details ----
    if not on["Attractive"]:
        canvas.ellipses([(bx * fw / 0.4 + dx, by, br, br) for bx, by, br in idn.blemishes.tolist()],
                        skin * np.array([0.85, 0.7, 0.68]), 0.75)
    mx, my, mr = idn.mole.tolist()
    if mr > 0:
        canvas.ellipse(mx + dx, my, mr, mr, (0.25, 0.15, 0.1), 0.95)
    if on["High_Cheekbones"]:
        canvas.ellipses([(side * fw * 0.55 + dx, eye_y + 0.1, 0.085, 0.035) for side in sides], light_skin, 0.65)
        canvas.ellipses([(side * fw * 0.64 + dx, eye_y + 0.2, 0.06, 0.055) for side in sides], dark_skin, 0.5)
    if on["Rosy_Cheeks"]:
        canvas.ellipses([(side * fw * 0.5 + dx, eye_y + 0.15, 0.075, 0.055) for side in sides], (0.92, 0.42, 0.48),
                        0.5)
    if on["Heavy_Makeup"]:
        canvas.ellipses([(side * fw * 0.55 + dx, eye_y + 0.15, 0.08, 0.05) for side in sides], (0.9, 0.55, 0.55),
                        0.25)
    if not young:
        for k in range(2):
            canvas.arc(dx, eye_y - idn.brow_gap - 0.07 - 0.04 * k, fw * 0.45, 0.015, 0.0045, skin * 0.72, 0.85,
                       taper=0.5)
        lines = []
        for side in sides:
            ox = side * (eye_sep + idn.eye_width * 1.1) + dx
            lines += [(side * (nose_w + 0.03) + dx, nose_tip - 0.01, side * (mouth_w + 0.025) + dx, mouth_y + 0.035),
                      (ox, eye_y, ox + side * 0.035, eye_y - 0.012),
                      (ox, eye_y + 0.008, ox + side * 0.035, eye_y + 0.025)]
        canvas.segments(lines, 0.0045, skin * 0.74, 0.85)
    if smiling:
        canvas.segments([(side * (mouth_w + 0.02) + dx, mouth_y - 0.04, side * (mouth_w + 0.028) + dx, mouth_y + 0.02)
                         for side in sides], 0.006, dark_skin, 0.55)

    # ---- facial hair ----
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

    # ---- eyes and brows ----
    ew = idn.eye_width * (1.08 if on["Attractive"] else 1.0) * (0.92 if on["Chubby"] else 1.0)
    eh = ew * idn.eye_aspect * (0.5 if on["Narrow_Eyes"] else 1.0) * (0.8 if smiling else 1.0)
    eye_x = [side * eye_sep + dx for side in sides]
    if on["Heavy_Makeup"]:
        shade = np.clip(0.25 + 0.6 * makeup_shade, 0, 1)
        canvas.ellipses([(cx, eye_y - eh * 0.9, ew * 1.15, eh * 1.5 + 0.01) for cx in eye_x], shade, 0.6)
    if on["Bags_Under_Eyes"]:
        bags = lambda x, y: np.minimum(*[
            _arc_sdf(x, y, cx, eye_y + eh + 0.018, ew * 0.9, -0.012, 0.011, 0.6) for cx in eye_x])
        canvas.draw((eye_x[0] - ew, eye_x[1] + ew, eye_y + eh, eye_y + eh + 0.04), bags,
                    skin * np.array([0.62, 0.52, 0.6]), 0.9)
    whites = [(cx, eye_y, ew, eh) for cx in eye_x]
    canvas.ellipses(whites, (0.93, 0.91, 0.88))
    r = min(eh * 1.05, ew * 0.55)
    iris_x = [cx + gaze * ew * 0.35 for cx in eye_x]
    canvas.ellipses([(ix, eye_y, r, r) for ix in iris_x], idn.iris, clip=whites)
    canvas.ellipses([(ix, eye_y, r * 0.45, r * 0.45) for ix in iris_x], (0.04, 0.03, 0.03))
    lid = 0.011 if on["Heavy_Makeup"] else 0.0055 if male else 0.0075
    lids = lambda x, y: np.minimum(*[
        _arc_sdf(x, y, cx, eye_y - eh, ew * 1.02, eh * 0.9, lid, 0.5) for cx in eye_x])
    canvas.draw((eye_x[0] - ew, eye_x[1] + ew, eye_y - eh - 0.02, eye_y + 0.01), lids, (0.12, 0.08, 0.07), 0.95)
    # brows: u runs from the inner (-1) to the outer (+1) end of each brow
    peak = 0.35 if on["Arched_Eyebrows"] else 0.0
    arch = idn.brow_arch * (2.2 if on["Arched_Eyebrows"] else 1.0)
    thick = idn.brow_thickness * (1.3 if male else 1.0) * (1.8 if on["Bushy_Eyebrows"] else 1.0) / 2
    by = eye_y - idn.brow_gap - arch
    ragged = 0.004 if on["Bushy_Eyebrows"] else 0.0
    half_len = idn.brow_length * (1.1 if on["Bushy_Eyebrows"] else 1.0)
    brow_x = [side * eye_sep * 1.03 + dx for side in sides]

    def brows(x, y):
        sdf = np.minimum(*[_arc_sdf(x, y, bx, by, half_len, arch, thick, 0.45, peak, idn.brow_tilt, side)
                           for bx, side in zip(brow_x, sides)])
        if ragged:
            sdf -= ragged * np.sin(150 * x) * np.sin(130 * y)
        return sdf

    canvas.draw((brow_x[0] - half_len, brow_x[1] + half_len, by - 0.05, by + 0.06), brows, brow_colour, 0.92)

    # ---- nose ----
    nx = 1.6 * dx
    canvas.segment(nx + nose_w * 0.5, eye_y + 0.05, nx + nose_w * 0.62, nose_tip - 0.03, 0.009, dark_skin, 0.45)
    canvas.ellipse(nx, nose_tip + nose_w * 0.35, nose_w * 0.95, nose_w * 0.22, skin * 0.78, 0.5)
    canvas.ellipses([(nx + side * nose_w * 0.72, nose_tip, nose_w * 0.38, nose_w * 0.32) for side in sides],
                    skin * 0.86, 0.8)
    if on["Pointy_Nose"]:  # a narrow, shaded bridge ending in a sharp tip
        canvas.segments([(nx + side * nose_w * 0.45, eye_y + 0.06, nx + side * nose_w * 0.3, nose_tip - nose_w * 0.5)
                         for side in sides], 0.007, dark_skin, 0.6)
        canvas.segment(nx, eye_y + 0.06, nx, nose_tip - nose_w * 0.3, 0.008, light_skin, 0.7)
        canvas.draw((nx - nose_w, nx + nose_w, nose_tip - nose_w, nose_tip + nose_w * 0.5),
                    lambda x, y: np.maximum(np.abs(x - nx) - 0.55 * (y - (nose_tip - nose_w * 0.8)),
                                            y - nose_tip - nose_w * 0.15), np.clip(skin * 1.08, 0, 1), 0.8)
    else:
        canvas.ellipse(nx, nose_tip - nose_w * 0.1, nose_w * 0.55, nose_w * 0.48, np.clip(skin * 1.06, 0, 1), 0.7)
    canvas.ellipses([(nx + side * nose_w * 0.34, nose_tip + nose_w * 0.18, nose_w * 0.21, nose_w * 0.12)
                     for side in sides], skin * 0.38, 0.9)

    # ---- mouth ----
    curve = -0.03 if smiling else idn.mouth_curve
    opening = (0.03 if smiling else 0.02) if on["Mouth_Slightly_Open"] else 0.0
    if on["Wearing_Lipstick"]:
        lip_colour = _mix((0.78, 0.08, 0.18), (0.72, 0.25, 0.45), lipstick_shade)
    else:
        lip_colour = _mix(skin, idn.lip_tint, 0.35 if male else 0.5)
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

    # ---- hair on top: cap above the hairline, side fringe, bangs ----
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
        canvas.segment(part, hl - 0.02, part * 1.3, cap_cy - cap_ay + 0.04, 0.006, hair * 0.5, 0.6)
    if on["Bangs"]:
        bang_y = eye_y - idn.brow_gap - 0.03
        bangs = lambda x, y: np.maximum(
            np.maximum(y - (bang_y + 0.02 * np.abs(np.sin(28 * x))), hl - 0.03 - y),
            _ellipse_sdf(x, y, 0.0, cap_cy, cap_ax, cap_ay))
        canvas.draw((-fw, fw, hl - 0.05, bang_y + 0.03), bangs, hair_tex)

    # ---- accessories ----
    if on["Wearing_Hat"]:
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
    if on["Eyeglasses"]:
        sunglasses = glasses_style >= 2.0
        frame = 0.012 if glasses_style < 1.0 else 0.02
        gx_a, gy_a = idn.eye_width * 1.6, idn.eye_width * 1.2
        lens = (0.05, 0.05, 0.07) if sunglasses else (0.85, 0.9, 0.95)
        canvas.ellipses([(cx, eye_y, gx_a, gy_a) for cx in eye_x], lens, 0.88 if sunglasses else 0.18)
        rims = lambda x, y: np.minimum(*[
            np.abs(_ellipse_sdf(x, y, cx, eye_y, gx_a, gy_a)) - frame for cx in eye_x])
        canvas.draw((eye_x[0] - gx_a - frame, eye_x[1] + gx_a + frame, eye_y - gy_a - frame, eye_y + gy_a + frame),
                    rims, glasses_colour)
        canvas.segments([(cx + side * gx_a, eye_y - 0.01, side * fw, eye_y - 0.005) for cx, side in zip(eye_x, sides)]
                        + [(eye_x[0] + gx_a, eye_y - 0.01, eye_x[1] - gx_a, eye_y - 0.01)], frame * 0.75,
                        glasses_colour)
    if on["Wearing_Earrings"]:
        metal = (0.9, 0.75, 0.3) if jewel < 0.6 else (0.85, 0.86, 0.9)
        ey = ear_y + 0.095 * ear + 0.025
        if jewel < 0.3 or jewel > 0.8:  # hoops
            hoops = lambda x, y: np.minimum(*[
                np.abs(_ellipse_sdf(x, y, ex, ey, 0.032, 0.032)) - 0.007 for ex in ear_x])
            canvas.draw((ear_x[0] - 0.04, ear_x[1] + 0.04, ey - 0.04, ey + 0.04), hoops, metal)
        else:  # studs and drops
            canvas.ellipses([(ex, ey, 0.022, 0.026) for ex in ear_x], metal)

    # ---- occluder (canvas coordinates) ----
    present, ou, ov, ow, oh, r, g, b = occluder.tolist()
    if present < 0.15:
        ou, ov, ow, oh = ou * 1.6 - 0.8, ov * 1.6 - 0.8, 0.1 + 0.18 * ow, 0.1 + 0.18 * oh
        canvas.draw_screen((ou - ow, ou + ow, ov - oh, ov + oh), lambda u, v: _box_sdf(u, v, ou, ov, ow, oh),
                           (r * 0.9 + 0.05, g * 0.9 + 0.05, b * 0.9 + 0.05))

    # ---- lighting, blur, noise ----
    lx, ly = light_amount * math.cos(light_dir), light_amount * math.sin(light_dir)
    gain = (canvas.u * np.float32(lx) + canvas.v * np.float32(ly)) + np.float32(brightness)
    img *= gain[..., None]
    img *= cast.astype(np.float32)
    sigma = ((1.6 + 1.0 * blur_draw) if on["Blurry"] else 0.6 * blur_draw) * (size / 96.0)
    if sigma > 0.9:
        img = gaussian_filter(img, sigma=(sigma, sigma, 0.0), mode="nearest", truncate=3.0)
    elif sigma > 0.2:
        img = _small_blur(img, sigma)
    # uniform noise (cheaper than Gaussian) with standard deviation ``noise_level``
    noise = np.frombuffer(noise_rng.bytes(size * size * 3), dtype=np.uint8).reshape(size, size, 3)
    img += (noise.astype(np.float32) - 127.5) * np.float32(noise_level * math.sqrt(12.0) / 256.0)
    img *= 255.0
    np.rint(img, out=img)
    return np.clip(img, 0, 255).astype(np.uint8)


def _small_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable 3-tap blur with the variance of a Gaussian of ``sigma`` <= 0.9 px (edges replicated)."""
    w = np.float32(min(sigma * sigma / 2.0, 0.45))
    out = img * (1 - 2 * w)
    out[1:] += w * img[:-1]
    out[:-1] += w * img[1:]
    out[0] += w * img[0]
    out[-1] += w * img[-1]
    res = out * (1 - 2 * w)
    res[:, 1:] += w * out[:, :-1]
    res[:, :-1] += w * out[:, 1:]
    res[:, 0] += w * out[:, 0]
    res[:, -1] += w * out[:, -1]
    return res


def render_faces(identities: Sequence[IdentityParams], identity_index: np.ndarray, seed: int, size: int = 96,
                 attributes: np.ndarray | None = None,
                 image_ids: np.ndarray | None = None, workers: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Render image n of identity ``identities[identity_index[n]]``.

    Returns (images uint8 (N, size, size, 3), attributes int8 (N, 40)). ``attributes`` forces the attribute
    vector of each image (else it is sampled from the identity's tendencies); ``image_ids`` (default 0..N-1)
    are the ids the per-image randomness is keyed on, so rendering ids a..b of a set in a chunk gives the same
    images as rendering the whole set. ``workers`` > 1 renders contiguous chunks in that many processes
    (None: one per available core), the same bytes as one process, since each image depends on its id only.
    """
    index, ids = _check_index(identities, identity_index, image_ids)
    size = int(size)
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if attributes is not None:
        attributes = np.asarray(attributes)
        if attributes.shape != (len(index), _NUM_ATTR):
            raise ValueError(f"attributes must have shape ({len(index)}, {_NUM_ATTR}), got {attributes.shape}")
        if not np.isin(attributes, (0, 1)).all():
            raise ValueError("attributes must hold only 0 and 1")
    workers = _render_workers(workers, len(index))
    if workers > 1:
        return _render_in_processes(identities, index, ids, seed, size, attributes, workers)
    images = np.empty((len(index), size, size, 3), dtype=np.uint8)
    out_attr = np.empty((len(index), _NUM_ATTR), dtype=np.int8)
    for n, (k, image_id) in enumerate(zip(index, ids)):
        rng = _image_rng(seed, image_id)
        draws = rng.random(_NUM_IMAGE_DRAWS)
        attr = _image_attributes(identities[k], draws) if attributes is None else attributes[n].astype(np.int8)
        out_attr[n] = attr
        images[n] = _render_one(identities[k], attr, _Draws(draws), rng, size)
    return images, out_attr


# Below this many images per process, starting the processes costs more than it saves.
_MIN_IMAGES_PER_WORKER = 250


def _render_workers(workers: int | None, count: int) -> int:
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1 (or None for one per core), got {workers}")
    return max(1, min(int(workers), count // _MIN_IMAGES_PER_WORKER))


def _render_in_processes(identities, index, ids, seed, size, attributes, workers) -> tuple[np.ndarray, np.ndarray]:
    # fork where the platform has it: the workers run numpy only and start at once; spawn elsewhere.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunks = np.array_split(np.arange(len(index)), workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        futures = [pool.submit(render_faces, identities, index[chunk], seed, size,
                               None if attributes is None else attributes[chunk], ids[chunk], 1)
                   for chunk in chunks]
        parts = [future.result() for future in futures]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass(eq=False)
class SyntheticFaceSet:
    """Rendered faces: images (N, S, S, 3) uint8, labels (N,) identity ids 0..K-1, attributes (N, 40) int8."""

    images: np.ndarray
    labels: np.ndarray
    attributes: np.ndarray
    identities: list[IdentityParams]

    def __len__(self) -> int:
        return len(self.labels)


def make_face_set(num_identities: int, images_per_identity: int, seed: int, size: int = 96) -> SyntheticFaceSet:
    """``num_identities`` people with ``images_per_identity`` renderings each, grouped by identity."""
    if int(images_per_identity) < 1:
        raise ValueError(f"images_per_identity must be >= 1, got {images_per_identity}")
    identities = sample_identities(num_identities, seed)
    labels = np.repeat(np.arange(int(num_identities)), int(images_per_identity))
    images, attributes = render_faces(identities, labels, seed, size)
    return SyntheticFaceSet(images=images, labels=labels, attributes=attributes, identities=identities)


def face_grid(num_identities: int = 8, images_per_identity: int = 8, seed: int = 0, size: int = 96,
              pad: int = 2) -> np.ndarray:
    """One uint8 picture: a row per identity, a column per rendering."""
    faces = make_face_set(num_identities, images_per_identity, seed, size)
    cell = size + pad
    grid = np.full((num_identities * cell + pad, images_per_identity * cell + pad, 3), 255, dtype=np.uint8)
    for n, image in enumerate(faces.images):
        r, c = divmod(n, images_per_identity)
        grid[pad + r * cell:pad + r * cell + size, pad + c * cell:pad + c * cell + size] = image
    return grid


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp.png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a grid of synthetic faces (rows = identities).")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--identities", type=int, default=8)
    parser.add_argument("--per-identity", type=int, default=8)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zoom", type=int, default=1, help="integer upscaling of the grid for viewing")
    args = parser.parse_args(argv)
    grid = face_grid(args.identities, args.per_identity, args.seed, args.size)
    if args.zoom > 1:
        grid = grid.repeat(args.zoom, axis=0).repeat(args.zoom, axis=1)
    _write_png(args.out, grid)
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
