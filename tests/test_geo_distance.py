"""great_circle_km at the places where naive formulas break: the poles, the dateline, antipodes, metres apart.

tests/test_metrics.py covers antipodes on the equator and through the poles, Paris-London and one degree of
latitude; these are the remaining edge cases, each against a value computed by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from distill.metrics import EARTH_RADIUS_KM, GeolocationAccuracy, great_circle_km

KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180.0


def test_a_pole_is_one_point_whatever_its_longitude():
    assert great_circle_km(90.0, 0.0, 90.0, 137.0).item() == pytest.approx(0.0, abs=1e-9)
    assert great_circle_km(-90.0, -180.0, -90.0, 45.0).item() == pytest.approx(0.0, abs=1e-9)
    # from the north pole, every point of latitude 80 is 10 degrees of arc away
    for lon in (-170.0, 0.0, 99.0):
        assert great_circle_km(90.0, 12.0, 80.0, lon).item() == pytest.approx(10 * KM_PER_DEGREE, rel=1e-12)


def test_across_the_dateline_is_short():
    # 179.9 E and 179.9 W are 0.2 degrees of longitude apart, not 359.8
    assert great_circle_km(0.0, 179.9, 0.0, -179.9).item() == pytest.approx(0.2 * KM_PER_DEGREE, rel=1e-9)
    # at latitude 60 a degree of longitude spans ~cos(60) = half the arc (exactly: 2 asin(cos(lat) sin(dlon / 2)))
    expected = EARTH_RADIUS_KM * 2 * math.asin(math.cos(math.radians(60)) * math.sin(math.radians(0.5)))
    assert great_circle_km(60.0, 179.5, 60.0, -179.5).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.5 * KM_PER_DEGREE, rel=1e-4)
    # -180 and 180 are the same meridian
    assert great_circle_km(33.0, -180.0, 33.0, 180.0).item() == pytest.approx(0.0, abs=1e-9)


def test_antipodes_across_the_dateline_and_near_the_poles():
    half = math.pi * EARTH_RADIUS_KM
    assert great_circle_km(-33.9, 151.2, 33.9, -28.8).item() == pytest.approx(half, rel=1e-9)
    assert great_circle_km(89.0, 170.0, -89.0, -10.0).item() == pytest.approx(half, rel=1e-9)


def test_points_one_metre_apart():
    one_metre_of_latitude = 0.001 / KM_PER_DEGREE  # degrees
    d = great_circle_km(45.0, 7.0, 45.0 + one_metre_of_latitude, 7.0)
    assert d.dtype == torch.float64
    assert d.item() == pytest.approx(0.001, rel=1e-6)
    # one metre east at latitude 45: a longitude step of 1 m / (km per degree * cos 45)
    east = one_metre_of_latitude / math.cos(math.radians(45.0))
    assert great_circle_km(45.0, 7.0, 45.0, 7.0 + east).item() == pytest.approx(0.001, rel=1e-6)
    # float64 keeps metres: a float32 latitude of 45 cannot even represent a 1 m step (its spacing is ~0.4 m)
    lat = torch.tensor([45.0], dtype=torch.float64)
    assert great_circle_km(lat, 7.0, lat + one_metre_of_latitude, 7.0).item() == pytest.approx(0.001, rel=1e-6)


def test_street_scale_is_inclusive_at_one_kilometre_and_excludes_just_beyond():
    km = 1.0 / KM_PER_DEGREE
    metric = GeolocationAccuracy(scales_km={"street": 1})
    true = torch.zeros(2, dtype=torch.float64)
    metric.update(torch.tensor([0.999 * km, 1.001 * km], dtype=torch.float64), true, true, true)
    assert metric.compute()["street"] == 0.5
