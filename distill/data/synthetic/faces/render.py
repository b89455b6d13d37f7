"""Rendering: one image from its identity, attributes and draws (back to front), and whole sets of images.

Image ``i`` is a function of (seed, image id, identity parameters, attribute vector) only, so any subset renders
reproducibly and rendering in chunks, or in several processes, gives the same bytes as rendering at once.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from distill.data.synthetic.faces.accessories import _draw_accessories, _draw_neckwear
from distill.data.synthetic.faces.attributes import _NUM_ATTR, ATTRIBUTE_NAMES
from distill.data.synthetic.faces.canvas import _Canvas
from distill.data.synthetic.faces.draws import _NUM_IMAGE_DRAWS, _Draws, _image_rng, _Nuisance
from distill.data.synthetic.faces.features import _draw_brows, _draw_eyes, _draw_mouth, _draw_nose
from distill.data.synthetic.faces.head import (_draw_body, _draw_face, _draw_facial_hair, _draw_skin_details,
                                               _draw_top_hair)
from distill.data.synthetic.faces.identity import IdentityParams, _image_attributes
from distill.data.synthetic.faces.layout import _layout
from distill.data.synthetic.faces.scene import _draw_background, _draw_occluder
from distill.data.synthetic.faces.shading import _finish

__all__ = ["render_faces", "sample_attributes"]

# Below this many images per process, starting the processes costs more than it saves.
_MIN_IMAGES_PER_WORKER = 250


def _render_one(idn: IdentityParams, a: np.ndarray, d: _Draws, noise_rng: np.random.Generator,
                size: int) -> np.ndarray:
    """One (size, size, 3) uint8 face: the scene, then the person back to front, then light, blur and noise."""
    on = {name: bool(a[i]) for i, name in enumerate(ATTRIBUTE_NAMES)}
    n = _Nuisance.draw(d)
    canvas = _Canvas(size, n.scale, n.angle, n.tx, n.ty)
    _draw_background(canvas, n.background, n.clutter)
    layout = _layout(idn, on, n.yaw, n.hair_jitter)
    _draw_body(canvas, idn, layout, n.clothes)
    _draw_neckwear(canvas, layout, n.tie_colour, n.jewel)
    _draw_face(canvas, layout)
    _draw_skin_details(canvas, idn, layout)
    _draw_facial_hair(canvas, layout)
    _draw_eyes(canvas, idn, layout, n.gaze, n.makeup_shade)
    _draw_brows(canvas, idn, layout)
    _draw_nose(canvas, layout)
    _draw_mouth(canvas, idn, layout, n.lipstick_shade)
    _draw_top_hair(canvas, idn, layout)
    _draw_accessories(canvas, idn, layout, n)
    _draw_occluder(canvas, n.occluder)
    return _finish(canvas, on["Blurry"], n, noise_rng, size)


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


def _check_attributes(attributes: np.ndarray | None, count: int) -> np.ndarray | None:
    if attributes is not None:
        attributes = np.asarray(attributes)
        if attributes.shape != (count, _NUM_ATTR):
            raise ValueError(f"attributes must have shape ({count}, {_NUM_ATTR}), got {attributes.shape}")
        if not np.isin(attributes, (0, 1)).all():
            raise ValueError("attributes must hold only 0 and 1")
    return attributes


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
    attributes = _check_attributes(attributes, len(index))
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
