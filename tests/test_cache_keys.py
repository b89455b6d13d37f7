"""Cache keys hold everything that shapes the cached thing, and a miss says which part changed.

- files: every real reader's key holds its files by size and modification time (``cache.verify=stat``) or content
  (``cache.verify=content``), so an in-place edit of one file (same size, same count) gives a new data fingerprint,
  hence a new fitted-teacher key and a new teacher-output key;
- generators are keyed by their source, the augmentation and the memory format and dtype are in the keys;
- float16 and float32 teacher-output caches of one key live side by side;
- a miss logs which part of the key differs from the most recently used entry of the same kind, down to an engine
  run on an ImageFolder edited in place.
"""

from __future__ import annotations

import json
import logging
import os
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from distill.core.fingerprint import (files_fingerprint, fingerprint, fingerprint_parts_diff, module_fingerprint,
                                      source_tree_digest, verify_mode)
from distill.core.io import atomic_torch_save
from distill.data.array_store import source_digest
from distill.data.modules.coco import CocoDataModule, SyntheticCocoDataModule
from distill.data.modules.fine_grained import (ImageFolderDataModule, StanfordDogsDataModule,
                                               SyntheticFineGrainedDataModule)
from distill.data.modules.geo import GeoCSVDataModule, SyntheticGeoDataModule
from distill.data.modules.shapes import SyntheticShapesDataModule
from distill.data.synthetic import coco_scenes, dogs, geo_photos, shapes
from distill.engine.cache import MANIFEST_NAME, TeacherOutputCache
from distill.engine.keys import (explain_miss, memory_format, newest_manifest_parts, newest_sidecar_parts,
                                 parts_path, teacher_key_parts, teacher_output_key_parts, write_parts)
from distill.engine.outputs import teacher_output_key
from distill.engine.teacher import _load_cached

SECOND = 1_000_000_000  # ns


# --- the bottom-layer helpers ------------------------------------------------------------------------------------


def test_files_fingerprint_follows_size_time_and_content(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"abc")
    b.write_bytes(b"xyz")
    stat, content = files_fingerprint([a, b]), files_fingerprint([a, b], "content")
    assert stat != content and files_fingerprint([b, a]) != stat  # the order is part of the list
    before = os.stat(a)
    a.write_bytes(b"abd")  # same size, other bytes, the modification time restored
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert files_fingerprint([a, b]) == stat  # what stat cannot see ...
    assert files_fingerprint([a, b], "content") != content  # ... content does
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns + SECOND))
    assert files_fingerprint([a, b]) != stat  # a newer modification time
    missing = files_fingerprint([a, tmp_path / "gone.txt"])
    (tmp_path / "gone.txt").write_bytes(b"")
    assert files_fingerprint([a, tmp_path / "gone.txt"]) != missing  # a file that appears changes the digest
    with pytest.raises(ValueError, match="cache.verify must be one of"):
        verify_mode("mtime")


def test_parts_diff_names_nested_parts_and_ignores_tuple_versus_list():
    old = {"data": {"files": {"train": "a", "test": "b"}, "image_size": 32}, "fit": {"lr": 1e-3}, "seed": 0}
    new = {"data": {"files": {"train": "c", "test": "b"}, "image_size": 32}, "fit": {"lr": 1e-3}, "seed": 0,
           "channels_last": True}
    assert fingerprint_parts_diff(old, new) == ["channels_last", "data.files.train"]
    assert fingerprint_parts_diff({"layers": ("a", "b")}, {"layers": ["a", "b"]}) == []
    assert fingerprint_parts_diff({"layers": ["a"]}, {"layers": ["a", "b"]}) == ["layers"]


# --- the four real readers: an in-place edit changes every key ---------------------------------------------------


def _png(path: Path, seed: int, size: int = 12) -> None:
    """An uncompressed PNG: its byte length depends on the size only, so other pixels keep the file's length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "PNG", compress_level=0)


def _jpeg(path: Path, colour, length: int | None = None) -> None:
    """A JPEG; with ``length``, padded to exactly that many bytes by a comment segment (4 bytes + its text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (16, 16), colour)
    image.save(path, "JPEG", comment=b"x" * 64)
    if length is not None:
        image.save(path, "JPEG", comment=b"x" * (length - path.stat().st_size + 64))
    assert length is None or path.stat().st_size == length


