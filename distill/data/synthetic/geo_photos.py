"""Synthetic geotagged photos (the planet recipe's default data): where a photo was taken shows in what it shows.

Places: most photos cluster around real cities (a built-in table of city coordinates weighted by how much they
are photographed), some lie in the countryside around them, a few anywhere on the globe. Content: a landscape
whose every part is a deterministic function of the place, at several scales, plus noise:
- climate (latitude, continental-scale fields): the colours of ground and sky;
- country scale (~2000 km): the orientation and strength of the terrain texture, the architecture (building
  colours, roof shape and colour);
- region scale (~500 km): mountains on the horizon, the texture's frequency, the windows' spacing;
- local scale (~70 km): the windows' colour; and near a city, its own landmark (a shape in two colours).
Smooth fields are random Fourier features of the point's 3-D unit vector, so nothing jumps at the dateline or
the poles. The world is the same for every seed (like the real one); the seed draws the photos and the noise.
Image i of a split depends only on (seed, split, the split's places).
"""

from __future__ import annotations

import numpy as np

from distill.core.geodesy import EARTH_RADIUS_KM

__all__ = ["CITIES", "place_features", "render_places", "sample_places"]

# (name, latitude, longitude, relative share of photos): a rough picture of where photos are taken.
CITIES: tuple[tuple[str, float, float, float], ...] = (
    ("London", 51.507, -0.128, 10), ("Paris", 48.857, 2.352, 10), ("Rome", 41.903, 12.496, 7),
    ("Barcelona", 41.385, 2.173, 6), ("Madrid", 40.417, -3.704, 4), ("Berlin", 52.520, 13.405, 5),
    ("Amsterdam", 52.370, 4.895, 5), ("Prague", 50.076, 14.438, 4), ("Vienna", 48.208, 16.373, 4),
    ("Venice", 45.441, 12.316, 4), ("Istanbul", 41.008, 28.978, 5), ("Athens", 37.984, 23.728, 3),
    ("Lisbon", 38.722, -9.139, 3), ("Dublin", 53.350, -6.260, 3), ("Edinburgh", 55.953, -3.188, 3),
    ("Munich", 48.135, 11.582, 3), ("Zurich", 47.377, 8.541, 2), ("Copenhagen", 55.676, 12.568, 2),
    ("Stockholm", 59.329, 18.069, 3), ("Budapest", 47.498, 19.040, 2), ("Warsaw", 52.230, 21.012, 2),
    ("Moscow", 55.756, 37.617, 4), ("Reykjavik", 64.147, -21.942, 1), ("Tromso", 69.649, 18.956, 1),
    ("New York", 40.713, -74.006, 10), ("San Francisco", 37.775, -122.419, 7), ("Los Angeles", 34.052, -118.244, 6),
    ("Chicago", 41.878, -87.630, 4), ("Seattle", 47.606, -122.332, 3), ("Washington", 38.907, -77.037, 4),
    ("Boston", 42.360, -71.059, 3), ("Las Vegas", 36.170, -115.140, 3), ("Miami", 25.762, -80.192, 3),
    ("New Orleans", 29.951, -90.072, 2), ("Denver", 39.739, -104.990, 2), ("Austin", 30.267, -97.743, 2),
    ("Toronto", 43.653, -79.383, 3), ("Vancouver", 49.283, -123.121, 3), ("Montreal", 45.502, -73.567, 2),
    ("Anchorage", 61.218, -149.900, 1), ("Honolulu", 21.307, -157.858, 2), ("Mexico City", 19.433, -99.133, 3),
    ("Cancun", 21.161, -86.851, 1), ("Havana", 23.113, -82.366, 1), ("Bogota", 4.711, -74.072, 1),
    ("Quito", -0.180, -78.468, 1), ("Lima", -12.046, -77.043, 2), ("Cusco", -13.532, -71.967, 2),
    ("Rio de Janeiro", -22.907, -43.173, 3), ("Sao Paulo", -23.551, -46.633, 2), ("Buenos Aires", -34.604, -58.382, 3),
    ("Santiago", -33.449, -70.669, 2), ("Ushuaia", -54.801, -68.303, 1), ("Cairo", 30.044, 31.236, 3),
    ("Marrakesh", 31.629, -7.981, 2), ("Tunis", 36.806, 10.182, 1), ("Dakar", 14.716, -17.467, 1),
    ("Lagos", 6.524, 3.379, 1), ("Nairobi", -1.292, 36.822, 2), ("Zanzibar", -6.165, 39.199, 1),
    ("Johannesburg", -26.204, 28.047, 1), ("Cape Town", -33.925, 18.424, 3), ("Jerusalem", 31.769, 35.216, 2),
    ("Dubai", 25.205, 55.271, 3), ("Tehran", 35.689, 51.389, 1), ("Mumbai", 19.076, 72.878, 3),
    ("Delhi", 28.614, 77.209, 3), ("Agra", 27.177, 78.008, 1), ("Kathmandu", 27.717, 85.324, 1),
    ("Bangkok", 13.756, 100.502, 5), ("Hanoi", 21.028, 105.854, 2), ("Ho Chi Minh City", 10.823, 106.630, 2),
    ("Kuala Lumpur", 3.139, 101.687, 2), ("Singapore", 1.352, 103.820, 4), ("Denpasar", -8.650, 115.217, 2),
    ("Manila", 14.600, 120.984, 1), ("Hong Kong", 22.320, 114.169, 5), ("Taipei", 25.033, 121.565, 2),
    ("Shanghai", 31.230, 121.474, 4), ("Beijing", 39.904, 116.407, 4), ("Ulaanbaatar", 47.886, 106.906, 1),
    ("Seoul", 37.567, 126.978, 4), ("Tokyo", 35.676, 139.650, 9), ("Kyoto", 35.012, 135.768, 4),
    ("Sydney", -33.869, 151.209, 5), ("Melbourne", -37.814, 144.963, 3), ("Perth", -31.951, 115.861, 1),
    ("Cairns", -16.919, 145.771, 1), ("Auckland", -36.848, 174.763, 2), ("Queenstown", -45.031, 168.663, 1),
)
_CITY_LATLON = np.array([(lat, lon) for _, lat, lon, _ in CITIES], dtype=np.float64)
_CITY_SHARE = np.array([share for *_, share in CITIES], dtype=np.float64) / sum(share for *_, share in CITIES)
_CITY_SPREAD_KM = 4.0 + 3.0 * np.sqrt(np.array([share for *_, share in CITIES], dtype=np.float64))

