"""Shards read from a URL (``data.uri=s3://...``): the pack's small files are downloaded into the cache folder and
LitData downloads each chunk as it is read; the batches equal those from the files. ``local:<folder>`` goes through
LitData's downloading path without a network, as a bucket would."""

from __future__ import annotations

import numpy as np
import pytest
from batches import assert_same_batches, train_batches
from PIL import Image

from distill.data.modules.fine_grained import ImageFolderDataModule
from distill.data.pack import pack
from distill.data.shards import PACK_FILE, fetch_pack, is_remote

pytest.importorskip("litdata")

SIZES = dict(image_size=20, resolution=16, batch_size=4, eval_batch_size=5, seed=5)


@pytest.fixture
def packed(tmp_path):
    """A two-class photo folder and its pack."""
    root = tmp_path / "photos"
    for label, name in enumerate(("gull", "tern")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            pixels = np.random.default_rng(10 * label + i).integers(0, 256, (28 + i, 36 - i, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    out = tmp_path / "packed"
    pack(["data=image_folder", f"data.root={root}", f"data.image_size={SIZES['image_size']}"], out, verbose=False)
    return root, out


def test_a_url_is_read_through_the_cache_and_gives_the_batches_of_the_files(packed, tmp_path):
    root, out = packed
    files = ImageFolderDataModule(root=root, in_memory=False, **SIZES)
    cache = tmp_path / "cache"
    remote = ImageFolderDataModule(format="litdata", uri=f"local:{out}", in_memory=False, cache_dir=cache, **SIZES)
    assert is_remote(remote.uri) and not is_remote(str(out))

    expected = train_batches(files, 1)
    for workers in (0, 2):
        assert_same_batches(expected, train_batches(remote, 1, workers=workers))
    np.testing.assert_array_equal(remote.split("test").targets, files.split("test").targets)
    assert remote.fingerprint() == files.fingerprint() and remote.class_names == ["gull", "tern"]

    # the small files live in one folder per URL under <cache>/shards, the chunks arrive there as they are read
    (local,) = (cache / "shards").iterdir()
    assert remote.pack_folder() == local and (local / PACK_FILE).is_file()
    assert (local / "train" / "index.json").is_file()
    chunks = sorted(path.name for path in (local / "train" / "chunks").rglob("*.bin"))
    assert chunks == sorted(path.name for path in (out / "train").glob("*.bin"))
    assert not list(local.rglob("*.part"))  # nothing half-written is left


def test_a_url_without_a_pack_names_the_file_it_could_not_download(tmp_path):
    empty = tmp_path / "bucket"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"data.uri=local:{empty}: could not download {PACK_FILE}"):
        fetch_pack(f"local:{empty}", tmp_path / "cache")
    dm = ImageFolderDataModule(format="litdata", uri=f"local:{empty}", cache_dir=tmp_path / "cache", **SIZES)
    with pytest.raises(FileNotFoundError, match="python -m distill.data.pack"):
        dm.setup()
    assert not list((tmp_path / "cache").rglob(f"*{PACK_FILE}*"))


def test_a_pack_written_again_is_downloaded_again(packed, tmp_path):
    _, out = packed
    cache = tmp_path / "cache"
    first = fetch_pack(f"local:{out}/", cache)  # a trailing slash names the same pack
    assert first == fetch_pack(f"local:{out}", cache)
    (first / PACK_FILE).write_text("stale")
    assert (fetch_pack(f"local:{out}", cache) / PACK_FILE).read_text() == (out / PACK_FILE).read_text()
    assert fetch_pack(out, cache) == out  # a folder is read where it is
