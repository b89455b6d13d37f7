import numpy as np
import pytest
import torch

from distill.data.views import EVAL_VIEW, ImageArrayDataset, ViewSampler


def _images(n=6, size=16):
    return np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_augmentation_is_a_function_of_seed_view_and_index():
    dataset = ImageArrayDataset(_images(), np.arange(6), 12, seed=3)
    a, b = dataset[(2, 1)], dataset[(2, 1)]
    assert torch.equal(a["image"], b["image"])
    assert not torch.equal(dataset[(2, 0)]["image"], dataset[(2, 1)]["image"])
    assert a["index"].item() == 2 and a["view"].item() == 1 and a["target"].item() == 2
    other_seed = ImageArrayDataset(_images(), None, 12, seed=4)
    assert not torch.equal(other_seed[(2, 1)]["image"], a["image"])
    assert "target" not in other_seed[0]


def test_eval_view_is_the_whole_image_normalised():
    images = _images()
    dataset = ImageArrayDataset(images, None, 16)
    sample = dataset[3]
    assert sample["view"].item() == EVAL_VIEW
    expected = (torch.from_numpy(images[3]).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.allclose(sample["image"], expected, atol=1e-6)


def test_teacher_image_is_the_same_crop_at_the_teacher_size():
    dataset = ImageArrayDataset(_images(size=32), None, 16, teacher_resolution=32, min_scale=1.0, flip=False)
    sample = dataset[(0, 0)]
    assert sample["image"].shape == (3, 16, 16) and sample["teacher_image"].shape == (3, 32, 32)
    down = torch.nn.functional.interpolate(sample["teacher_image"][None], size=(16, 16), mode="bilinear",
                                           antialias=True, align_corners=False)[0]
    assert torch.allclose(down, sample["image"], atol=1e-5)


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        ImageArrayDataset(np.zeros((2, 8, 8), dtype=np.uint8), None, 8)
    with pytest.raises(ValueError, match="targets"):
        ImageArrayDataset(_images(), np.arange(3), 8)


def test_sampler_cycles_views_and_reshuffles_per_epoch():
    sampler = ViewSampler(10, num_views=3, seed=1)
    epochs = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        items = list(sampler)
        assert {view for _, view in items} == {epoch % 3}
        assert sorted(index for index, _ in items) == list(range(10))
        epochs.append([index for index, _ in items])
    assert epochs[0] != epochs[1]
    sampler.set_epoch(1)
    assert [index for index, _ in sampler] == epochs[1]  # the order depends only on (seed, epoch)


def test_sampler_shards_ranks_without_overlap_and_pads():
    shards = [list(ViewSampler(10, seed=2, rank=r, world_size=3)) for r in range(3)]
    assert all(len(shard) == 4 for shard in shards)
    indices = [index for shard in shards for index, _ in shard]
    assert set(indices) == set(range(10)) and len(indices) == 12
