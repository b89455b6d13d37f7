"""A small synthetic classification task for the smoke recipe: each class is a shape in its own colour family,
drawn at a random place and size over a random noisy background, so a small CNN learns it within seconds."""

from __future__ import annotations

import numpy as np

__all__ = ["SHAPES", "render_shapes"]

SHAPES = ("disc", "square", "ring", "cross", "hbars", "vbars", "triangle", "diamond", "dots", "diagonal")


# One base colour per class (RGB), jittered per image.
_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                     (145, 30, 180), (70, 240, 240), (240, 50, 230), (250, 190, 212), (0, 128, 128)], dtype=np.float64)


def _mask(shape: str, yy: np.ndarray, xx: np.ndarray, radius: float) -> np.ndarray:
    ay, ax = np.abs(yy), np.abs(xx)
    r = np.sqrt(yy**2 + xx**2)
    inside = np.maximum(ay, ax) <= radius
    if shape == "disc":
        return r <= radius
    if shape == "square":
        return inside
    if shape == "ring":
        return (r <= radius) & (r >= 0.55 * radius)
    if shape == "cross":
        return inside & ((ay <= 0.3 * radius) | (ax <= 0.3 * radius))
    if shape == "hbars":
        return inside & (np.floor((yy + radius) / (0.4 * radius)) % 2 == 0)
    if shape == "vbars":
        return inside & (np.floor((xx + radius) / (0.4 * radius)) % 2 == 0)
    if shape == "triangle":
        return (yy <= radius) & (yy >= -radius) & (ax <= (yy + radius) / 2)
    if shape == "diamond":
        return ay + ax <= radius
    if shape == "dots":
        cell = 0.5 * radius
        return inside & (np.hypot((yy % cell) - cell / 2, (xx % cell) - cell / 2) <= 0.2 * radius)
    if shape == "diagonal":
        return inside & (np.floor((xx + yy + 2 * radius) / (0.45 * radius)) % 2 == 0)
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def render_shapes(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Render one image per label; image i depends only on (seed, i, label)."""
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    grid = np.arange(size, dtype=np.float32)
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, i])
        background = rng.uniform(0, 255, size=3)
        colour = np.clip(_PALETTE[int(label) % len(_PALETTE)] + rng.normal(0, 20, size=3), 0, 255)
        radius = rng.uniform(0.28, 0.42) * size
        cy, cx = rng.uniform(radius, size - radius, size=2)
        yy, xx = grid[:, None] - cy, grid[None, :] - cx
        mask = _mask(SHAPES[int(label) % len(SHAPES)], yy, xx, radius)
        image = np.where(mask[..., None], colour, background) + rng.normal(0, 12, size=(size, size, 3))
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images
