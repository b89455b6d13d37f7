"""Detector inference (what evaluation runs) with conv weights and inputs NCHW or NHWC, side by side.

    python benchmarks/detector_eval.py                          # Faster R-CNN, the coco recipe's teacher and student
    python benchmarks/detector_eval.py --kind ssd --repeats 5

For the recipe's two detectors (the ResNet-10-T teacher and the 0.5 MobileNet student, 4 classes, 128 px, every
option of ``conf/detector/<kind>.yaml``) one eval-mode forward (resize, network, box decoding, NMS; Faster R-CNN:
the box head on 300 proposals per image) over a batch of ``--batch-size`` images is timed in both layouts, in one
process, the layouts taking turns ``--repeats`` times after a warm-up. NHWC is what ``evaluate_detector`` uses on a
CPU (``distill.tasks.detection.nhwc_on_cpu``: the weights converted, and the backbone's input). The weights are
random: the work per image is fixed by the options (1000 anchors kept before NMS, 300 proposals after it), not by
what the detector has learnt. The table gives the median seconds per batch, the range, and NCHW's median over
NHWC's.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from importlib.resources import files

import torch
from omegaconf import OmegaConf

from distill.models.detection import build_detector
from distill.tasks.detection import nhwc_on_cpu

DETECTORS = {"teacher (ResNet-10-T)": ("resnet", {"model_name": "resnet10t"}),
             "student (0.5 MobileNet)": ("mobilenet_v1", {"width_multiplier": 0.5})}


def recipe_options(kind: str) -> dict:
    path = files("distill.conf") / "detector" / f"{kind}.yaml"
    return dict(OmegaConf.to_container(OmegaConf.load(str(path)).options))


@torch.no_grad()
def seconds(detector: torch.nn.Module, images: list[torch.Tensor], nhwc: bool) -> float:
    with nhwc_on_cpu(detector) if nhwc else contextlib.nullcontext():
        started = time.perf_counter()
        detector(images)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["faster_rcnn", "ssd"], default="faster_rcnn")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, args.resolution, args.resolution, generator=generator) for _ in range(args.batch_size)]
    print(f"{args.kind}, {args.batch_size} images at {args.resolution} px, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats after a warm-up")
    print("| detector | NCHW s/batch (range) | NHWC s/batch (range) | NCHW / NHWC |")
    print("|---|---|---|---|")
    for label, (backbone, kwargs) in DETECTORS.items():
        torch.manual_seed(0)
        detector = build_detector(args.kind, backbone=backbone, num_classes=4, size=args.resolution,
                                  backbone_kwargs=kwargs, options=recipe_options(args.kind)).eval()
        times: dict[bool, list[float]] = {False: [], True: []}
        for nhwc in (False, True):
            seconds(detector, images, nhwc)  # warm-up: oneDNN builds its kernels per layout
        for _ in range(args.repeats):
            for nhwc in (False, True):
                times[nhwc].append(seconds(detector, images, nhwc))
        nchw, nhwc = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {label} | {nchw:.2f} ({min(times[False]):.2f}-{max(times[False]):.2f}) | "
              f"{nhwc:.2f} ({min(times[True]):.2f}-{max(times[True]):.2f}) | {nchw / nhwc:.2f}x |")


if __name__ == "__main__":
    main()
