"""Faster R-CNN training step time by region-crop size and sampled regions, teacher and student side by side.

    python benchmarks/detector_step.py                                  # 7x16 (the default), 7x8, 14x64
    python benchmarks/detector_step.py --settings 7x16 7x8 --repeats 5 --steps 4

A setting ``<crop>x<regions>`` is ``detector.options.roi_output_size`` x ``detector.options.box_batch_size_per_image``;
every other option is the coco recipe's (``conf/detector/faster_rcnn.yaml``). For the recipe's two detectors (the
ResNet-10-T teacher and the 0.5 MobileNet student, 4 classes, 128 px) one training step (the detector's own losses,
backward, AdamW) on a fixed batch of 8 images with 1-4 boxes each is timed at every setting in one process, the
settings taking turns ``--repeats`` times (``--steps`` steps each, after ``--warmup``). The table gives the median
seconds per step, the range, and the median's speed-up over the first setting.

The box head (the trunk's last stage on every sampled region's crop) is most of a step: the ResNet's 512-channel
stage costs about 59 M mult-adds per 7x7 crop, against about 0.3 G for the trunk below it per 128 px image.
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib.resources import files

import torch
from omegaconf import OmegaConf

from distill.models.detection import build_detector

DETECTORS = {"teacher (ResNet-10-T)": ("resnet", {"model_name": "resnet10t"}),
             "student (0.5 MobileNet)": ("mobilenet_v1", {"width_multiplier": 0.5})}


def recipe_options() -> dict:
    """The coco recipe's Faster R-CNN options (``detector.options``)."""
    path = files("distill.conf") / "detector" / "faster_rcnn.yaml"
    return dict(OmegaConf.to_container(OmegaConf.load(str(path)).options))


def parse_setting(text: str) -> tuple[int, int]:
    try:
        crop, regions = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is <crop>x<regions>, e.g. 7x16; got {text!r}") from None
    if crop < 1 or regions < 1:
        raise argparse.ArgumentTypeError(f"crop and regions must be positive, got {text!r}")
    return crop, regions


def batch(size: int, count: int, seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=generator) for _ in range(count)]
    targets = []
    for _ in range(count):
        boxes = int(torch.randint(1, 5, (1,), generator=generator))
        corner = torch.rand(boxes, 2, generator=generator) * size * 0.6
        side = (0.15 + 0.3 * torch.rand(boxes, 2, generator=generator)) * size
        targets.append({"boxes": torch.cat([corner, (corner + side).clamp(max=size)], 1),
                        "labels": torch.randint(1, 5, (boxes,), generator=generator)})
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=[(7, 16), (7, 8), (14, 64)])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images, targets = batch(args.resolution, args.batch_size)
    base = recipe_options()
    runs = {}
    for name, (backbone, kwargs) in DETECTORS.items():
        for crop, regions in args.settings:
            torch.manual_seed(0)
            options = {**base, "roi_output_size": crop, "box_batch_size_per_image": regions}
            model = build_detector("faster_rcnn", backbone=backbone, num_classes=4, size=args.resolution,
                                   backbone_kwargs=kwargs, options=options).train()
            runs[name, (crop, regions)] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), [])

    def step(model, optimizer) -> None:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for model, optimizer, _ in runs.values():
        for _ in range(args.warmup):
            step(model, optimizer)
    for _ in range(args.repeats):  # the settings take turns, so a slow minute touches them all
        for model, optimizer, seconds in runs.values():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, optimizer)
            seconds.append((time.perf_counter() - start) / args.steps)

    print(f"Faster R-CNN training step, batch {args.batch_size} at {args.resolution} px, {torch.get_num_threads()} "
          f"threads; median of {args.repeats} interleaved runs of {args.steps} steps\n")
    print("| detector | crop x regions | s / step (median) | range | speed-up |")
    print("|---|---|---|---|---|")
    for name in DETECTORS:
        first = statistics.median(runs[name, args.settings[0]][2])
        for crop, regions in args.settings:
            seconds = runs[name, (crop, regions)][2]
            median = statistics.median(seconds)
            print(f"| {name} | {crop}x{regions} | {median:.3f} | {min(seconds):.3f}-{max(seconds):.3f} "
                  f"| {first / median:.2f}x |")


if __name__ == "__main__":
    main()
