"""Shared fixtures: every recipe's tiny configuration (one place), and one tiny run of each, shared by the tests."""

from __future__ import annotations

import os

import pytest
import torch
from hydra import compose, initialize_config_module

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, min(2, os.cpu_count() or 1)))

TINY_SMOKE = [
    "recipe=smoke",
    "data.num_teacher_train=128",
    "data.num_train=128",
    "data.num_test=64",
    "data.batch_size=32",
    "teacher.fit.epochs=1",
    "trainer.max_epochs=2",
    "latency_ort=false",
    "progress=false",
]

# The overrides that make each recipe's default run in seconds: the only place they are written.
TINY = {
    "smoke": TINY_SMOKE,
    "dogs": ["recipe=dogs", "data.num_classes=10", "data.image_size=32", "data.resolution=32",
             "data.num_teacher_train=80", "data.num_train=60", "data.num_unlabelled=20", "data.num_test=40", "data.batch_size=20", "teacher.fit.epochs=1", "trainer.max_epochs=1",
             "student.width_multiplier=0.25", "latency_runs=0", "progress=false"],
    "facenet": ["recipe=facenet", "data.image_size=80", "data.num_identities=6", "data.images_per_identity=4",
                "data.train_images_per_identity=3", "data.num_train_identities=6", "data.num_test_identities=20", "data.test_images_per_identity=3",
                "data.pairs_per_fold=4", "data.batch_size=16", "data.num_views=1", "data.resolution=64",
                "teacher.fit.epochs=1", "teacher.fit.batch_size=12", "student.width_multiplier=0.25",
                "trainer.max_epochs=1", "latency_ort=false", "progress=false"],
    "face_attributes": ["recipe=face_attributes", "data.image_size=32", "data.resolution=32", "teacher.resolution=32",
                        "data.num_teacher_train=64", "data.num_train=64", "data.num_test=48",
                        "teacher.builder.model_name=resnet10t", "teacher.fit.epochs=1", "teacher.fit.batch_size=32",
                        "student.width_multiplier=0.25", "trainer.max_epochs=1", "latency_ort=false",
                        "progress=false"],
    "planet": ["recipe=planet", "data.num_teacher_train=200", "data.num_train=160", "data.num_unlabelled=40",
               "data.num_test=60",
               "data.image_size=24", "data.resolution=24", "data.t1=40", "data.t2=4", "data.batch_size=32",
               "teacher.fit.epochs=1", "trainer.max_epochs=1", "student.width_multiplier=0.25", "latency_runs=0",
               "progress=false"],
    "coco": ["recipe=coco", "data.num_classes=2", "data.image_size=64", "data.resolution=64",
             "data.num_teacher_train=16", "data.num_train=12", "data.num_test=8", "data.num_unlabelled=8",
             "data.batch_size=8",
             "teacher.builder.model_name=resnet10t", "teacher.name=resnet10t", "teacher.fit.epochs=1",
             "trainer.max_epochs=1", "student.width_multiplier=0.25", "latency_runs=0", "progress=false"],
}


def compose_config(overrides: list[str]):
    with initialize_config_module(config_module="distill.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def tiny_smoke_cfg(tmp_path):
    def make(*extra: str):
        return compose_config(TINY_SMOKE + [f"cache.dir={tmp_path / 'cache'}", *extra])

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``tiny_run(recipe) -> (cfg, results, run_dir)``: each recipe's tiny default, run once per test session."""
    from distill.engine.run import run

    done = {}
    root = tmp_path_factory.mktemp("tiny_runs")

    def get(recipe: str):
        if recipe not in done:
            cfg = compose_config(TINY[recipe] + [f"cache.dir={root / 'cache'}"])
            run_dir = root / recipe
            done[recipe] = (cfg, run(cfg, run_dir=run_dir), run_dir)
        return done[recipe]

    return get
