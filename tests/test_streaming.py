"""Real images at scale: decoded in memory, streamed from the files in DataLoader workers, or read from LitData
shards, the batches of one (seed, view, index) are the same; bad images met while streaming are named or replaced
and counted; shards round-trip what was packed and are read by rank without overlap; a resumed epoch continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import scipy.io
import torch
from batches import assert_same_batches, cut_pixels, train_batches
from conftest import compose_config
from PIL import Image

from distill.data.modules.fine_grained import ImageFolderDataModule, StanfordDogsDataModule
from distill.data.modules.geo import GeoCSVDataModule
from distill.data.pack import main as pack_main
from distill.data.pack import pack
from distill.data.readers.image_files import CorruptImageError
from distill.data.shards import PACK_FILE, ShardImages, read_pack
from distill.data.streaming import (IN_MEMORY_AUTO_BYTES, DecodedFiles, PathTable, in_memory_setting,
                                    keep_in_memory)
from distill.data.views import ViewSampler
from distill.engine.run import run

pytest.importorskip("litdata")

SIZES = dict(image_size=20, resolution=16, batch_size=4, eval_batch_size=5, seed=3)


def _photo(path, seed, height, width, fmt="JPEG"):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


@pytest.fixture
def folder(tmp_path):
    """Three classes of JPEG and PNG photos of different sizes (landscape and portrait)."""
    root = tmp_path / "photos"
    for label, name in enumerate(("heron", "ibis", "stork")):
        for i in range(6):
            fmt = "PNG" if i % 3 == 2 else "JPEG"
            _photo(root / name / f"{i}.{fmt.lower()}", 10 * label + i, 30 + 3 * i, 44 - 2 * i, fmt)
    return root


def _module(root, **options):
    return ImageFolderDataModule(root=root, **{**SIZES, **options})






def _packed(root, tmp_path, *extra):
    out = tmp_path / "packed"
    pack(["data=image_folder", f"data.root={root}", f"data.image_size={SIZES['image_size']}", *extra], out,
         verbose=False)
    return out


def test_memory_files_and_shards_give_the_same_batches(folder, tmp_path):
    memory = _module(folder, in_memory=True)
    files = _module(folder, in_memory=False)
    shards = _module(None, format="litdata", uri=_packed(folder, tmp_path), in_memory=False)
    memory.setup()
    files.setup()
    assert isinstance(memory.split("train").images, np.ndarray)
    assert isinstance(files.split("train").images, DecodedFiles)
    assert isinstance(shards.split("train").images, ShardImages)
    for epoch in (0, 1):  # views 0 and 1
        expected = train_batches(memory, epoch, teacher_resolution=24)
        assert_same_batches(expected, train_batches(files, epoch, workers=2, teacher_resolution=24))
        assert_same_batches(expected, train_batches(shards, epoch, workers=2, teacher_resolution=24))
    for dm in (files, shards):
        assert_same_batches(list(memory.eval_dataloader("test")), list(dm.eval_dataloader("test")))
        assert_same_batches(list(memory.view_dataloader(1)), list(dm.view_dataloader(1)))
        assert_same_batches(list(memory.teacher_train_dataloader()), list(dm.teacher_train_dataloader()))
    # one key for the three: fitted teachers and teacher outputs are shared
    assert memory.fingerprint() == files.fingerprint() == shards.fingerprint()
    assert shards.class_names == memory.class_names == ["heron", "ibis", "stork"]
    assert [memory.summary()["in_memory"], files.summary()["in_memory"]] == [True, False]
    assert shards.summary()["format"] == "litdata" and shards.summary()["splits"] == memory.summary()["splits"]


def test_fast_decode_is_the_same_in_every_path_and_part_of_the_key(tmp_path):
    root = tmp_path / "large"
    for label, name in enumerate(("fen", "moor")):
        for i in range(3):  # 400 x 300 photos, decoded to 64 px: JPEG draft decodes them at 1/4 scale
            ramp = np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None].repeat(300, 0).repeat(3, 2)
            path = root / name / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(ramp // (1 + label + i))).save(path, quality=90)
    options = dict(image_size=64, resolution=32, batch_size=2, test_fraction=0.34)
    fast = _module(root, in_memory=True, fast_decode=True, **options)
    full = _module(root, in_memory=True, **options)
    assert fast.fingerprint() != full.fingerprint()
    assert not np.array_equal(fast.split("train").images, full.split("train").images)
    out = tmp_path / "packed"
    pack(["data=image_folder", f"data.root={root}", "data.image_size=64", "data.test_fraction=0.34",
          "data.fast_decode=true"], out, verbose=False)
    streamed = _module(root, in_memory=False, fast_decode=True, **options)
    shards = _module(None, format="litdata", uri=out, in_memory=False, fast_decode=True, **options)
    expected = train_batches(fast, 0, teacher_resolution=24)
    assert_same_batches(expected, train_batches(streamed, 0, workers=1, teacher_resolution=24))
    assert_same_batches(expected, train_batches(shards, 0, workers=1, teacher_resolution=24))
    assert shards.fingerprint() == fast.fingerprint()


def test_in_memory_auto_goes_by_the_decoded_size(folder):
    assert in_memory_setting("auto") == "auto" and in_memory_setting("false") is False and in_memory_setting(True)
    with pytest.raises(ValueError, match="data.in_memory must be auto, true or false"):
        in_memory_setting("sometimes")
    limit_images = IN_MEMORY_AUTO_BYTES // (256 * 256 * 3)
    assert keep_in_memory("auto", limit_images - 1, 256) and not keep_in_memory("auto", limit_images + 1, 256)
    assert keep_in_memory(True, 10**9, 256) and not keep_in_memory(False, 1, 8)
    assert _module(folder).summary()["in_memory"] is True  # 18 small images
    assert _module(folder, image_size=4000).summary()["in_memory"] is False  # 18 x 48 MB decoded


def test_path_table_round_trips_paths(tmp_path):
    paths = [tmp_path / "a b" / "ü.jpg", tmp_path / "c.png", tmp_path / "d" / "e" / "f.JPG"]
    table = PathTable(paths)
    assert len(table) == 3 and [table[i] for i in range(3)] == paths




def test_a_corrupt_image_met_while_streaming_is_named(folder):
    bad = cut_pixels(folder / "ibis" / "0.jpeg")
    dm = _module(folder, in_memory=False)
    dm.setup()  # the header reads: found only when a worker decodes it
    with pytest.raises(CorruptImageError, match="ibis/0.jpeg"):
        train_batches(dm, 0, workers=1, teacher_resolution=24)
    with pytest.raises(CorruptImageError, match="ibis/0.jpeg"):  # in memory: at set-up
        _module(folder, in_memory=True).setup()
    assert bad.exists()


def test_strict_false_replaces_and_counts_a_corrupt_image_the_same_way_in_every_path(folder, tmp_path):
    bad = cut_pixels(folder / "ibis" / "0.jpeg")
    unreadable = folder / "stork" / "1.jpeg"
    unreadable.write_bytes(b"\xff\xd8\xff\xe0 not a photo")  # the header does not read: left out at listing
    memory = _module(folder, in_memory=True, strict=False)
    files = _module(folder, in_memory=False, strict=False)
    for dm in (memory, files):
        assert dm.summary()["splits"] == {"train": 14, "test": 3}  # 18 photos, one left out
    assert_same_batches(train_batches(memory, 0, teacher_resolution=24), train_batches(files, 0, workers=2, teacher_resolution=24))
    for dm in (memory, files):  # the replaced image is counted once, also when workers met it
        summary = dm.summary()
        assert summary["skipped"]["corrupt"] == [str(unreadable), str(bad)]
        assert summary["skipped_counts"] == {"corrupt": 2}
        json.dumps(summary)
    # the replacement is the next image of the same class that decodes
    index = [str(path) for path in _listed(files)].index(str(bad))
    np.testing.assert_array_equal(memory.split("train").images[index], memory.split("train").images[index + 1])
    assert memory.split("train").targets[index] == memory.split("train").targets[index + 1]
    # packed with strict=false, the shards carry the same pixels and the same report
    shards = _module(None, format="litdata", uri=_packed(folder, tmp_path, "data.strict=false"), strict=False)
    np.testing.assert_array_equal(shards.split("train").images, memory.split("train").images)
    assert shards.summary()["skipped_counts"] == {"corrupt": 2}


def _listed(dm):
    images = dm.split("train").images
    return [images.paths[i] for i in range(len(images))]


def test_litdata_round_trip_and_its_errors(folder, tmp_path):
    out = tmp_path / "packed"
    assert pack_main(["data=image_folder", f"data.root={folder}", "data.image_size=20", "data.max_per_class=4",
                      str(out), "--workers", "2", "--chunk-bytes", "4kb"]) == 0  # two writers, many chunks
    meta, targets = read_pack(out)
    assert meta["kind"] == "ImageFolderDataModule" and meta["splits"] == {"train": 12, "test": 3}
    reference = _module(folder, max_per_class=4, in_memory=True)
    for name in ("train", "test"):
        shard = ShardImages(out, name, 20, meta["splits"][name])
        np.testing.assert_array_equal(np.stack([shard[i] for i in range(len(shard))]), reference.split(name).images)
        np.testing.assert_array_equal(targets[name], reference.split(name).targets)
    in_memory = _module(None, format="litdata", uri=out, max_per_class=4, in_memory=True)
    np.testing.assert_array_equal(in_memory.split("train").images, reference.split("train").images)
    assert in_memory.fingerprint() == reference.fingerprint()

    with pytest.raises(ValueError, match="data.image_size=32.*20 px"):
        _module(None, format="litdata", uri=out, image_size=32).setup()
    with pytest.raises(FileNotFoundError, match=PACK_FILE):
        _module(None, format="litdata", uri=tmp_path).setup()
    with pytest.raises(ValueError, match="needs data.uri"):
        _module(None, format="litdata")
    with pytest.raises(ValueError, match="data.format must be one of"):
        _module(folder, format="tar")
    with pytest.raises(FileExistsError, match="not empty"):
        pack(["data=image_folder", f"data.root={folder}"], out, verbose=False)
    with pytest.raises(ValueError, match="cannot be packed"):
        pack(["data=synthetic_shapes"], tmp_path / "shapes", verbose=False)
    with pytest.raises(IndexError, match="out of range"):
        ShardImages(out, "train", 20, 12)[12]


def test_reading_a_shard_item_by_index_deserialises_that_item_alone(folder, tmp_path, monkeypatch):
    """Our samplers read in a shuffled order: decoding a window of the item's neighbours with it (LitData's
    default) would cost a window per image."""
    from litdata.streaming.serializers import NumpySerializer

    out = _packed(folder, tmp_path)
    meta, _ = read_pack(out)
    shard = ShardImages(out, "train", SIZES["image_size"], meta["splits"]["train"])
    assert shard.count > 4
    decoded = []
    original = NumpySerializer.deserialize
    monkeypatch.setattr(NumpySerializer, "deserialize", lambda self, data: decoded.append(1) or original(self, data))
    reference = _module(folder, in_memory=True).split("train").images
    for index in (3, 0, shard.count - 1, 2):
        np.testing.assert_array_equal(shard[index], reference[index])
    assert len(decoded) == 4


def _mat_list(path, files, labels):
    """A Stanford Dogs split list: file_list a column cell array of strings, labels 1-based."""
    cells = np.empty((len(files), 1), dtype=object)
    for i, name in enumerate(files):
        cells[i, 0] = np.array([name])
    scipy.io.savemat(str(path), {"file_list": cells, "labels": np.asarray(labels, np.float64).reshape(-1, 1)})


def test_stanford_dogs_streams_and_packs_like_it_decodes(tmp_path):
    root = tmp_path / "dogs"
    lists = {"train": ([], []), "test": ([], [])}
    for label, breed in enumerate(("n02085620-Chihuahua", "n02085782-Japanese_spaniel"), start=1):
        for i in range(5):
            name = f"{breed}/{breed.split('-')[0]}_{i}.jpg"
            _photo(root / "Images" / name, 7 * label + i, 36, 28 + 4 * i)
            files, labels = lists["test" if i == 4 else "train"]
            files.append(name)
            labels.append(label)
    for split, (files, labels) in lists.items():
        _mat_list(root / f"{split}_list.mat", files, labels)
    options = dict(image_size=20, resolution=16, batch_size=3, seed=1)
    memory = StanfordDogsDataModule(root=root, in_memory=True, **options)
    files = StanfordDogsDataModule(root=root, in_memory=False, **options)
    out = tmp_path / "packed"
    pack(["data=stanford_dogs", f"data.root={root}", "data.image_size=20"], out, verbose=False)
    shards = StanfordDogsDataModule(format="litdata", uri=out, in_memory=False, **options)  # no root needed
    expected = train_batches(memory, 1, teacher_resolution=24)
    assert_same_batches(expected, train_batches(files, 1, workers=1, teacher_resolution=24))
    assert_same_batches(expected, train_batches(shards, 1, workers=1, teacher_resolution=24))
    assert shards.class_names == memory.class_names == ["Chihuahua", "Japanese spaniel"]
    assert memory.fingerprint() == files.fingerprint() == shards.fingerprint()
    with pytest.raises(ValueError, match="holds a packed StanfordDogsDataModule"):
        _module(None, format="litdata", uri=out).setup()


def test_ranks_read_disjoint_shards_covering_the_data(folder, tmp_path):
    dm = _module(None, format="litdata", uri=_packed(folder, tmp_path, "data.max_per_class=4"), max_per_class=4,
                 in_memory=False)
    dataset = dm.dataset("train")
    seen = []
    for rank in range(2):
        sampler = ViewSampler(len(dataset), 2, seed=3, rank=rank, world_size=2)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=1)
        seen.append([int(i) for batch in loader for i in batch["index"]])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(len(dataset)))  # 12 images: 6 a rank, none padded


def test_a_resumed_epoch_from_shards_continues_with_the_next_batch(folder, tmp_path):
    dm = _module(None, format="litdata", uri=_packed(folder, tmp_path), in_memory=False)
    whole = train_batches(dm, 1, workers=1, teacher_resolution=24)
    dm.resume_at(1, 2)  # two batches of epoch 1 were trained on before the interruption
    assert_same_batches(whole[2:], train_batches(dm, 1, workers=1, teacher_resolution=24))


def test_geotagged_photos_stream_like_they_decode_in_memory(tmp_path):
    rows = ["path,lat,lon"]
    for city, (lat, lon) in enumerate(((48.85, 2.35), (35.68, 139.69), (-12.05, -77.04))):
        for k in range(4):
            _photo(tmp_path / "images" / f"{city}_{k}.jpg", 10 * city + k, 30, 40)
            rows.append(f"images/{city}_{k}.jpg,{lat + 0.01 * k},{lon}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(rows[::3]) + "\n")
    bad = cut_pixels(tmp_path / "images" / "1_2.jpg")
    options = dict(root=tmp_path, image_size=20, resolution=16, batch_size=4, t1=4, t2=1, seed=3)
    memory, files = GeoCSVDataModule(in_memory=True, **options), GeoCSVDataModule(in_memory=False, **options)
    files.setup()
    assert isinstance(files.split("train").images, DecodedFiles)
    assert_same_batches(train_batches(memory, 1, teacher_resolution=24), train_batches(files, 1, workers=2, teacher_resolution=24))
    for dm in (memory, files):
        summary = dm.summary()
        assert summary["skipped"] == 1 and summary["skipped_rows"][0].startswith(f"{bad}: does not decode")
    np.testing.assert_array_equal(files.split("test").extras["latlon"], memory.split("test").extras["latlon"])


# --- through the engine ------------------------------------------------------------------------------------------


def _dogs_cfg(tmp_path, root, *extra):
    return compose_config(["recipe=dogs", "data=image_folder", f"data.root={root}", "data.image_size=20",
                           "data.resolution=16", "data.batch_size=4", "teacher.fit.epochs=1", "trainer.max_epochs=1",
                           "student.width_multiplier=0.25", "latency_runs=0", "latency_ort=false", "progress=false",
                           f"cache.dir={tmp_path / 'cache'}", *extra])


def _weights(results):
    return torch.load(results["student_checkpoint"], weights_only=True)["state_dict"]


def _assert_same_weights(first, second):
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_a_run_from_memory_files_or_shards_ends_with_the_same_weights(folder, tmp_path):
    shards = ["data.format=litdata", f"data.uri={_packed(folder, tmp_path)}", "data.root=null",
              "data.in_memory=false", "data.num_workers=1"]
    memory = run(_dogs_cfg(tmp_path, folder, "data.in_memory=true"), run_dir=tmp_path / "memory")
    files = run(_dogs_cfg(tmp_path, folder, "data.in_memory=false", "data.num_workers=2"), run_dir=tmp_path / "files")
    packed = run(_dogs_cfg(tmp_path, folder, *shards), run_dir=tmp_path / "shards")
    assert files["teacher"]["source"] != "fitted" and packed["teacher"]["source"] != "fitted"  # one data key
    assert (memory["data"]["in_memory"], files["data"]["in_memory"], packed["data"]["format"]) == \
        (True, False, "litdata")
    for other in (files, packed):
        _assert_same_weights(memory, other)
        assert other["student"]["metrics"]["top1"] == memory["student"]["metrics"]["top1"]


class _Interrupt(pl.Callback):
    """Raises in the middle of the second epoch, like a killed job."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("simulated kill")