def _save_list(path: Path, files, labels) -> None:
    """Stanford Dogs' official layout: a column cell array of strings, 1-based labels as doubles."""
    from scipy.io import savemat

    cells = np.empty((len(files), 1), dtype=object)
    for i, name in enumerate(files):
        cells[i, 0] = np.array([name])
    savemat(str(path), {"file_list": cells, "labels": np.asarray(labels, dtype=np.float64).reshape(-1, 1)})


def _stanford_dogs(tmp_path: Path):
    root = tmp_path / "dogs"
    names = [f"n0{k}-breed{k}/n0{k}_{i}.jpg" for k in (1, 2) for i in range(3)]
    for n, name in enumerate(names):
        _jpeg(root / "Images" / name, (40 * n, 80, 120))
    _save_list(root / "train_list.mat", names[:2] + names[3:5], [1, 1, 2, 2])
    _save_list(root / "test_list.mat", [names[2], names[5]], [1, 2])

    target = root / "Images" / names[4]

    def edit() -> Path:  # a training image of another colour, of the same byte length
        _jpeg(target, (250, 10, 10), length=target.stat().st_size)
        return target

    return (lambda verify: StanfordDogsDataModule(root=root, image_size=8, resolution=8, verify=verify)), \
        target, edit, ["files.train"]


def _image_folder(tmp_path: Path):
    root = tmp_path / "folder"
    for k, name in enumerate(("beagle", "pug")):
        for i in range(4):
            _png(root / name / f"{i}.png", 10 * k + i)
    target = root / "pug" / "0.png"

    def edit() -> Path:  # other pixels, the same byte length
        _png(target, 99)
        return target

    return (lambda verify: ImageFolderDataModule(root=root, test_fraction=0.5, image_size=8, resolution=8,
                                                 verify=verify)), target, edit, ["files.train"]


def _geo_csv(tmp_path: Path):
    root = tmp_path / "geo"
    rows = ["path,lat,lon"]
    for i in range(4):
        _png(root / "images" / f"{i}.png", i)
        rows.append(f"images/{i}.png,{10 + 10 * i}.0,{i}.5")
    (root / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "test.csv").write_text("\n".join(rows[:3]) + "\n", encoding="utf-8")

    def edit() -> Path:  # two latitudes swapped, the file's length kept
        text = (root / "train.csv").read_text(encoding="utf-8")
        swapped = text.replace(",10.0,", ",XX,").replace(",20.0,", ",10.0,").replace(",XX,", ",20.0,")
        (root / "train.csv").write_text(swapped, encoding="utf-8")
        return root / "train.csv"

    return (lambda verify: GeoCSVDataModule(root=root, image_size=8, resolution=8, t1=4, t2=1,
                                            verify=verify)), root / "train.csv", edit, ["files.csv"]


def _coco(tmp_path: Path):
    root = tmp_path / "coco"
    images = []
    for i in range(4):
        _png(root / "images" / f"{i}.png", i, size=20)
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 20, "height": 20})
    annotations = [{"id": 10 + i, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [1, 1, 5, 5], "iscrowd": 0}
                   for i in range(4)]
    ann_file = root / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}),
                        encoding="utf-8")

    def edit() -> Path:  # one box moved by a pixel, the file's length kept
        text = ann_file.read_text(encoding="utf-8")
        ann_file.write_text(text.replace("[1, 1, 5, 5]", "[2, 1, 5, 5]", 1), encoding="utf-8")
        return ann_file

    return (lambda verify: CocoDataModule(root=root / "images", ann_file=ann_file, test_every=2, resolution=20,
                                          verify=verify)), ann_file, edit, ["files.annotations"]


READERS = {"stanford_dogs": _stanford_dogs, "image_folder": _image_folder, "geo_csv": _geo_csv, "coco": _coco}
_TEACHER_BASE = {"teacher": {"model_name": "resnet10t"}, "resolution": 8, "seed": 0, "channels_last": False}