_KINDS = (0.7, 0.2, 0.1)           # shares of photos in a city, in the countryside around one, anywhere
_COUNTRYSIDE_KM = 350.0            # spread of countryside photos around their city
_WORLD_SEED = 20170417             # the world's fields (fixed: the same earth for every data seed)
# Continental, country, region and local fields: (count, |frequency| range in radians per radian of arc).
_SCALES = {"continent": (8, 2.5, 5.0), "country": (8, 12.0, 24.0), "region": (6, 50.0, 100.0),
           "local": (4, 400.0, 800.0)}
# Ground colour along |latitude| / 90: rain forest, savanna, desert, temperate, boreal, tundra, ice.
_CLIMATE_AT = np.array([0.0, 0.15, 0.3, 0.5, 0.68, 0.8, 1.0])
_CLIMATE_RGB = np.array([(34, 110, 40), (150, 150, 70), (205, 175, 115), (90, 145, 65), (45, 85, 55),
                         (150, 150, 130), (232, 236, 240)], dtype=np.float32)
_DESERT_RGB = np.array([214, 182, 120], dtype=np.float32)
_LANDMARK_RGB = np.array([(220, 40, 40), (250, 200, 30), (40, 90, 220), (240, 240, 240), (20, 20, 20),
                          (200, 60, 200), (30, 200, 200), (250, 130, 20)], dtype=np.float32)
_CHUNK = 256


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def _world_fields() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(_WORLD_SEED)
    fields = {}
    for name, (count, low, high) in _SCALES.items():
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        fields[name] = (directions * rng.uniform(low, high, (count, 1)), rng.uniform(0, 2 * np.pi, count))
    return fields


_FIELDS = _world_fields()


def place_features(lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """The smooth fields of the world at each place: {scale: (N, count) values in [-1, 1]}."""
    points = _unit_vectors(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64))
    return {name: np.sin(points @ freq.T + phase).astype(np.float32) for name, (freq, phase) in _FIELDS.items()}


def _destination(lat: np.ndarray, lon: np.ndarray, distance_km: np.ndarray, bearing: np.ndarray):
    """The point ``distance_km`` from (lat, lon) along ``bearing`` (radians) on the sphere, in degrees."""
    phi, lam, delta = np.radians(lat), np.radians(lon), distance_km / EARTH_RADIUS_KM
    phi2 = np.arcsin(np.clip(np.sin(phi) * np.cos(delta) + np.cos(phi) * np.sin(delta) * np.cos(bearing), -1, 1))
    lam2 = lam + np.arctan2(np.sin(bearing) * np.sin(delta) * np.cos(phi), np.cos(delta) - np.sin(phi) * np.sin(phi2))
    return np.degrees(phi2), (np.degrees(lam2) + 180.0) % 360.0 - 180.0


