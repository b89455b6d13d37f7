"""RegionAlign: torchvision's RoIAlign (aligned=False) computed as per-image matrix products on small CPU maps."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from distill.models.detection.region_align import RegionAlign, axis_weights


def _boxes(generator: torch.Generator, count: int, image_side: int) -> torch.Tensor:
    """Boxes in image pixels: most inside, some reaching past the image, some thinner than a map pixel."""
    corner = torch.rand(count, 2, generator=generator) * image_side * 1.2 - image_side * 0.1
    size = torch.rand(count, 2, generator=generator) * image_side * 0.8 + 0.5
    return torch.cat([corner, corner + size], dim=1)


def _reference(feature: torch.Tensor, boxes: list[torch.Tensor], scale: float, side: int, ratio: int) -> torch.Tensor:
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    return roi_align(feature, rois, (side, side), spatial_scale=scale, sampling_ratio=ratio, aligned=False)


def test_axis_weights_by_hand():
    # one bin over pixels [0, 2) with two points, at 0.5 and 1.5: each point splits half-and-half between its rows
    weights = axis_weights(torch.tensor([0.0]), torch.tensor([2.0]), size=4, out=1, sampling_ratio=2)
    assert weights.shape == (1, 4, 1)
    assert weights[0, :, 0].tolist() == pytest.approx([0.25, 0.5, 0.25, 0.0])
    # a point past the last pixel but within one pixel is clamped to it; beyond one pixel it counts zero
    weights = axis_weights(torch.tensor([3.2, 5.5]), torch.tensor([1.0, 1.0]), size=4, out=1, sampling_ratio=1)
    assert weights[0, :, 0].tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0])
    assert weights[1, :, 0].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("side,ratio,map_side", [(7, 2, 8), (14, 2, 8), (7, 1, 5), (7, 2, 12)])
def test_equals_torchvision_forward_and_backward(side, ratio, map_side):
    generator = torch.Generator().manual_seed(side * 100 + map_side)
    image_side = map_side * 16
    feature = torch.randn(3, 6, map_side, map_side, generator=generator, requires_grad=True)
    boxes = [_boxes(generator, 9, image_side), _boxes(generator, 0, image_side), _boxes(generator, 5, image_side)]
    pool = RegionAlign("0", output_size=side, sampling_ratio=ratio)
    assert pool._separable(feature)
    shapes = [(image_side, image_side)] * 3
    crops = pool({"0": feature}, boxes, shapes)
    expected = _reference(feature, boxes, 1 / 16, side, ratio)
    assert crops.shape == (14, 6, side, side)
    torch.testing.assert_close(crops, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn(crops.shape, generator=generator)
    (grad,) = torch.autograd.grad((crops * upstream).sum(), feature)
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), feature)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)


def test_torchvision_kernel_beyond_the_measured_crossover():
    generator = torch.Generator().manual_seed(0)
    pool = RegionAlign("0", output_size=7, sampling_ratio=2)
    # forward only: the product wins up to a 16x16 map (area ratio 16), so a 20x20 map goes to torchvision ...
    mid = torch.randn(1, 4, 20, 20, generator=generator)
    assert pool._separable(mid[:, :, :16, :16]) and not pool._separable(mid)
    # ... but in training (forward and backward) the product wins up to 38x38 (ratio 90)
    assert pool._separable(mid.clone().requires_grad_())
    big = torch.randn(1, 4, 40, 40, generator=generator, requires_grad=True)
    assert not pool._separable(big)
    boxes = [_boxes(generator, 6, 640)]
    torch.testing.assert_close(pool({"0": big}, boxes, [(640, 640)]), _reference(big, boxes, 1 / 16, 7, 2))
    adaptive = RegionAlign("0", output_size=7, sampling_ratio=-1)
    small = big[:, :, :8, :8]
    assert not adaptive._separable(small)
    torch.testing.assert_close(adaptive({"0": small}, boxes, [(128, 128)]), _reference(small, boxes, 1 / 16, 7, -1))


def test_scale_follows_the_largest_image():
    # a 10x8 map under images up to 160 px tall is stride 16, whatever the smaller image's size
    generator = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 3, 10, 8, generator=generator)
    boxes = [_boxes(generator, 4, 120), _boxes(generator, 3, 100)]
    crops = RegionAlign("0", 7, 2)({"0": feature}, boxes, [(160, 128), (100, 90)])
    torch.testing.assert_close(crops, _reference(feature, boxes, 1 / 16, 7, 2), rtol=1e-5, atol=1e-5)


def test_scripts_like_the_detector_around_it():
    pool = torch.jit.script(RegionAlign("0", 7, 2))
    generator = torch.Generator().manual_seed(2)
    feature = torch.randn(1, 3, 8, 8, generator=generator)
    boxes = [_boxes(generator, 4, 128)]
    torch.testing.assert_close(pool({"0": feature}, boxes, [(128, 128)]), _reference(feature, boxes, 1 / 16, 7, 2),
                               rtol=1e-5, atol=1e-5)
