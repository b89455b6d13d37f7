"""Synthetic people: the stable parameters of an identity, and the attributes of each of its images.

An identity is its face geometry (shape, eyes, brows, nose, mouth, hair, ears), its colours (skin, iris, lips,
hair), its marks, its identity-level attributes (Male, Big_Nose, Bald, ...) with base rates and correlations close
to CelebA's, and its per-image tendencies (how often it smiles, wears glasses, ...). Person k of a seed depends
only on (seed, k). ``_image_attributes`` draws one image's 40 attributes from those tendencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distill.data.synthetic.faces.attributes import _A, _NUM_ATTR, IDENTITY_ATTRIBUTES
from distill.data.synthetic.faces.draws import _IDENTITY_STREAM

__all__ = ["IdentityParams", "sample_identities"]

_OTHER_HAIR = np.array([(0.55, 0.22, 0.10), (0.24, 0.15, 0.10), (0.62, 0.42, 0.24), (0.35, 0.20, 0.14)])
_IRIS = np.array([(0.30, 0.18, 0.08), (0.12, 0.08, 0.05), (0.25, 0.45, 0.70), (0.30, 0.50, 0.30),
                  (0.45, 0.35, 0.15)])
_LIGHT_SKIN, _DARK_SKIN = np.array([0.97, 0.80, 0.69]), np.array([0.34, 0.21, 0.14])


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


def _sample_geometry(rng: np.random.Generator) -> dict[str, float]:
    """Face shape and feature placement: one uniform each, in this order."""
    u = rng.random
    return dict(
        face_width=u() * 0.06 + 0.36, face_height=u() * 0.07 + 0.47, jaw_taper=u() * 0.3 + 0.15,
        eye_spacing=u() * 0.04 + 0.145, eye_y=u() * 0.06 - 0.06, eye_width=u() * 0.018 + 0.056,
        eye_aspect=u() * 0.14 + 0.42, brow_gap=u() * 0.03 + 0.07, brow_thickness=u() * 0.008 + 0.015,
        brow_arch=u() * 0.02 + 0.004, brow_tilt=u() * 0.05 - 0.02, brow_length=u() * 0.03 + 0.075,
        nose_length=u() * 0.06 + 0.15, nose_width=u() * 0.02 + 0.046, mouth_gap=u() * 0.04 + 0.09,
        mouth_width=u() * 0.035 + 0.09, lip_thickness=u() * 0.007 + 0.014, mouth_curve=u() * 0.02 - 0.008,
        hair_length=u(), hair_volume=u() * 0.07 + 0.02, hairline=u() * 0.1 - 0.38, hair_part=u() * 2 - 1,
        hair_phase=u() * 2 * math.pi, ear_size=u() * 0.35 + 0.85, neck_width=u() * 0.04 + 0.13,
    )


def _sample_colours_and_marks(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Skin tone, iris, lip tint, hair colours, a mole (sometimes) and the blemishes."""
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
    return dict(skin=skin, iris=iris, lip_tint=lip_tint, own_hair=own_hair, hair_tint=hair_tint, mole=mole,
                blemishes=blemishes)


def _sample_traits(rng: np.random.Generator) -> dict[str, bool]:
    """Identity-level attributes: base rates and correlations close to CelebA's."""
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
    return {
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


def _sample_habits(rng: np.random.Generator, propensity: np.ndarray, male: bool) -> float:
    """Per-image tendencies into ``propensity`` (in place); returns the probability of a full beard."""
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
    return _propensity(rng, 0.28 * (1 - f), 0.8)


def _sample_identity(rng: np.random.Generator) -> IdentityParams:
    geometry = _sample_geometry(rng)
    looks = _sample_colours_and_marks(rng)
    traits = _sample_traits(rng)
    attributes = np.zeros(_NUM_ATTR, dtype=np.int8)
    propensity = np.zeros(_NUM_ATTR, dtype=np.float64)
    for name, value in traits.items():
        attributes[_A[name]] = int(value)
        propensity[_A[name]] = float(value)
    beard_prob = _sample_habits(rng, propensity, traits["Male"])
    return IdentityParams(attributes=attributes, propensity=propensity, beard_prob=beard_prob, **looks, **geometry)


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