def _keys(datamodule) -> dict[str, str]:
    """The data fingerprint, the fitted-teacher key and (where outputs are cached) the teacher-output key."""
    keys = {"data": datamodule.fingerprint(),
            "teacher": fingerprint(**teacher_key_parts(_TEACHER_BASE, datamodule, {"epochs": 1}))}
    if not isinstance(datamodule, CocoDataModule):  # detection runs its teacher live: no output cache
        torch.manual_seed(0)
        module = types.SimpleNamespace(teacher=nn.Conv2d(3, 4, 3), teacher_layers=["output"], teacher_resolution=8)
        keys["outputs"] = teacher_output_key(module, datamodule)
    return keys


@pytest.mark.parametrize("reader", sorted(READERS))
def test_an_in_place_edit_changes_every_key_under_stat(tmp_path, reader):
    make, target, edit, parts = READERS[reader](tmp_path)
    before_parts, before = make("stat").key_parts(), _keys(make("stat"))
    assert _keys(make("stat")) == before  # nothing changed: the same keys
    size, stamp = target.stat().st_size, target.stat().st_mtime_ns
    edit()
    assert target.stat().st_size == size  # same size, same count of files: only the times and bytes tell
    os.utime(target, ns=(stamp + SECOND, stamp + SECOND))  # the edit's newer modification time, made certain
    after = make("stat")
    changed = _keys(after)
    assert all(changed[name] != before[name] for name in before), (before, changed)
    assert fingerprint_parts_diff(before_parts, after.key_parts()) == parts  # what a cache miss will name


@pytest.mark.parametrize("reader", sorted(READERS))
def test_an_in_place_edit_with_the_time_restored_changes_every_key_under_content(tmp_path, reader):
    make, target, edit, _ = READERS[reader](tmp_path)
    before_stat, before = _keys(make("stat")), _keys(make("content"))
    assert before["data"] != before_stat["data"]  # the mode is part of the key
    stamp = target.stat()
    edit()
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the modification time restored
    assert _keys(make("stat")) == before_stat  # invisible to size and time ...
    changed = _keys(make("content"))
    assert all(changed[name] != before[name] for name in before), (before, changed)  # ... not to the content


def test_verify_reaches_every_real_reader_from_the_config():
    from conftest import compose_config

    for data in ("stanford_dogs", "image_folder", "geo_csv", "coco", "face_folder", "celeba"):
        cfg = compose_config(["recipe=smoke", f"data={data}", "cache.verify=content"])
        assert cfg.data.verify == "content", data
    assert compose_config(["recipe=smoke"]).cache.verify == "stat"
    with pytest.raises(ValueError, match="data.verify must be one of"):
        ImageFolderDataModule(root="x", verify="mtime")


# --- generators, augmentation, memory format, dtype ------------------------------------------------------------


def test_synthetic_generators_are_keyed_by_their_source():
    assert SyntheticShapesDataModule().fingerprint_parts()["generator"] == source_digest(shapes)
    assert SyntheticFineGrainedDataModule().fingerprint_parts()["generator"] == source_digest(dogs)
    assert SyntheticGeoDataModule().fingerprint_parts()["generator"] == source_digest(geo_photos)
    assert SyntheticCocoDataModule().key_parts()["generator"] == source_digest(coco_scenes)
    assert "version" not in SyntheticFineGrainedDataModule().fingerprint_parts()


def test_source_digest_changes_with_the_generator_source(tmp_path):
    copy = tmp_path / "shapes.py"
    copy.write_bytes(Path(shapes.__file__).read_bytes())
    module = types.SimpleNamespace(__file__=str(copy))
    digest = source_digest(module)
    copy.write_text(copy.read_text() + "\n# a changed renderer\n")
    assert source_digest(module) != digest