@pytest.mark.slow
def test_resume_mid_epoch_from_shards_ends_with_the_same_weights(folder, tmp_path):
    overrides = ("trainer.max_epochs=3", "data.num_views=2", "data.format=litdata",
                 f"data.uri={_packed(folder, tmp_path)}", "data.root=null", "data.in_memory=false",
                 "data.num_workers=1")
    reference = run(_dogs_cfg(tmp_path, folder, *overrides), run_dir=tmp_path / "reference")
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(_dogs_cfg(tmp_path, folder, *overrides), run_dir=tmp_path / "killed", callbacks=[_Interrupt()])
    resumed = run(_dogs_cfg(tmp_path, folder, *overrides, "resume=true"), run_dir=tmp_path / "killed")
    _assert_same_weights(reference, resumed)


class RecordIndices(pl.Callback):
    """Writes the sample indices each rank trained on, one file per rank (for the DDP run below)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.txt"), "a") as handle:
            handle.write(f"{trainer.current_epoch} {' '.join(str(int(i)) for i in batch['index'])}\n")


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_reads_disjoint_shards_covering_the_data(folder, tmp_path):
    out = _packed(folder, tmp_path, "data.max_per_class=4")  # 12 training images: 6 a rank, none repeated
    env = dict(os.environ, OMP_NUM_THREADS="1", DISTILL_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "distill", "recipe=dogs", "data=image_folder", "data.format=litdata",
               f"data.uri={out}", "data.image_size=20", "data.resolution=16", "data.batch_size=4",
               "data.in_memory=false", "data.num_workers=1", "teacher.fit.epochs=1", "trainer.max_epochs=1",
               "student.width_multiplier=0.25", "latency_runs=0", "latency_ort=false", "progress=false",
               "data.max_per_class=4", "trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'ddp'}",
               "+callbacks.indices._target_=test_streaming.RecordIndices", f"+callbacks.indices.folder={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["config"]["trainer"]["devices"] == 2 and results["data"]["format"] == "litdata"
    seen = [[int(i) for line in (tmp_path / f"rank{rank}.txt").read_text().splitlines() for i in line.split()[1:]]
            for rank in range(2)]
    assert len(seen[0]) == len(seen[1]) == 6 and not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(12))
