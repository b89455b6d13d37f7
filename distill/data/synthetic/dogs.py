"""Synthetic fine-grained recognition (the dogs recipe's default data): many "breeds" of one coarse dog shape.

Every class draws the same silhouette (body, head, legs, tail) and differs from its neighbours only in details:
coat colour, coat pattern, ear type and muzzle length, so classes sharing three of the four details are easily
confused (what makes fine-grained recognition hard, and what a teacher's soft targets carry). Each image varies
the pose (facing, position, size, stance), the background and the lighting. Rendering is vectorised numpy and
image i of a split depends only on (seed, split, i).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COATS",
    "EARS",
    "MAX_CLASSES",
    "MUZZLES",
    "PATTERNS",
    "breed_factors",
    "breed_names",
    "render_dogs",
]

COATS = ("tan", "brown", "cream", "grey", "black")
PATTERNS = ("plain", "spotted", "striped", "saddled")
EARS = ("pricked", "floppy", "long")
MUZZLES = ("short", "long")
MAX_CLASSES = len(COATS) * len(PATTERNS) * len(EARS) * len(MUZZLES)  # 120, as many as Stanford Dogs' breeds

_COAT_RGB = np.array([(196, 150, 100), (128, 82, 48), (226, 206, 164), (138, 136, 132), (58, 50, 46)],
                     dtype=np.float32)
_CHUNK = 256  # images rendered at once (bounds memory)


def breed_factors(labels: np.ndarray) -> np.ndarray:
    """(N, 4) indices into COATS, PATTERNS, EARS, MUZZLES for each class label (a mixed-radix code)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
        raise ValueError(f"labels must lie in [0, {MAX_CLASSES}), got range [{labels.min()}, {labels.max()}]")
    coat = labels % len(COATS)
    pattern = (labels // len(COATS)) % len(PATTERNS)
    ear = (labels // (len(COATS) * len(PATTERNS))) % len(EARS)
    muzzle = labels // (len(COATS) * len(PATTERNS) * len(EARS))
    return np.stack([coat, pattern, ear, muzzle], axis=1)


def breed_names(num_classes: int) -> list[str]:
    """Readable class names, e.g. "tan spotted floppy-eared short-muzzled"."""
    factors = breed_factors(np.arange(num_classes))
    return [f"{COATS[c]} {PATTERNS[p]} {EARS[e]}-eared {MUZZLES[m]}-muzzled" for c, p, e, m in factors]


def _per_image(values: np.ndarray) -> np.ndarray:
    """(N,) per-image values -> (N, 1, 1) float32, to broadcast against (N, H, W) pixel grids."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _pose(n: int, size: int, grid: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Body-centred coordinates (x towards the head, y down, in units of the dog's size) of every pixel: facing
    direction, position, size and a small tilt drawn per image."""
    facing = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    scale = rng.uniform(0.8, 1.05, n) * size
    cx = size * (0.5 + rng.uniform(-0.08, 0.08, n))
    cy = size * (0.52 + rng.uniform(-0.06, 0.06, n))
    tilt = rng.uniform(-0.12, 0.12, n)
    x = (grid[None, None, :] - _per_image(cx)) / _per_image(scale) * _per_image(facing)
    y = (grid[None, :, None] - _per_image(cy)) / _per_image(scale)
    return x, y - _per_image(tilt) * x


def _silhouette(x: np.ndarray, y: np.ndarray, ear: np.ndarray, muzzle: np.ndarray,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Masks of the body, head, snout, legs, tail and the breed's ears (the "part" detail: pricked triangles above
    the head, floppy flaps beside it, or long hanging ears); "dog" is their union."""
    n = len(ear)
    body = (x / 0.27) ** 2 + (y / 0.12) ** 2 <= 1.0
    hx, hy = 0.29, -0.12                                             # head centre
    head = (x - hx) ** 2 + (y - hy) ** 2 <= 0.085 ** 2
    muzzle_len = np.where(muzzle == 0, 0.07, 0.15)
    snout = (x >= hx) & (x <= hx + _per_image(muzzle_len)) & (np.abs(y - (hy + 0.03)) <= 0.035)
    stance = rng.uniform(-0.03, 0.03, (n, 2)).astype(np.float32)
    legs = np.zeros_like(body)
    for leg_x, jitter in ((-0.18, 0), (-0.1, 1), (0.1, 0), (0.18, 1)):
        lx = leg_x + _per_image(stance[:, jitter])
        legs |= (np.abs(x - lx) <= 0.028) & (y >= 0.0) & (y <= 0.3)
    tail = (x <= -0.24) & (x >= -0.4) & (np.abs(y + 0.06 + 0.6 * (x + 0.24)) <= 0.022)
    ex, ey = x - (hx - 0.03), y - hy
    pricked = (ey <= -0.05) & (ey >= -0.16) & (np.abs(ex) <= 0.05 * (ey + 0.16) / 0.11)
    floppy = (ex - 0.0) ** 2 / 0.05 ** 2 + (ey + 0.02) ** 2 / 0.07 ** 2 <= 1.0
    long_ear = (np.abs(ex + 0.02) <= 0.03) & (ey >= -0.04) & (ey <= 0.16)
    ears = np.where(_per_image(ear) == 0, pricked, np.where(_per_image(ear) == 1, floppy, long_ear))
    return {"body": body, "head": head, "ears": ears, "dog": body | head | snout | legs | tail | ears}


def _coat(x: np.ndarray, y: np.ndarray, coat: np.ndarray, pattern: np.ndarray, parts: dict[str, np.ndarray],
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The breed's colour (slightly jittered), its pattern's mask on body and head, and the pattern's and ears'
    colours: (coat_rgb, marked, pattern_rgb, ears_rgb)."""
    n = len(coat)
    coat_rgb = _COAT_RGB[coat] * rng.uniform(0.93, 1.07, (n, 1)).astype(np.float32)
    freq = rng.uniform(26, 32, n).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 2)).astype(np.float32)
    wave_x = x * _per_image(freq) + _per_image(phase[:, 0])
    wave_y = y * _per_image(freq) + _per_image(phase[:, 1])
    spots = np.sin(wave_x) * np.sin(wave_y) > 0.55
    stripes = np.sin(1.3 * (wave_x - _per_image(phase[:, 0])) + _per_image(phase[:, 0])) > 0.45
    saddle = y <= -0.03
    marked = np.where(_per_image(pattern) == 1, spots, np.where(_per_image(pattern) == 2, stripes,
                                                         np.where(_per_image(pattern) == 3, saddle, False)))
    marked &= parts["body"] | parts["head"]
    dark = np.where(coat[:, None] == 4, 1.9, 0.45).astype(np.float32)   # markings on a black coat are lighter
    return coat_rgb, marked, np.clip(coat_rgb * dark, 0, 255), np.clip(coat_rgb * 0.8, 0, 255)


