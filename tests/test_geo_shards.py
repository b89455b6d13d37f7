"""Geotagged photos packed into LitData shards (``python -m distill.data.pack data=geo_csv ...``): the shards hold
every readable photo and its place, a run from them builds its partition again and serves the batches a run from
the files serves, with the same key; another partition setting gives what the files give with it."""

from __future__ import annotations

import numpy as np
import pytest
from batches import assert_same_batches, train_batches
from PIL import Image

from distill.data.modules.geo import GeoCSVDataModule
from distill.data.pack import pack
from distill.data.shards import ShardImages, read_pack

pytest.importorskip("litdata")

CITIES = ((48.85, 2.35, 5), (35.68, 139.69, 4), (-12.05, -77.04, 4), (64.13, -21.9, 1))  # lat, lon, photos
OPTIONS = dict(image_size=20, resolution=16, batch_size=4, eval_batch_size=5, t1=4, t2=2, seed=4)


def _photo(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (30 + seed % 5, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.fixture
def collection(tmp_path):
    """Four places; the last has one photo, fewer than data.t2=2, so its cell is not kept (no class)."""
    root = tmp_path / "geo"
    rows = ["path,lat,lon"]
    for city, (lat, lon, count) in enumerate(CITIES):
        for k in range(count):
            _photo(root / "images" / f"{city}_{k}.jpg", 10 * city + k)
            rows.append(f"images/{city}_{k}.jpg,{lat + 0.01 * k},{lon}")
    rows.append("images/missing.jpg,10.0,10.0")  # a row whose image is absent: skipped (strict=false)
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "test.csv").write_text("\n".join([rows[0], *rows[1:15:3]]) + "\n")
    return root


def _packed(root, tmp_path):
    out = tmp_path / "packed"
    pack(["data=geo_csv", f"data.root={root}", f"data.image_size={OPTIONS['image_size']}",
          f"data.t1={OPTIONS['t1']}", f"data.t2={OPTIONS['t2']}"], out, verbose=False)
    return out






def test_shards_of_geotagged_photos_serve_what_the_files_serve(collection, tmp_path):
    out = _packed(collection, tmp_path)
    meta, _ = read_pack(out)
    assert meta["kind"] == "GeoCSVDataModule" and meta["splits"] == {"train": 14, "test": 5}  # every readable photo
    assert meta["skipped"] == 1 and "missing.jpg" in meta["skipped_rows"][0]

    files = GeoCSVDataModule(root=collection, in_memory=False, **OPTIONS)
    streamed = GeoCSVDataModule(format="litdata", uri=str(out), in_memory=False, **OPTIONS)  # no root needed
    in_memory = GeoCSVDataModule(format="litdata", uri=str(out), in_memory=True, **OPTIONS)
    streamed.setup()
    train = streamed.split("train").images
    outside = files.summary()["outside_partition"]["train"]  # the lone photo's cell is not kept: left out
    assert isinstance(train, ShardImages) and outside >= 1 and len(train) == 14 - outside
    assert streamed.summary()["outside_partition"] == files.summary()["outside_partition"]
    expected = train_batches(files, 1)
    assert_same_batches(expected, train_batches(streamed, 1, workers=2))
    assert_same_batches(expected, train_batches(in_memory, 1))
    for name in ("train", "test"):
        np.testing.assert_array_equal(streamed.split(name).extras["latlon"], files.split(name).extras["latlon"])
        np.testing.assert_array_equal(streamed.split(name).targets, files.split(name).targets)
    np.testing.assert_array_equal(np.asarray(in_memory.split("test").images),
                                  np.stack([files.split("test").images[i] for i in range(5)]))
    assert streamed.fingerprint() == files.fingerprint() == in_memory.fingerprint()
    assert streamed.num_classes == files.num_classes == 3
    summary = streamed.summary()
    assert summary["format"] == "litdata" and summary["skipped"] == 1 and summary["in_memory"] is False


def test_another_partition_from_the_shards_is_the_one_the_files_give(collection, tmp_path):
    out = _packed(collection, tmp_path)
    coarse = {**OPTIONS, "t2": 1}  # now the lone photo's cell is kept too
    files = GeoCSVDataModule(root=collection, in_memory=False, **coarse)
    shards = GeoCSVDataModule(format="litdata", uri=str(out), in_memory=False, **coarse)
    fine = GeoCSVDataModule(format="litdata", uri=str(out), **OPTIONS)
    assert shards.num_classes == files.num_classes > fine.num_classes
    assert len(shards.split("train")) == 14 - files.summary()["outside_partition"]["train"] > len(fine.split("train"))
    assert_same_batches(train_batches(files, 1), train_batches(shards, 1))
    assert shards.fingerprint() == files.fingerprint()
    assert shards.fingerprint() != fine.fingerprint()


def test_geo_shards_refuse_what_they_cannot_serve(collection, tmp_path):
    out = _packed(collection, tmp_path)
    with pytest.raises(ValueError, match="data.image_size=24.*20 px"):
        GeoCSVDataModule(format="litdata", uri=str(out), **{**OPTIONS, "image_size": 24}).setup()
    with pytest.raises(ValueError, match="needs data.uri"):
        GeoCSVDataModule(format="litdata", **OPTIONS)
    with pytest.raises(ValueError, match="data.format must be one of"):
        GeoCSVDataModule(root=collection, format="tar", **OPTIONS)
    (out / "extras.npz").unlink()
    with pytest.raises(ValueError, match=r"no places \(latlon\)"):
        GeoCSVDataModule(format="litdata", uri=str(out), **OPTIONS).setup()
