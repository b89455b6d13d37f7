"""DataLoader workers never outnumber the CPU cores: data.num_workers is clamped where loaders are built, with one
INFO line saying so."""

from __future__ import annotations

import logging

import pytest

from distill.data import workers
from distill.data.modules.coco import CocoDataModule
from distill.data.modules.shapes import SyntheticShapesDataModule
from distill.data.workers import available_cores, loader_workers


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 2)
    if hasattr(workers.os, "sched_getaffinity"):
        monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 1})


def test_more_workers_than_cores_are_clamped_with_one_info_line(two_cores, caplog):
    assert available_cores() == 2
    with caplog.at_level(logging.INFO, logger="distill.data.workers"):
        assert loader_workers(16) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "data.num_workers=16 but this machine has 2 CPU cores: using 2 DataLoader workers"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="distill.data.workers"):
        assert loader_workers(2) == 2 and loader_workers(0) == 0
    assert caplog.records == []
    with pytest.raises(ValueError, match="data.num_workers must be an integer >= 0"):
        loader_workers(-1)


def test_the_affinity_of_the_process_counts_not_the_whole_machine(monkeypatch):
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {3, 4, 5, 6}, raising=False)
    assert available_cores() == 4


def test_data_modules_build_their_loaders_with_the_clamped_count(two_cores, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="distill.data.workers"):
        shapes = SyntheticShapesDataModule(num_teacher_train=8, num_train=8, num_test=4, batch_size=4, num_workers=12)
    assert shapes.num_workers == 2
    assert sum("data.num_workers=12" in r.getMessage() for r in caplog.records) == 1
    assert shapes.train_dataloader().num_workers == 2 and shapes.eval_dataloader().num_workers == 2
    coco = CocoDataModule(root=str(tmp_path), ann_file=str(tmp_path / "train.json"), num_workers=9)
    assert coco.num_workers == 2
