"""Helpers of the tests that compare where images come from (memory, files, shards): one epoch's training batches,
batch-for-batch equality, and a JPEG whose header reads but whose pixels do not."""

from __future__ import annotations

import pytest
import torch

from distill.data.readers.image_files import CorruptImageError, load_image


def train_batches(dm, epoch: int, workers: int = 0, teacher_resolution: int | None = None) -> list:
    """Every training batch of ``epoch`` (with the teacher's copy of each crop when ``teacher_resolution``)."""
    dm.num_workers = workers
    if teacher_resolution is not None:
        dm.teacher_resolution = teacher_resolution
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second)
    for one, other in zip(first, second):
        assert one.keys() == other.keys()
        for key in one:
            assert torch.equal(one[key], other[key]), key


def cut_pixels(path):
    """Keep the header, drop most of the pixel data: the header check passes, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError):
        load_image(path)
    return path
