"""Shared fixtures: a composed smoke configuration small enough to train in seconds."""

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
    "progress=false",
]


def compose_config(overrides: list[str]):
    with initialize_config_module(config_module="distill.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def tiny_smoke_cfg(tmp_path):
    def make(*extra: str):
        return compose_config(TINY_SMOKE + [f"cache.dir={tmp_path / 'cache'}", *extra])

    return make
