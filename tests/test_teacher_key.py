"""The fitted teacher's key holds what shapes its own split only: a run that changes the student's split, the test
split or the unlabelled images reuses the fitted teacher, and that teacher is the one a fresh fit would give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from distill.core.fingerprint import fingerprint
from distill.data.modules.attributes import SyntheticAttributesDataModule
from distill.data.modules.base import teacher_split_parts
from distill.data.modules.coco import SyntheticCocoDataModule
from distill.data.modules.faces import SyntheticFacesDataModule
from distill.data.modules.fine_grained import SyntheticFineGrainedDataModule
from distill.data.modules.geo import SyntheticGeoDataModule
from distill.data.modules.shapes import SyntheticShapesDataModule
from distill.engine.keys import teacher_data_key_parts

# Each synthetic module: tiny settings, settings of the other splits (the teacher's key must not change), and a
# setting of the teacher's split (it must).
MODULES = {
    "shapes": (SyntheticShapesDataModule,
               dict(num_classes=4, image_size=16, num_teacher_train=6, num_train=7, num_test=6, seed=2),
               dict(num_train=9, num_test=4, num_unlabelled=5), dict(num_teacher_train=8)),
    "dogs": (SyntheticFineGrainedDataModule,
             dict(num_classes=4, image_size=16, num_teacher_train=8, num_train=8, num_test=8, seed=2),
             dict(num_train=12, num_test=4, num_unlabelled=6), dict(num_teacher_train=12)),
    "planet": (SyntheticGeoDataModule,
               dict(image_size=16, num_teacher_train=40, num_train=30, num_test=10, t1=20, t2=2, seed=1),
               dict(num_test=14, num_unlabelled=6), dict(num_train=36)),
    "facenet": (SyntheticFacesDataModule,
                dict(image_size=32, num_identities=3, images_per_identity=2, train_images_per_identity=2,
                     num_test_identities=4, test_images_per_identity=2, num_folds=2, pairs_per_fold=2,
                     use_cache=False, seed=3),
                dict(num_train_identities=3, train_images_per_identity=3, num_test_identities=5, pairs_per_fold=3),
                dict(images_per_identity=3)),
    "face_attributes": (SyntheticAttributesDataModule,
                        dict(image_size=24, num_teacher_train=4, num_train=4, num_test=4, use_cache=False, seed=3),
                        dict(num_train=6, num_test=5), dict(num_teacher_train=5)),
}


def _teacher_key(datamodule) -> str:
    return fingerprint(**teacher_data_key_parts(datamodule))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_teachers_key_ignores_the_other_splits_whose_change_leaves_its_images_as_they_are(name):
    module, base, others, own = MODULES[name]
    plain, changed = module(**base), module(**{**base, **others})
    assert _teacher_key(changed) == _teacher_key(plain)
    assert changed.fingerprint() != plain.fingerprint()  # the teacher outputs cover the student's split: a new key
    a, b = plain.split("teacher_train"), changed.split("teacher_train")
    assert a.images.tobytes() == b.images.tobytes() and np.array_equal(a.targets, b.targets)
    assert _teacher_key(module(**{**base, **own})) != _teacher_key(plain)
    assert _teacher_key(module(**{**base, "seed": base["seed"] + 1})) != _teacher_key(plain)
    assert _teacher_key(module(**{**base, "augment": not plain.augment})) != _teacher_key(plain)


def test_the_planet_teachers_key_follows_the_students_places_which_shape_its_classes():
    module, base, _, own = MODULES["planet"]
    plain, more = module(**base), module(**{**base, **own})
    assert len(plain.split("teacher_train")) > 0
    assert "train" in teacher_data_key_parts(plain)["sizes"]
    assert _teacher_key(more) != _teacher_key(plain)


def _scene_files(datamodule: SyntheticCocoDataModule) -> dict[str, bytes]:
    folder = datamodule.folder
    files = {"teacher_train.json": (folder / "annotations" / "teacher_train.json").read_bytes()}
    for path in sorted((folder / "images" / "teacher_train").iterdir()):
        files[path.name] = path.read_bytes()
    return files


def test_the_coco_teachers_key_ignores_the_students_and_test_scenes(tmp_path):
    base = dict(num_classes=2, image_size=40, num_teacher_train=4, num_train=3, num_test=2, seed=1)
    plain = SyntheticCocoDataModule(tmp_path, **base)
    changed = SyntheticCocoDataModule(tmp_path, **{**base, "num_train": 5, "num_test": 3}, num_unlabelled=2)
    plain.setup(), changed.setup()
    assert changed.folder != plain.folder  # other scenes are written ...
    assert _scene_files(changed) == _scene_files(plain)  # ... and the teacher's are the same, byte for byte
    assert _teacher_key(changed) == _teacher_key(plain)
    assert _teacher_key(SyntheticCocoDataModule(tmp_path, **{**base, "num_teacher_train": 5})) != _teacher_key(plain)


def test_narrowing_names_a_part_that_is_not_there():
    parts = {"sizes": {"teacher_train": 3, "train": 4}, "num_unlabelled": 2, "seed": 0}
    assert teacher_split_parts(parts, drop=("num_unlabelled",)) == {"sizes": {"teacher_train": 3}, "seed": 0}
    with pytest.raises(KeyError, match=r"no \['unlabeled'\] in the data's key parts"):
        teacher_split_parts(parts, drop=("unlabeled",))
    assert teacher_split_parts(parts, sizes_key=None, drop=("sizes",)) == {"num_unlabelled": 2, "seed": 0}


@pytest.mark.slow
def test_a_run_with_other_student_data_reuses_the_teacher_a_fresh_fit_would_give(tmp_path, caplog):
    from conftest import TINY_SMOKE, compose_config

    from distill.engine.run import run

    def smoke(cache: Path, run_dir: str, *extra: str) -> dict:
        overrides = [*TINY_SMOKE, "trainer.max_epochs=1", "latency_runs=0", f"cache.dir={cache}", *extra]
        return run(compose_config(overrides), run_dir=tmp_path / run_dir)

    student_side = ("data.num_train=96", "data.num_test=48", "data.num_unlabelled=64")
    first = smoke(tmp_path / "cache", "first")
    assert first["teacher"]["source"] == "fitted"
    caplog.set_level("INFO", logger="distill.engine.teacher")
    reused = smoke(tmp_path / "cache", "reused", *student_side)
    assert reused["teacher"]["source"] == "cache" and "loaded from cache" in caplog.text
    fresh = smoke(tmp_path / "fresh_cache", "fresh", *student_side)
    assert fresh["teacher"]["source"] == "fitted"
    [kept_file] = (tmp_path / "cache" / "teachers").glob("*.pt")  # one teacher fitted in the shared cache
    [fresh_file] = (tmp_path / "fresh_cache" / "teachers").glob("*.pt")
    assert fresh_file.name == kept_file.name  # the same key
    kept = torch.load(kept_file, weights_only=True)["state_dict"]
    refitted = torch.load(fresh_file, weights_only=True)["state_dict"]
    assert kept.keys() == refitted.keys()
    assert all(torch.equal(kept[name], refitted[name]) for name in kept)
    assert reused["teacher"]["metrics"] == fresh["teacher"]["metrics"]
