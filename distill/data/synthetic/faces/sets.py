"""Sets of rendered people, a grid picture of them, and the command line that writes one to look at.

    python -m distill.data.synthetic.faces --out /tmp/grid.png

writes a grid (rows = identities, columns = renderings).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from distill.data.synthetic.faces.identity import IdentityParams, sample_identities
from distill.data.synthetic.faces.render import render_faces

__all__ = ["SyntheticFaceSet", "face_grid", "main", "make_face_set"]


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