def sample_places(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) degrees (lat, lon): photos in cities, in the countryside around them, and anywhere."""
    kind = rng.choice(3, size=count, p=_KINDS)
    city = rng.choice(len(CITIES), size=count, p=_CITY_SHARE)
    spread = np.where(kind == 0, _CITY_SPREAD_KM[city], _COUNTRYSIDE_KM)
    lat, lon = _destination(_CITY_LATLON[city, 0], _CITY_LATLON[city, 1], np.abs(rng.normal(0, spread)),
                            rng.uniform(0, 2 * np.pi, count))
    anywhere = kind == 2
    lat[anywhere] = np.degrees(np.arcsin(rng.uniform(-0.95, 0.95, anywhere.sum())))
    lon[anywhere] = rng.uniform(-180.0, 180.0, anywhere.sum())
    return np.stack([lat, lon], axis=1)


def _nearest_city(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and great-circle distance (km) to the nearest city of the table."""
    cosine = _unit_vectors(lat, lon) @ _unit_vectors(_CITY_LATLON[:, 0], _CITY_LATLON[:, 1]).T
    nearest = cosine.argmax(axis=1)
    distance = EARTH_RADIUS_KM * np.arccos(np.clip(cosine[np.arange(len(lat)), nearest], -1.0, 1.0))
    return nearest, distance


def _col(values: np.ndarray) -> np.ndarray:
    """(N,) per-image values -> (N, 1, 1) to broadcast over (N, H, W) pixel grids."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _landscape(f: dict, lat: np.ndarray, x: np.ndarray, y: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ground, sky, horizon and mountains of each place: (image (n, H, W, 3) float, horizon (n,))."""
    n = len(lat)
    cont, country, region = f["continent"], f["country"], f["region"]
    # Climate: ground colour from |latitude| (plus a continental aridity field), sky from latitude and haze.
    climate = np.abs(lat) / 90.0
    ground = np.stack([np.interp(climate, _CLIMATE_AT, _CLIMATE_RGB[:, c]) for c in range(3)], axis=1)
    arid = np.clip(0.7 * cont[:, 0] + 0.1, 0.0, 0.7) * (1.0 - climate)
    ground = ground * (1 - arid[:, None]) + _DESERT_RGB * arid[:, None] + 22.0 * cont[:, 1:4]
    sky = np.array([110, 165, 225], dtype=np.float32) + 25.0 * cont[:, 4:7] + 40.0 * (climate[:, None] - 0.4)

    # Horizon with mountains (region scale), terrain stripes (orientation from the country, frequency from the region).
    horizon = 0.45 + 0.08 * country[:, 0] + rng.normal(0, 0.03, n)
    height = 0.02 + 0.16 * np.clip(region[:, 0], 0, 1)
    ridge_freq = 2.0 + 1.5 * region[:, 1]
    phase = rng.uniform(0, 2 * np.pi, (n, 2))
    ridge = _col(height) * (0.6 * np.sin(2 * np.pi * _col(ridge_freq) * x + _col(phase[:, 0]))
                            + 0.4 * np.sin(4.7 * np.pi * _col(ridge_freq) * x + _col(phase[:, 1])) + 1.0) / 2
    skyline = _col(horizon) - ridge                                  # (n, 1, W): the top of the land per column
    angle = np.pi * (country[:, 1] + 1) / 2
    stripes = np.sin(2 * np.pi * _col(6.0 + 3.5 * region[:, 2]) * (x * _col(np.cos(angle)) + y * _col(np.sin(angle)))
                     + _col(rng.uniform(0, 2 * np.pi, n)))
    texture = _col(16.0 + 10.0 * country[:, 2]) * stripes
    land = y >= skyline
    mountain = land & (y < _col(horizon))
    image = np.where(land[..., None], ground[:, None, None, :] + texture[..., None], sky[:, None, None, :])
    snow = mountain & (y < skyline + 0.04) & _col(climate + height > 0.55).astype(bool)
    image = np.where(mountain[..., None], image * 0.75, image)
    image = np.where(snow[..., None], 235.0, image)
    return image, horizon