def _render_chunk(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    coat, pattern, ear, muzzle = breed_factors(labels).T
    grid = (np.arange(size, dtype=np.float32) + 0.5)
    x, y = _pose(n, size, grid, rng)
    parts = _silhouette(x, y, ear, muzzle, rng)
    coat_rgb, marked, pattern_rgb, ears_rgb = _coat(x, y, coat, pattern, parts, rng)

    # Background: a random two-colour vertical gradient (ground and sky) with noise.
    top = rng.uniform(40, 230, (n, 3)).astype(np.float32)
    bottom = rng.uniform(40, 230, (n, 3)).astype(np.float32)
    t = (grid / size)[None, :, None, None]
    background = top[:, None, None, :] * (1 - t) + bottom[:, None, None, :] * t

    image = np.where(parts["dog"][..., None], coat_rgb[:, None, None, :], background)
    image = np.where((parts["ears"] & ~parts["head"])[..., None], ears_rgb[:, None, None, :], image)
    image = np.where(marked[..., None], pattern_rgb[:, None, None, :], image)

    # Lighting: overall brightness and a horizontal light gradient, then sensor noise.
    gain = rng.uniform(0.75, 1.2, n).astype(np.float32)
    slope = rng.uniform(-0.25, 0.25, n).astype(np.float32)
    light = _per_image(gain) * (1 + _per_image(slope) * (grid[None, None, :] / size - 0.5))
    image = image * light[..., None] + rng.normal(0, 8, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_dogs(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Render one (size, size, 3) uint8 image per label; deterministic in (seed, labels, size)."""
    labels = np.asarray(labels, dtype=np.int64)
    if int(size) < 16:
        raise ValueError(f"image size must be >= 16 pixels to show the breed details, got {size}")
    images = np.empty((len(labels), int(size), int(size), 3), dtype=np.uint8)
    for chunk, start in enumerate(range(0, len(labels), _CHUNK)):
        rng = np.random.default_rng([int(seed), chunk])
        images[start:start + _CHUNK] = _render_chunk(labels[start:start + _CHUNK], int(size), rng)
    return images
