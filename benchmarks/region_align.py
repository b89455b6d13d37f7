"""RoIAlign on the CPU: torchvision's kernel against RegionAlign's separable form, side by side.

    python benchmarks/region_align.py                       # the op at several map sides, then whole detector steps
    python benchmarks/region_align.py --sides 8 16 24 32 --repeats 7

The op: one batch of 8 images' 256-channel stride-16 maps, 7x7 crops with 2x2 samples per bin, timed two ways:
training (16 regions per image, forward and backward) and evaluation (300 regions per image, forward only), as
the coco recipe's Faster R-CNN crops them (``conf/detector/faster_rcnn.yaml``). Then one training step of the
recipe's two Faster R-CNN detectors (128 px, batch 8) with torchvision's ``MultiScaleRoIAlign`` as their region
pool and with ``RegionAlign``. The variants take turns ``--repeats`` times in one process; the table gives the
median milliseconds, the range, and torchvision's median over RegionAlign's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from distill.models.detection import build_detector
from distill.models.detection.region_align import RegionAlign

CHANNELS = 256
IMAGES = 8


def region_boxes(count: int, image_side: int, generator: torch.Generator) -> list[torch.Tensor]:
    boxes = []
    for _ in range(IMAGES):
        corner = torch.rand(count, 2, generator=generator) * image_side * 0.8
        side = torch.rand(count, 2, generator=generator) * image_side * 0.5 + 4
        boxes.append(torch.cat([corner, (corner + side).clamp(max=image_side)], dim=1))
    return boxes


def op_variants(side: int, regions: int, train: bool) -> dict[str, Callable[[], None]]:
    generator = torch.Generator().manual_seed(side)
    feature = torch.randn(IMAGES, CHANNELS, side, side, generator=generator, requires_grad=train)
    boxes = region_boxes(regions, side * 16, generator)
    rois = torch.cat([torch.cat([torch.full((regions, 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    separable = RegionAlign("0", output_size=7, sampling_ratio=2)
    shapes = [(side * 16, side * 16)] * IMAGES

    def run(crop: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            if train:
                crop().sum().backward()
            else:
                with torch.no_grad():
                    crop()
        return call

    return {"torchvision": run(lambda: roi_align(feature, rois, (7, 7), 1 / 16, 2, aligned=False)),
            "RegionAlign": run(lambda: separable._separable_align(feature, boxes, 1 / 16))}


def step_variants(backbone: str, kwargs: dict) -> dict[str, Callable[[], None]]:
    options = {"anchor_sizes": (0.1, 0.2, 0.4, 0.8), "roi_output_size": 7, "rpn_pre_nms_top_n_train": 1000,
               "rpn_post_nms_top_n_train": 300, "box_batch_size_per_image": 16}
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 128, 128, generator=generator) for _ in range(IMAGES)]
    targets = [{"boxes": b[:2], "labels": torch.tensor([1, 2])} for b in region_boxes(2, 128, generator)]
    variants = {}
    for name in ("torchvision", "RegionAlign"):
        torch.manual_seed(0)
        model = build_detector("faster_rcnn", backbone=backbone, num_classes=4, size=128, backbone_kwargs=kwargs,
                               options=options).train()
        if name == "torchvision":
            model.roi_heads.box_roi_pool = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer) -> None:
            loss = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        variants[name] = step
    return variants


def interleaved(variants: dict[str, Callable[[], None]], repeats: int, calls: int) -> dict[str, list[float]]:
    for call in variants.values():
        call()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            for _ in range(calls):
                call()
            times[name].append((time.perf_counter() - start) / calls * 1000)
    return times


def row(label: str, times: dict[str, list[float]]) -> str:
    cells = [f"{statistics.median(t):.1f} ({min(t):.1f}-{max(t):.1f})" for t in times.values()]
    ratio = statistics.median(times["torchvision"]) / statistics.median(times["RegionAlign"])
    return f"| {label} | {' | '.join(cells)} | {ratio:.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", nargs="+", type=int, default=[8, 16, 24, 38])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--no-steps", action="store_true", help="time the op only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"RoIAlign, {IMAGES} images x {CHANNELS} channels, 7x7 crops, 2x2 samples, {torch.get_num_threads()} "
          f"threads; ms per call, median (range) of {args.repeats} interleaved runs\n")
    print("| case | torchvision | RegionAlign | torchvision / RegionAlign |")
    print("|---|---|---|---|")
    for side in args.sides:
        for regions, train in ((16, True), (300, False)):
            label = f"{side}x{side} map, {regions} regions/image, {'forward+backward' if train else 'forward'}"
            print(row(label, interleaved(op_variants(side, regions, train), args.repeats, calls=3)), flush=True)
    if not args.no_steps:
        for label, backbone, kwargs in (("teacher (ResNet-10-T)", "resnet", {"model_name": "resnet10t"}),
                                        ("student (0.5 MobileNet)", "mobilenet_v1", {"width_multiplier": 0.5})):
            times = interleaved(step_variants(backbone, kwargs), args.repeats, calls=2)
            print(row(f"Faster R-CNN training step, {label}, 128 px", times), flush=True)


if __name__ == "__main__":
    main()