def test_source_tree_digest_sees_every_python_file_and_nothing_else(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    root = tmp_path / "pkg"
    digest = source_tree_digest(root)
    assert len(digest) == 16 and source_tree_digest(root) == digest
    (root / "notes.txt").write_text("not source")
    assert source_tree_digest(root) == digest
    seen = {digest}
    (root / "sub" / "b.py").write_text("y = 3\n")  # an edit
    seen.add(source_tree_digest(root))
    (root / "sub" / "b.py").rename(root / "sub" / "c.py")  # a rename
    seen.add(source_tree_digest(root))
    (root / "d.py").write_text("")  # an added empty file
    seen.add(source_tree_digest(root))
    assert len(seen) == 4
    # a package's digest is its tree's, a module's its file's: the synthetic-data keys use both
    package = types.SimpleNamespace(__file__=str(root / "__init__.py"), __path__=[str(root)])
    assert source_digest(package) == source_tree_digest(root)


@pytest.mark.parametrize("change", [{"min_crop_scale": 0.5}, {"flip": False}, {"augment": False}])
def test_augmentation_settings_are_part_of_the_data_fingerprint(change):
    base = SyntheticShapesDataModule().fingerprint()
    assert SyntheticShapesDataModule(**change).fingerprint() != base
    assert SyntheticShapesDataModule(batch_size=7, num_workers=1).fingerprint() == base  # loader settings are not
    dataset = SyntheticShapesDataModule(num_train=4, min_crop_scale=0.5, flip=False).dataset("train")
    assert (dataset.min_scale, dataset.flip) == (0.5, False)  # and they reach the dataset


def test_teacher_output_key_holds_memory_format_and_dtype():
    datamodule = SyntheticShapesDataModule(num_teacher_train=4, num_train=4, num_test=4)
    module = types.SimpleNamespace(teacher=nn.Conv2d(3, 4, 3), teacher_layers=["output"], teacher_resolution=32)
    plain = teacher_output_key(module, datamodule)
    assert teacher_output_key(module, datamodule, dtype="float16") != plain
    assert memory_format(module.teacher) == "contiguous"
    module.teacher = module.teacher.to(memory_format=torch.channels_last)
    assert memory_format(module.teacher) == "channels_last"
    assert teacher_output_key(module, datamodule) != plain  # read from the weights' layout
    assert teacher_output_key(module, datamodule, channels_last=False) == plain
    parts = teacher_output_key_parts(module, datamodule, dtype="float16")
    assert parts["teacher"] == module_fingerprint(module.teacher) and parts["dtype"] == "float16"


def _compute_view(scale: float):
    def compute(view: int):
        yield torch.arange(4), {"logits": torch.full((4, 3), scale * (view + 1))}

    return compute


def test_float16_and_float32_caches_of_one_key_live_side_by_side(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither looks corrupt to the other: no warning, nothing removed
        wide = TeacherOutputCache(tmp_path, "key", 4, 2, dtype="float32").open_or_build(_compute_view(1.0))
        half = TeacherOutputCache(tmp_path, "key", 4, 2, dtype="float16").open_or_build(_compute_view(1.0))
        assert wide.path != half.path and wide.path.is_dir() and half.path.is_dir()
        assert TeacherOutputCache(tmp_path, "key", 4, 2, dtype="float32").validate()
        assert TeacherOutputCache(tmp_path, "key", 4, 2, dtype="float16").validate()
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {"key-float32", "key-float16"}
    assert wide.get([0], 1)["logits"].tolist() == half.get([0], 1)["logits"].tolist() == [[2.0, 2.0, 2.0]]


# --- a miss says what changed ----------------------------------------------------------------------------------


def test_teacher_output_manifest_keeps_the_parts_and_a_miss_names_the_change(tmp_path, caplog):
    old = {"data": {"files": {"train": "a"}}, "teacher": "t1", "dtype": "float32"}
    TeacherOutputCache(tmp_path, fingerprint(**old), 4, 1, parts=old).open_or_build(_compute_view(1.0))
    manifest = json.loads(next(tmp_path.glob(f"*/{MANIFEST_NAME}")).read_text())
    assert manifest["parts"] == old
    new = {**old, "data": {"files": {"train": "b"}}}
    caplog.set_level("INFO", logger="distill.engine.keys")
    earlier = newest_manifest_parts(tmp_path, tmp_path / f"{fingerprint(**new)}-float32")
    assert explain_miss("teacher-output", new, earlier) == ["data.files.train"]
    assert "teacher-output cache miss: data.files.train changed (data files edited, added or removed)" in caplog.text


def test_teacher_miss_compares_with_the_most_recently_used_teacher(tmp_path, caplog):
    folder = tmp_path / "teachers"
    older = {"data": {"seed": 1}, "fit": {"epochs": 1}, "channels_last": False}
    newer = {"data": {"seed": 0}, "fit": {"epochs": 2}, "channels_last": False}
    for name, parts, age in (("old", older, 100), ("new", newer, 10)):
        write_parts(parts_path(folder, name), parts)
        (folder / f"{name}.pt").write_bytes(b"weights")
        stamp = (1_700_000_000 - age) * SECOND
        os.utime(folder / f"{name}.pt", ns=(stamp, stamp))
    caplog.set_level("INFO", logger="distill.engine.keys")
    wanted = {**newer, "channels_last": True}
    assert newest_sidecar_parts(folder, "x")[0].name == "new.pt"
    assert explain_miss("teacher", wanted, newest_sidecar_parts(folder, "x")) == ["channels_last"]
    assert "teacher cache miss: channels_last changed (channels_last (the memory format) changed)" in caplog.text
    os.utime(folder / "old.pt")  # the old teacher was used just now: it is the one compared with
    assert newest_sidecar_parts(folder, "x")[0].name == "old.pt"
    caplog.clear()
    explain_miss("teacher", {"data": {}}, None)
    assert "no earlier entry" in caplog.text


@pytest.mark.slow
def test_a_run_on_an_edited_image_folder_fits_the_teacher_again_and_says_why(tmp_path, caplog):
    from conftest import compose_config

    from distill.engine.run import run

    root = tmp_path / "folder"
    for k, name in enumerate(("beagle", "pug", "shiba")):
        for i in range(10):
            _png(root / name / f"{i}.png", 100 * k + i, size=16)
    overrides = ["recipe=smoke", "data=image_folder", f"data.root={root}", "data.image_size=16", "data.resolution=16",
                 "data.batch_size=8", "data.num_views=1", "teacher.fit.epochs=1", "teacher.fit.batch_size=8",
                 "trainer.max_epochs=1", "student.width_multiplier=0.25", "latency_runs=0", "progress=false",
                 f"cache.dir={tmp_path / 'cache'}"]
    first = run(compose_config(overrides), run_dir=tmp_path / "a")
    assert first["teacher"]["source"] == "fitted"
    target = root / "pug" / "3.png"
    stamp = target.stat()
    _png(target, 999, size=16)  # the same file, other pixels, the same length
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + SECOND))
    caplog.set_level("INFO", logger="distill.engine.keys")
    second = run(compose_config(overrides), run_dir=tmp_path / "b")
    assert second["teacher"]["source"] == "fitted"
    assert "teacher cache miss: data.files.train changed (data files edited, added or removed)" in caplog.text
    assert "teacher-output cache miss: data.files.train, teacher changed" in caplog.text
    assert len(list((tmp_path / "cache" / "teachers").glob("*.parts.json"))) == 2


def test_a_cached_teacher_of_another_model_is_refused_without_touching_the_weights(tmp_path, caplog):
    """load_state_dict copies the tensors that match before it reports the ones that do not; a teacher then fitted
    from such a half-loaded model would silently start from another model's weights."""
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))  # the first layer fits, the head not
    before = {name: tensor.clone() for name, tensor in teacher.state_dict().items()}
    path = tmp_path / "teachers" / "key.pt"
    path.parent.mkdir()
    atomic_torch_save({"state_dict": other.state_dict(), "meta": {}}, path)
    with caplog.at_level(logging.WARNING):
        assert _load_cached(teacher, path) is None
    assert "another model's weights" in caplog.text and str(path) in caplog.text
    for name, tensor in teacher.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    renamed = {f"body.{name}": tensor for name, tensor in other.state_dict().items()}
    atomic_torch_save({"state_dict": renamed, "meta": {}}, path)
    assert _load_cached(teacher, path) is None
    atomic_torch_save({"state_dict": before, "meta": {"loss": 0.5}}, path)
    assert _load_cached(teacher, path) == {"loss": 0.5}