def _buildings(image: np.ndarray, f: dict, city_km: np.ndarray, horizon: np.ndarray, x: np.ndarray, y: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """Up to four buildings, more likely near a city: colours and roofs from the country, windows from the region."""
    n = len(city_km)
    country, region, local = f["country"], f["region"], f["local"]
    # Buildings near cities: colours and roofs from the country, window spacing from the region, window colour local.
    urban = np.exp(-city_km / 40.0)
    wall_rgb = 150.0 + 60.0 * country[:, 3:6]
    roof_rgb = np.where(country[:, 7:8] > 0, np.array([170, 60, 40], dtype=np.float32), 80.0)
    window_rgb = 130.0 + 110.0 * local[:, 0:3]
    window_period = (0.06 + 0.03 * region[:, 3]).astype(np.float32)
    pitched = country[:, 6] > 0
    for slot in range(4):
        present = rng.random(n) < urban * (1.0 - 0.2 * slot)
        left = rng.uniform(0.0, 0.85, n)
        width = rng.uniform(0.1, 0.18, n)
        top = horizon - rng.uniform(0.12, 0.3, n) * (1 + urban)
        inside_x = (x >= _col(left)) & (x <= _col(left + width))
        wall = _col(present).astype(bool) & inside_x & (y >= _col(top)) & (y <= _col(horizon + 0.05))
        rel = np.abs(x - _col(left + width / 2)) / _col(width / 2)
        roof_h = np.where(pitched, width * 0.7, 0.03)
        roof = (_col(present).astype(bool) & (y < _col(top)) & (y >= _col(top - roof_h))
                & (rel <= np.where(_col(pitched).astype(bool), (y - _col(top - roof_h)) / _col(roof_h), 1.0)))
        windows = wall & (np.sin(np.pi * (x - _col(left)) / _col(window_period)) > 0.3) & (
            np.sin(np.pi * (y - _col(top)) / _col(window_period)) > 0.3)
        image = np.where(wall[..., None], wall_rgb[:, None, None, :], image)
        image = np.where(roof[..., None], roof_rgb[:, None, None, :], image)
        image = np.where(windows[..., None], window_rgb[:, None, None, :], image)
    return image


def _landmark(image: np.ndarray, city: np.ndarray, city_km: np.ndarray, x: np.ndarray, y: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    n = len(city)
    # The nearest city's landmark, strong in the city and fading over its surroundings.
    strength = np.exp(-((city_km / (3.0 * _CITY_SPREAD_KM[city])) ** 2)) * rng.uniform(0.6, 1.0, n)
    cx, cy = rng.uniform(0.2, 0.8, n), rng.uniform(0.15, 0.35, n)
    radius = rng.uniform(0.1, 0.15, n)
    dx, dy = (x - _col(cx)) / _col(radius), (y - _col(cy)) / _col(radius)
    shapes = np.stack(np.broadcast_arrays(
        dx ** 2 + dy ** 2 <= 1, np.abs(np.sqrt(dx ** 2 + dy ** 2) - 0.75) <= 0.25,
        (dy <= 1) & (np.abs(dx) <= (dy + 1) / 2), (np.abs(dx) <= 0.8) & (np.abs(dy) <= 0.8),
        ((np.abs(dx) <= 0.3) | (np.abs(dy) <= 0.3)) & (np.abs(dx) <= 1) & (np.abs(dy) <= 1),
        np.abs(dx) + np.abs(dy) <= 1), axis=0)
    shape = shapes[city % 6, np.arange(n)]
    upper = dy < 0
    first, second = _LANDMARK_RGB[(city // 6) % 8], _LANDMARK_RGB[(city // 48 + city) % 8]
    mark = np.where(upper[..., None], first[:, None, None, :], second[:, None, None, :])
    alpha = (_col(strength) * shape)[..., None]
    image = image * (1 - alpha) + mark * alpha
    return image


def _nuisance(image: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(image)
    # Nuisance: exposure, colour cast, an occluding blob now and then, sensor noise.
    image = image * _col(rng.uniform(0.8, 1.2, n))[..., None] + rng.normal(0, 8, (n, 1, 1, 3))
    blob_on = rng.random(n) < 0.3
    blob_x, blob_y, blob_r2 = rng.uniform(0, 1, n), rng.uniform(0.5, 1, n), rng.uniform(0.01, 0.03, n)
    blob = blob_on[:, None, None] & ((x - _col(blob_x)) ** 2 + (y - _col(blob_y)) ** 2 <= _col(blob_r2))
    image = np.where(blob[..., None], 40.0, image)
    image = image + rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _render_chunk(lat: np.ndarray, lon: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    f = place_features(lat, lon)
    city, city_km = _nearest_city(lat, lon)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = grid[None, None, :], grid[None, :, None]
    image, horizon = _landscape(f, lat, x, y, rng)
    image = _buildings(image, f, city_km, horizon, x, y, rng)
    image = _landmark(image, city, city_km, x, y, rng)
    return _nuisance(image, x, y, rng)


def render_places(latlon: np.ndarray, size: int, seed: int | list[int]) -> np.ndarray:
    """One (size, size, 3) uint8 photo of each place; deterministic in (seed, places, size)."""
    latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
    if int(size) < 16:
        raise ValueError(f"image size must be >= 16 pixels to show a place's details, got {size}")
    seed = [int(s) for s in np.atleast_1d(seed)]
    images = np.empty((len(latlon), int(size), int(size), 3), dtype=np.uint8)
    for chunk, start in enumerate(range(0, len(latlon), _CHUNK)):
        part = latlon[start:start + _CHUNK]
        rng = np.random.default_rng([*seed, chunk])
        images[start:start + _CHUNK] = _render_chunk(part[:, 0], part[:, 1], int(size), rng)
    return images
