"""Colour and light: blending colours, hair strands, and the lighting, blur and sensor noise over a finished image."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

__all__: list[str] = []


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


def _finish(canvas, blurry: bool, nuisance, noise_rng: np.random.Generator, size: int) -> np.ndarray:
    """Lighting (a brightness gradient and a colour cast), blur, noise; the canvas as uint8 RGB."""
    img = canvas.img
    lx, ly = nuisance.light_amount * math.cos(nuisance.light_dir), nuisance.light_amount * math.sin(nuisance.light_dir)
    gain = (canvas.u * np.float32(lx) + canvas.v * np.float32(ly)) + np.float32(nuisance.brightness)
    img *= gain[..., None]
    img *= nuisance.cast.astype(np.float32)
    sigma = ((1.6 + 1.0 * nuisance.blur_draw) if blurry else 0.6 * nuisance.blur_draw) * (size / 96.0)
    if sigma > 0.9:
        img = gaussian_filter(img, sigma=(sigma, sigma, 0.0), mode="nearest", truncate=3.0)
    elif sigma > 0.2:
        img = _small_blur(img, sigma)
    # uniform noise (cheaper than Gaussian) with standard deviation ``noise_level``
    noise = np.frombuffer(noise_rng.bytes(size * size * 3), dtype=np.uint8).reshape(size, size, 3)
    img += (noise.astype(np.float32) - 127.5) * np.float32(nuisance.noise_level * math.sqrt(12.0) / 256.0)
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
