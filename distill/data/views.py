"""Image datasets with reproducible augmentation views, and the sampler that chooses the view per epoch.

A sample's augmentation is a pure function of (seed, view, index). The sampler yields (index, view)
pairs, the view cycling through ``num_views`` with the epoch. This is what makes teacher outputs
cacheable: the teacher's output for (view, index) never changes, so it can be computed once.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

__all__ = ["EVAL_VIEW", "ImageArrayDataset", "ViewSampler", "DEFAULT_MEAN", "DEFAULT_STD"]

EVAL_VIEW = -1  # no augmentation: the whole image, resized
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


class ImageArrayDataset(Dataset):
    """uint8 images (N, H, W, 3) held in memory, served as normalised float tensors in dict samples.

    Indexing with an int gives the un-augmented view; with an (index, view) pair, the augmentation of that view.
    When ``teacher_resolution`` differs from ``resolution`` the same crop is also served at the teacher's size
    as ``teacher_image``.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray | None,
        resolution: int,
        *,
        teacher_resolution: int | None = None,
        augment: bool = True,
        seed: int = 0,
        min_scale: float = 0.8,
        flip: bool = True,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
    ) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be a uint8 array of shape (N, H, W, 3), got {images.dtype} {images.shape}")
        if targets is not None and len(targets) != len(images):
            raise ValueError(f"{len(targets)} targets for {len(images)} images")
        if int(resolution) <= 0:
            raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
        self.images = images
        self.targets = targets
        self.resolution = int(resolution)
        self.teacher_resolution = int(teacher_resolution) if teacher_resolution else None
        self.augment = augment
        self.seed = int(seed)
        self.min_scale = float(min_scale)
        self.flip = flip
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def _crop_box(self, index: int, view: int, height: int, width: int) -> tuple[int, int, int, int, bool]:
        if view == EVAL_VIEW or not self.augment:
            return 0, 0, height, width, False
        rng = np.random.default_rng([self.seed, view, index])
        scale = rng.uniform(self.min_scale, 1.0)
        crop_h, crop_w = max(1, round(height * math.sqrt(scale))), max(1, round(width * math.sqrt(scale)))
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        flip = bool(self.flip and rng.random() < 0.5)
        return top, left, crop_h, crop_w, flip

    def _resize(self, image: torch.Tensor, size: int) -> torch.Tensor:
        if image.shape[-2:] != (size, size):
            image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        return (image - self.mean) / self.std

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, view = (int(item[0]), int(item[1])) if isinstance(item, (tuple, list)) else (int(item), EVAL_VIEW)
        raw = self.images[index]
        top, left, crop_h, crop_w, flip = self._crop_box(index, view, raw.shape[0], raw.shape[1])
        image = torch.from_numpy(np.ascontiguousarray(raw[top : top + crop_h, left : left + crop_w]))
        image = image.permute(2, 0, 1).float().div_(255.0)
        if flip:
            image = image.flip(-1)
        sample = {
            "image": self._resize(image, self.resolution),
            "index": torch.tensor(index, dtype=torch.long),
            "view": torch.tensor(view, dtype=torch.long),
        }
        if self.teacher_resolution and self.teacher_resolution != self.resolution:
            sample["teacher_image"] = self._resize(image, self.teacher_resolution)
        if self.targets is not None:
            sample["target"] = torch.as_tensor(self.targets[index])
        return sample


class ViewSampler(Sampler):
    """Yields (index, view) with view = epoch % num_views; shuffles with a seed per epoch; shards across ranks.

    The order of an epoch depends only on (seed, epoch), so a resumed run sees exactly the batches an uninterrupted
    run would: at an epoch boundary as it is, and inside an epoch after ``resume_at(epoch, samples)``, which makes
    the next pass over that epoch skip the samples already trained on. Under torch.distributed each rank takes every world_size-th index of the
    same permutation (padded to a multiple of world_size, like DistributedSampler).
    """

    def __init__(
        self,
        num_samples: int,
        num_views: int = 1,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if num_views <= 0:
            raise ValueError(f"num_views must be positive, got {num_views}")
        self.num_samples = num_samples
        self.num_views = num_views
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._rank = rank
        self._world_size = world_size
        self._skip: tuple[int, int] | None = None  # (epoch, samples of this rank's shard to skip once)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, samples: int) -> None:
        """Skip the first ``samples`` of this rank's shard the next time ``epoch`` is iterated (a mid-epoch resume)."""
        self._skip = (int(epoch), int(samples)) if samples > 0 else None

    def _shard(self) -> tuple[int, int]:
        if self._world_size is not None:
            return self._rank or 0, self._world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        _, world_size = self._shard()
        return math.ceil(self.num_samples / world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        rank, world_size = self._shard()
        total = math.ceil(self.num_samples / world_size) * world_size
        order = (order * math.ceil(total / len(order)))[:total]
        view = self.epoch % self.num_views
        shard = order[rank::world_size]
        if self._skip is not None and self._skip[0] == self.epoch:
            shard = shard[self._skip[1]:]
            self._skip = None
        return iter([(index, view) for index in shard])
