"""Distances on the earth: the mean earth radius and great-circle (haversine) distances between places in degrees."""

from __future__ import annotations

import torch

__all__ = ["EARTH_RADIUS_KM", "great_circle_km"]

EARTH_RADIUS_KM = 6371.0088  # mean earth radius (IUGG), the usual sphere for great-circle distances


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
