"""Geolocation accuracy: the share of photos placed within 1/25/200/750/2500 km of the truth.

These are PlaNet's street / city / region / country / continent scales; distances are great-circle
distances on a sphere of the mean earth radius.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

__all__ = ["EARTH_RADIUS_KM", "GEO_SCALES_KM", "great_circle_km", "GeolocationAccuracy"]

EARTH_RADIUS_KM = 6371.0088  # mean earth radius (IUGG), the usual sphere for great-circle distances
GEO_SCALES_KM = {"street": 1, "city": 25, "region": 200, "country": 750, "continent": 2500}


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(x, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name}: expected a number, array or tensor of degrees") from exc
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected real-valued degrees, got dtype {t.dtype}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return t


def _check_latitude(t: torch.Tensor, name: str) -> None:
    if t.numel() and (t.abs() > 90.0 + 1e-9).any():
        worst = t.abs().max().item()
        raise ValueError(
            f"{name}: latitudes must lie in [-90, 90] degrees, got |lat| up to {worst}"
        )


def great_circle_km(lat1, lon1, lat2, lon2) -> torch.Tensor:
    """Haversine distance in km between points given in degrees (broadcast like tensors).

    Computed in float64 (float32 loses metres at street scale) and returned in the inputs'
    floating dtype, or float64 when none of them is a floating tensor.
    """
    args = {"lat1": lat1, "lon1": lon1, "lat2": lat2, "lon2": lon2}
    tensors = {name: _as_tensor(value, name) for name, value in args.items()}
    _check_latitude(tensors["lat1"], "lat1")
    _check_latitude(tensors["lat2"], "lat2")
    float_dtypes = [
        value.dtype
        for value in args.values()
        if isinstance(value, torch.Tensor) and value.is_floating_point()
    ]
    out_dtype = torch.float64
    if float_dtypes:
        out_dtype = float_dtypes[0]
        for dtype in float_dtypes[1:]:
            out_dtype = torch.promote_types(out_dtype, dtype)
    device = next(
        (t.device for t in tensors.values() if t.device.type != "cpu"), torch.device("cpu")
    )
    phi1, lam1, phi2, lam2 = (
        torch.deg2rad(tensors[name].to(device=device, dtype=torch.float64))
        for name in ("lat1", "lon1", "lat2", "lon2")
    )
    a = (
        torch.sin((phi2 - phi1) / 2) ** 2
        + torch.cos(phi1) * torch.cos(phi2) * torch.sin((lam2 - lam1) / 2) ** 2
    )
    central_angle = 2 * torch.asin(torch.sqrt(a.clamp(0.0, 1.0)))
    return (EARTH_RADIUS_KM * central_angle).to(out_dtype)


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
