"""World maps of a geolocation run's results (matplotlib only, equirectangular: longitude across, latitude up).

``plot_partition``: the training photos' density with the S2 cells (edges drawn as the great-circle arcs they
are) and their centres. ``plot_errors``: lines from true to predicted places of the last model evaluated, and
the share of photos located within each distance for every model evaluated, with PlaNet's scales marked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distill.core.io import atomic_write
from distill.data.geo_cells import S2Partition
from distill.metrics.geolocation import EARTH_RADIUS_KM, GEO_SCALES_KM, great_circle_km

__all__ = ["great_circle_path", "plot_errors", "plot_partition"]

_DPI = 80


def _unit(latlon: np.ndarray) -> np.ndarray:
    phi, lam = np.radians(latlon[..., 0]), np.radians(latlon[..., 1])
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def great_circle_path(start: Sequence[float], end: Sequence[float], points: int = 16) -> np.ndarray:
    """(M, 2) lat/lon along the shorter great-circle arc; NaN rows where it crosses the dateline (so a plotted
    line breaks there instead of crossing the whole map)."""
    a, b = _unit(np.asarray(start, dtype=np.float64)), _unit(np.asarray(end, dtype=np.float64))
    t = np.linspace(0.0, 1.0, points)[:, None]
    path = a * (1 - t) + b * t
    norm = np.linalg.norm(path, axis=1, keepdims=True)
    path = path / np.where(norm > 0, norm, 1.0)  # antipodal points: any arc is shortest; this one passes the centre
    lat = np.degrees(np.arcsin(np.clip(path[:, 2], -1, 1)))
    lon = np.degrees(np.arctan2(path[:, 1], path[:, 0]))
    out = np.stack([lat, lon], axis=1)
    jumps = np.nonzero(np.abs(np.diff(lon)) > 180.0)[0]
    return np.insert(out, jumps + 1, np.nan, axis=0) if jumps.size else out


def _world_axes(axis: Any) -> None:
    axis.set_xlim(-180, 180)
    axis.set_ylim(-90, 90)
    axis.set_aspect("equal")
    axis.set_xticks(range(-180, 181, 60))
    axis.set_yticks(range(-90, 91, 30))
    axis.set_xlabel("longitude (°)")
    axis.set_ylabel("latitude (°)")
    axis.grid(True, color="0.85", linewidth=0.5)


def _save(figure: Any, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=_DPI, bbox_inches="tight"))
    finally:
        plt.close(figure)


def plot_partition(partition: S2Partition, latlon: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """Photo density (log-scaled 2-D histogram) of ``latlon`` (N, 2), the cells' edges and centres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
    figure, axis = plt.subplots(figsize=(10, 5.4))
    counts, xedges, yedges = np.histogram2d(latlon[:, 1], latlon[:, 0], bins=(180, 90), range=((-180, 180), (-90, 90)))
    if counts.max() > 0:
        image = axis.imshow(np.ma.masked_equal(counts.T, 0), origin="lower", extent=(-180, 180, -90, 90),
                            cmap="viridis", norm=LogNorm(vmin=1, vmax=counts.max()), interpolation="nearest")
        figure.colorbar(image, ax=axis, shrink=0.7, label="training photos per 2°×2°")
    for index in range(partition.num_classes):
        corners = partition.cell_corners(index)
        edge = np.concatenate([great_circle_path(corners[k], corners[(k + 1) % 4], 12) for k in range(4)])
        axis.plot(edge[:, 1], edge[:, 0], color="tab:red", linewidth=0.5, alpha=0.8)
    axis.scatter(partition.centres[:, 1], partition.centres[:, 0], s=4, color="tab:red", zorder=3,
                 label="cell centres (predicted places)")
    _world_axes(axis)
    axis.legend(loc="lower left", fontsize=8)
    levels = f"levels {partition.levels.min()}-{partition.levels.max()}"
    axis.set_title(title or f"{partition.num_classes} S2 cells ({levels}; t1={partition.t1}, t2={partition.t2}) "
                            f"over {len(latlon)} training photos")
    return _save(figure, path)


def plot_errors(evaluations: list[dict[str, Any]], path: str | os.PathLike, max_lines: int = 300,
                seed: int = 0) -> Path:
    """Errors of evaluated models: each a dict {"model", "predicted" (N, 2), "true" (N, 2)}.

    Top: up to ``max_lines`` lines from truth to prediction for the last model. Bottom: the share of photos
    within d km of the truth against d (log scale) for every model, with the street..continent scales marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not evaluations:
        raise ValueError("plot_errors: no evaluations to plot")
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 9), gridspec_kw={"height_ratios": [1.3, 1]})
    last = evaluations[-1]
    true, predicted = np.asarray(last["true"]), np.asarray(last["predicted"])
    errors = _distances_km(true, predicted)
    chosen = np.random.default_rng(seed).permutation(len(true))[:max_lines]
    colours = {scale: plt.cm.plasma(i / (len(GEO_SCALES_KM))) for i, scale in enumerate(GEO_SCALES_KM)}
    for i in chosen:
        scale = next((name for name, km in GEO_SCALES_KM.items() if errors[i] <= km), None)
        colour = colours[scale] if scale else "0.6"
        line = great_circle_path(true[i], predicted[i], 16)
        top.plot(line[:, 1], line[:, 0], color=colour, linewidth=0.6, alpha=0.7)
    top.scatter(true[chosen, 1], true[chosen, 0], s=3, color="black", zorder=3, label="true place")
    for name, km in GEO_SCALES_KM.items():
        top.plot([], [], color=colours[name], label=f"within {km} km ({name})")
    _world_axes(top)
    top.legend(loc="lower left", fontsize=7, ncol=2)
    top.set_title(f"{last['model']}: true place -> predicted cell centre ({len(chosen)} of {len(true)} test photos)")

    grid = np.logspace(-1, np.log10(np.pi * EARTH_RADIUS_KM), 200)
    for evaluation in evaluations:
        distance = np.sort(_distances_km(np.asarray(evaluation["true"]), np.asarray(evaluation["predicted"])))
        share = np.searchsorted(distance, grid, side="right") / max(1, len(distance))
        bottom.plot(grid, 100 * share, label=f"{evaluation['model']} (median {np.median(distance):.0f} km)")
    for name, km in GEO_SCALES_KM.items():
        bottom.axvline(km, color="0.7", linestyle="--", linewidth=0.8)
        bottom.text(km, 101, f"{name}\n{km} km", ha="center", va="bottom", fontsize=7)
    bottom.set_xscale("log")
    bottom.set_ylim(0, 100)
    bottom.set_xlabel("distance from the true place (km)")
    bottom.set_ylabel("test photos within that distance (%)")
    bottom.grid(True, color="0.9")
    bottom.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def _distances_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return great_circle_km(a[:, 0], a[:, 1], b[:, 0], b[:, 1]).numpy()
