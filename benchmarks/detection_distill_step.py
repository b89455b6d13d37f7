"""Faster R-CNN distillation step time with and without box-head imitation, side by side.

    python benchmarks/detection_distill_step.py
    python benchmarks/detection_distill_step.py --repeats 5 --steps 4

The coco recipe's Faster R-CNN pair (ResNet-10-T teacher, 0.5 MobileNet student, 4 classes, 128 px, the options of
``conf/detector/faster_rcnn.yaml``) in one ``DistillationModule`` each way: the recipe's terms as its config resolves
them (``conf/loss/feature_imitation.yaml``: box losses, masked map imitation on the stride-16 and stride-8 maps, RPN
head imitation), and the same plus ``box_head_imitation`` at weight 1, which runs the teacher's box head on the
regions the student sampled. One step (the losses with the live teacher, backward) on a fixed batch of 8 images is
timed both ways in one process, the two taking turns ``--repeats`` times (``--steps`` steps each, after a warm-up).
The table gives the median seconds per step, the range, and the ratio to the first row.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from importlib.resources import files

import torch
from omegaconf import OmegaConf

from distill.engine.distillation import DistillationModule, parse_loss_terms
from distill.tasks import DetectionTask
from detector_step import batch as detector_batch  # the same fixed batch as the detector's own step (this folder)


def recipe_terms(detector: dict, box_head_weight: float | None) -> dict:
    """``loss=feature_imitation``'s terms as the coco recipe resolves them for ``detector`` (its yaml), with the
    box-head term at ``box_head_weight`` (None: off, the recipe's default)."""
    loss = OmegaConf.load(str(files("distill.conf") / "loss" / "feature_imitation.yaml"))
    detector = {**detector, "box_head_imitation_weight": box_head_weight}
    return OmegaConf.to_container(OmegaConf.merge({"detector": detector}, loss), resolve=True)["terms"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    detector = OmegaConf.to_container(OmegaConf.load(str(files("distill.conf") / "detector" / "faster_rcnn.yaml")))
    task = DetectionTask({"kind": "faster_rcnn", "options": detector["options"]})
    torch.manual_seed(0)
    student, _, _ = task.build_model({"_target_": "distill.models.MobileNetV1", "width_multiplier": 0.5},
                                     num_classes=4, resolution=args.resolution)
    teacher, _, _ = task.build_model({"_target_": "distill.models.teachers.timm_teacher.build_timm_teacher",
                                      "model_name": "resnet10t"}, num_classes=4, resolution=args.resolution)
    modules = {}
    for label, box_head_weight in (("recipe's terms", None), ("+ box_head_imitation", 1.0)):
        terms = recipe_terms(detector, box_head_weight)
        module = DistillationModule(student, teacher, task, parse_loss_terms(terms),
                                    optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
                                    student_resolution=args.resolution)
        module.log = lambda *_args, **_kwargs: None  # no Trainer attached
        modules[label] = module.train()
    batch = detector_batch(args.resolution, 8)

    def step(module: DistillationModule) -> float:
        started = time.perf_counter()
        sum(module.compute_losses(batch).values()).backward()
        module.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    for module in modules.values():
        step(module)  # warm-up
    times = {label: [] for label in modules}
    for _ in range(args.repeats):
        for label, module in modules.items():
            times[label].append(statistics.median(step(module) for _ in range(args.steps)))
    print(f"Faster R-CNN distillation step, batch 8 at {args.resolution} px, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats of {args.steps} steps")
    print("| terms | s/step (range) | ratio |")
    print("|---|---|---|")
    first = statistics.median(next(iter(times.values())))
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {median:.3f} ({min(values):.3f}-{max(values):.3f}) | {median / first:.2f}x |")


if __name__ == "__main__":
    main()
