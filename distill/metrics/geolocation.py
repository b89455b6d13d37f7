"""Geolocation accuracy: the share of photos placed within 1/25/200/750/2500 km of the truth.

These are PlaNet's street / city / region / country / continent scales; distances are great-circle
distances on a sphere of the mean earth radius.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from distill.core.geodesy import EARTH_RADIUS_KM, great_circle_km

__all__ = ["EARTH_RADIUS_KM", "GEO_SCALES_KM", "great_circle_km", "GeolocationAccuracy"]

GEO_SCALES_KM = {"street": 1, "city": 25, "region": 200, "country": 750, "continent": 2500}


class GeolocationAccuracy(Metric):
    """Share of predictions within each scale's distance of the truth, plus the median error.

    ``update(pred_lat, pred_lon, true_lat, true_lon)`` takes (N,) degrees; ``compute()`` returns
    plain floats: one fraction in [0, 1] per scale name and ``median_km``. Counts are summed and
    distances concatenated across processes, so the result is the same under DDP.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, scales_km: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        scales = dict(GEO_SCALES_KM if scales_km is None else scales_km)
        if not scales:
            raise ValueError("scales_km: expected at least one {name: km} entry")
        for name, km in scales.items():
            if not isinstance(name, str) or name == "median_km":
                raise ValueError(
                    f"scales_km: scale names must be strings other than 'median_km', got {name!r}"
                )
            if not (isinstance(km, (int, float)) and math.isfinite(km) and km > 0):
                raise ValueError(
                    f"scales_km[{name!r}]: expected a positive distance in km, got {km!r}"
                )
        self.scale_names = list(scales)
        self.scales_km = [float(scales[n]) for n in self.scale_names]
        self.add_state(
            "hits", default=torch.zeros(len(scales), dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("distances_km", default=[], dist_reduce_fx="cat")

    def update(self, pred_lat, pred_lon, true_lat, true_lon) -> None:
        shapes = [tuple(torch.as_tensor(x).shape) for x in (pred_lat, pred_lon, true_lat, true_lon)]
        if len(set(shapes)) != 1 or len(shapes[0]) != 1:
            raise ValueError(
                "pred_lat, pred_lon, true_lat, true_lon: expected four (N,) tensors of one shape, "
                f"got {shapes}"
            )
        # float64 whatever the inputs' dtype, so the reported median is not rounded to float32.
        coords = [
            torch.as_tensor(x).to(torch.float64) for x in (pred_lat, pred_lon, true_lat, true_lon)
        ]
        dist = great_circle_km(*coords).to(self.hits.device)
        scales = torch.tensor(self.scales_km, dtype=torch.float64, device=dist.device)
        self.hits += (dist[:, None] <= scales[None, :]).sum(dim=0)
        self.total += dist.numel()
        self.distances_km.append(dist)

    def compute(self) -> dict:
        total = int(self.total)
        if total == 0:
            raise ValueError("GeolocationAccuracy.compute(): no predictions were given to update()")
        result = {name: float(self.hits[i]) / total for i, name in enumerate(self.scale_names)}
        dist = self.distances_km
        if isinstance(dist, list):
            dist = torch.cat(dist)
        ordered = torch.sort(dist.flatten()).values
        mid = ordered.numel() // 2
        median = ordered[mid] if ordered.numel() % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        result["median_km"] = float(median)
        return result
