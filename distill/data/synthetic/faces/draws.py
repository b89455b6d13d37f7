"""The random numbers of a face: separate streams for people and images, and each image's fixed set of draws.

An image draws ``_NUM_IMAGE_DRAWS`` uniforms up front: the first ones decide its attributes, the rest (handed out
by ``_Draws`` in a fixed order) its pose, lighting, clothes, accessories' looks, blur, noise level and occluder.
All are drawn whatever the attributes are, so toggling an attribute moves nothing else in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distill.data.synthetic.faces.attributes import _NUM_ATTR

__all__: list[str] = []

_IDENTITY_STREAM, _IMAGE_STREAM = 0, 1  # keeps identity and image random streams apart for the same seed
_NUM_IMAGE_DRAWS = 128  # uniforms drawn per image, always all of them, so toggling an attribute moves nothing else


def _image_rng(seed: int, image_id: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _IMAGE_STREAM, int(image_id)])


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


@dataclass
class _Nuisance:
    """Everything about one rendering that is not the person: pose, light, scene, looks of the accessories."""

    tx: float
    ty: float
    angle: float
    scale: float
    yaw: float
    gaze: float
    brightness: float
    light_dir: float
    light_amount: float
    cast: np.ndarray
    background: np.ndarray
    clutter: np.ndarray
    clothes: np.ndarray
    hat_colour: np.ndarray
    hat_style: float
    glasses_colour: np.ndarray
    glasses_style: float
    jewel: float
    lipstick_shade: float
    makeup_shade: np.ndarray
    tie_colour: np.ndarray
    blur_draw: float
    noise_level: float
    occluder: np.ndarray
    hair_jitter: float

    @classmethod
    def draw(cls, d: _Draws) -> _Nuisance:
        """Take the draws in their fixed order (all of them, whatever the attributes)."""
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
        return cls(tx, ty, angle, scale, yaw, gaze, brightness, light_dir, light_amount, cast, background, clutter,
                   clothes, hat_colour, hat_style, glasses_colour, glasses_style, jewel, lipstick_shade,
                   makeup_shade, tie_colour, blur_draw, noise_level, occluder, hair_jitter)
