"""Training speed with conv weights stored NCHW (contiguous) or NHWC (``channels_last: true``), side by side.

    python benchmarks/memory_format.py --models mobilenet_v1 resnet18 --resolutions 40 64 --threads 2
    python benchmarks/memory_format.py --models ssd_mobilenet_v1_050 --resolutions 128 --batch-size 8   # coco's student

For each model and resolution, one plain training step (forward, a loss, backward, AdamW) on a batch of random
images, timed both ways in one process, interleaved ``--repeats`` times; the best rate of each counts (other
load only ever slows a run). Inputs stay NCHW, as the data loaders give them: converting the weights is the
whole of the ``channels_last`` option, and oneDNN picks the NHWC kernels from the weights.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch

from distill.models import create_student
from distill.models.detection import build_detector

# The coco recipe's default detector settings (conf/detector/ssd.yaml).
_SSD_OPTIONS = {"first_stride": 16, "min_scale": 0.15, "max_scale": 0.8, "head_kernel": 1}


def build(name: str, resolution: int) -> torch.nn.Module:
    if name.startswith("ssd_mobilenet_v1_"):  # e.g. ssd_mobilenet_v1_050: the coco recipe's student detector
        width = int(name.rsplit("_", 1)[1]) / 100
        return build_detector("ssd", backbone="mobilenet_v1", num_classes=4, size=resolution,
                              backbone_kwargs={"width_multiplier": width}, options=_SSD_OPTIONS)
    if name.startswith("mobilenet_v1"):
        return create_student("mobilenet_v1", num_classes=40, width_multiplier=1.0)
    return timm.create_model(name, num_classes=40)


def _loss(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A classifier's stand-in loss, or a detector's own box losses on one box per image."""
    if not getattr(model, "spec", None):
        return model(images).logsumexp(1).mean()
    side = images.shape[-1]
    targets = [{"boxes": torch.tensor([[side * 0.2, side * 0.2, side * 0.6, side * 0.7]]),
                "labels": torch.tensor([1])} for _ in images]
    return sum(model(list(images), targets).values())


def images_per_second(model: torch.nn.Module, images: torch.Tensor, steps: int, warmup: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss = _loss(model, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v1", "resnet18"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[40, 64])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print("| model | px | NCHW img/s | NHWC img/s | NHWC / NCHW |")
    print("|---|---|---|---|---|")
    for name in args.models:
        for resolution in args.resolutions:
            torch.manual_seed(0)
            images = torch.randn(args.batch_size, 3, resolution, resolution)
            if name.startswith("ssd_"):
                images = images.sigmoid()  # detectors take 0..1 images
            plain = build(name, resolution)
            nhwc = build(name, resolution)
            nhwc.load_state_dict(plain.state_dict())
            nhwc = nhwc.to(memory_format=torch.channels_last)
            best = {"plain": 0.0, "nhwc": 0.0}
            for _ in range(args.repeats):
                for key, model in (("plain", plain), ("nhwc", nhwc)):
                    best[key] = max(best[key], images_per_second(model, images, args.steps, args.warmup))
            print(f"| {name} | {resolution} | {best['plain']:.1f} | {best['nhwc']:.1f} | "
                  f"{best['nhwc'] / best['plain']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
