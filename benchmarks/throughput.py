"""Training throughput of one distillation step: MobileNetV1-1.0 student, FaceNet (InceptionResnetV1) teacher.

    python benchmarks/throughput.py --resolutions 96 160 --steps 5 --warmup 2 --batch-size 32

Three ways to run the same step, side by side in one process, on the same random images:

- ``lightning live``:   DistillationModule driven by a real pytorch_lightning.Trainer; the frozen teacher
                        runs forward on every batch;
- ``lightning cached``: the same, with the teacher's outputs read from a TeacherOutputCache built once
                        beforehand (its build time is reported on its own, not in the step rate);
- ``plain loop``:       the live step written as a plain PyTorch loop (same models, EmbeddingMSELoss,
                        AdamW and cosine schedule), the reference for the Lightning overhead.

Throughput is images per second over the ``--steps`` steps after ``--warmup`` steps, data loading included
(a DataLoader of dict batches {"image", "index", "view"} like the project's). With ``--repeats R`` every
mode runs R times, interleaved, and the best rate counts (other load on the machine only ever slows a run).
``--clock cpu`` rates by this process's CPU time instead of elapsed time: on a machine shared with other jobs
it measures the work of a step rather than the share of the cores the process got (use it with --threads 1).
Targets: cached >= 2x live at 96 px; Lightning live within 10% of the plain loop.

``--parts`` times the two halves of a live step on their own instead, NCHW and channels-last, interleaved:
the teacher's forward pass (no grad) and the student's training step (forward, backward, AdamW) on targets
computed beforehand. Their sum is a live step; ``1 + teacher / student`` is the most any teacher-output cache can
speed a step up by, the ceiling against which the ``lightning cached`` rate is read.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from distill.engine.cache import TeacherOutputCache
from distill.core.fingerprint import fingerprint
from distill.losses import EmbeddingMSELoss
from distill.models import create_student
from distill.models.teachers.facenet import EMBEDDING_DIM, build_facenet_teacher
from distill.core.schedules import cosine_with_warmup
from distill.engine.distillation import DistillationModule, parse_loss_terms
from distill.tasks import EmbeddingTask

MODES = ("lightning live", "lightning cached", "plain loop")
LOSS_TERMS = {"embedding_mse": {"weight": 1.0}}
EVAL_BATCH_SIZE = 64  # batch of the teacher forward passes that build the cache (the data modules' default)
CACHE_TARGET = 2.0  # cached / live at 96 px
OVERHEAD_TARGET = 0.90  # Lightning live / plain loop


def make_optimizer(params) -> torch.optim.Optimizer:
    """AdamW as in the facenet recipe (conf/recipe/facenet.yaml, conf/optimizer/adamw.yaml)."""
    return torch.optim.AdamW(params, lr=0.002, weight_decay=0.01)


class RandomImages(Dataset):
    """Fixed random images served as the project's training samples: {"image", "index", "view"}."""

    def __init__(self, num_samples: int, resolution: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(num_samples, 3, resolution, resolution, generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "index": torch.tensor(index), "view": torch.tensor(0)}


def make_loader(dataset: RandomImages, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True, num_workers=0)


def make_student(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_student("mobilenet_v1", width_multiplier=1.0, num_classes=EMBEDDING_DIM)


def make_module(teacher: torch.nn.Module, resolution: int) -> DistillationModule:
    return DistillationModule(
        make_student(), teacher, EmbeddingTask(), parse_loss_terms(LOSS_TERMS),
        optimizer=make_optimizer, scheduler="cosine",
        student_resolution=resolution, teacher_resolution=resolution,
    )


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class StepTimer(pl.Callback):
    """Time from the end of the last warm-up step to the end of the last step."""

    def __init__(self, warmup: int, clock) -> None:
        self.warmup = warmup
        self.clock = clock
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self.clock()
        if batch_idx == self.warmup - 1:
            self.start = now
        self.end = now


def run_lightning(module: DistillationModule, loader: DataLoader, warmup: int, steps: int, root: str, clock) -> float:
    """Seconds for ``steps`` training steps of a real Trainer (no logger, checkpoints or progress bar)."""
    timer = StepTimer(warmup, clock)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision="32-true", max_steps=warmup + steps, max_epochs=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=10, callbacks=[timer],
        default_root_dir=root,
    )
    trainer.fit(module, train_dataloaders=loader)
    if trainer.global_step != warmup + steps or timer.start is None:
        raise RuntimeError(f"Trainer ran {trainer.global_step} steps, expected {warmup + steps}")
    return timer.end - timer.start


def run_plain(teacher: torch.nn.Module, loader: DataLoader, warmup: int, steps: int, clock) -> float:
    """Seconds for ``steps`` steps of the live distillation step written without Lightning."""
    student = make_student().train()
    teacher.eval()
    loss_fn = EmbeddingMSELoss()
    optimizer = make_optimizer([p for p in student.parameters() if p.requires_grad])
    scheduler = cosine_with_warmup(optimizer, warmup + steps)
    start = None
    for step, batch in enumerate(loader):
        images = batch["image"]
        with torch.no_grad():
            target = teacher(images)
        loss = loss_fn(student(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step == warmup - 1:
            start = clock()
        if step == warmup + steps - 1:
            break
    return clock() - start


def build_cache(module: DistillationModule, dataset: RandomImages, root: str, clock) -> tuple[TeacherOutputCache, float]:
    """Teacher outputs of every sample, written to and loaded from a real TeacherOutputCache; (cache, seconds)."""
    count = len(dataset)
    key = fingerprint(benchmark="throughput", resolution=module.teacher_resolution, num_samples=count)
    cache = TeacherOutputCache(Path(root) / "teacher_outputs", key, count, num_views=1)

    def compute_view(view: int):
        for first in range(0, count, EVAL_BATCH_SIZE):
            indices = torch.arange(first, min(first + EVAL_BATCH_SIZE, count))
            yield indices, module.teacher_forward({"image": dataset.images[indices]})

    start = clock()
    cache.open_or_build(compute_view)
    return cache, clock() - start


def benchmark_resolution(teacher: torch.nn.Module, resolution: int, args: argparse.Namespace) -> dict:
    """Images per second of each mode at one resolution, and the cache build time."""
    dataset = RandomImages(args.batch_size * (args.warmup + args.steps), resolution)
    loader = make_loader(dataset, args.batch_size)
    images = args.batch_size * args.steps
    clock = CLOCKS[args.clock]
    best = {mode: 0.0 for mode in MODES}
    with tempfile.TemporaryDirectory() as root:
        cache, build_seconds = build_cache(make_module(teacher, resolution), dataset, root, clock)
        for _ in range(args.repeats):
            for mode in MODES:
                if mode == "plain loop":
                    seconds = run_plain(teacher, loader, args.warmup, args.steps, clock)
                else:
                    module = make_module(teacher, resolution)
                    module.teacher_cache = cache if mode == "lightning cached" else None
                    seconds = run_lightning(module, loader, args.warmup, args.steps, root, clock)
                best[mode] = max(best[mode], images / seconds)
                print(f"  {resolution:>4} px  {mode:<17} {images / seconds:8.1f} images per {args.clock} second",
                      flush=True)
    return {"rates": best, "cache_images": len(dataset), "cache_seconds": build_seconds}


PART_LAYOUTS = ("NCHW", "NHWC")


def time_parts(teacher: torch.nn.Module, resolution: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Median milliseconds per batch of the teacher's forward and of the student's step, in each memory format."""
    clock = CLOCKS[args.clock]
    images = RandomImages(args.batch_size, resolution).images
    with torch.no_grad():
        targets = teacher(images)
    samples: dict[str, dict[str, list[float]]] = {layout: {"teacher": [], "student": []} for layout in PART_LAYOUTS}
    for _ in range(args.repeats):
        for layout in PART_LAYOUTS:
            memory_format = torch.channels_last if layout == "NHWC" else torch.contiguous_format
            net = teacher.to(memory_format=memory_format)
            batch = images.contiguous(memory_format=memory_format)
            student = make_student().train().to(memory_format=memory_format)
            optimizer = make_optimizer(student.parameters())
            loss_fn = EmbeddingMSELoss()
            for step in range(args.warmup + args.steps):
                start = clock()
                with torch.no_grad():
                    net(batch)
                middle = clock()
                loss = loss_fn(student(batch), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                end = clock()
                if step >= args.warmup:
                    samples[layout]["teacher"].append(1000 * (middle - start))
                    samples[layout]["student"].append(1000 * (end - middle))
    teacher.to(memory_format=torch.contiguous_format)
    return {layout: {part: statistics.median(values) for part, values in parts.items()}
            for layout, parts in samples.items()}


def report_parts(results: dict[int, dict[str, dict[str, float]]], clock: str) -> list[str]:
    unit = "ms" if clock == "wall" else "CPU-ms"
    lines = [f"| resolution | layout | teacher forward ({unit}) | student step ({unit}) | cache ceiling |",
             "|---:|---|---:|---:|---:|"]
    for resolution, layouts in results.items():
        for layout, parts in layouts.items():
            ceiling = 1 + parts["teacher"] / parts["student"]
            lines.append(f"| {resolution} | {layout} | {parts['teacher']:.0f} | {parts['student']:.0f} | "
                         f"{ceiling:.2f}x |")
    return lines


def report(results: dict[int, dict], clock: str) -> list[str]:
    """The table and the target checks, as lines of text (Markdown table)."""
    unit = "img/s" if clock == "wall" else "img/CPU-s"
    lines = [f"| resolution | mode | {unit} | vs live |", "|---:|---|---:|---:|"]
    for resolution, result in results.items():
        rates = result["rates"]
        for mode in MODES:
            lines.append(f"| {resolution} | {mode} | {rates[mode]:.1f} | {rates[mode] / rates['lightning live']:.2f}x |")
    lines.append("")
    for resolution, result in results.items():
        build = result["cache_seconds"]
        lines.append(f"cache build at {resolution} px: {result['cache_images']} images in {build:.1f} {clock} s "
                     f"({result['cache_images'] / build:.1f} {unit}, teacher forward + write + checksum)")
    lines.append("")
    if 96 in results:
        rates = results[96]["rates"]
        ratio = rates["lightning cached"] / rates["lightning live"]
        verdict = "met" if ratio >= CACHE_TARGET else "MISSED"
        lines.append(f"target cached >= {CACHE_TARGET:g}x live at 96 px: cached / live = {ratio:.2f} -> {verdict}")
    for resolution, result in results.items():
        rates = result["rates"]
        ratio = rates["lightning live"] / rates["plain loop"]
        verdict = "met" if ratio >= OVERHEAD_TARGET else "MISSED"
        lines.append(f"target Lightning live within 10% of the plain loop at {resolution} px: "
                     f"live / plain = {ratio:.2f} -> {verdict}")
    return lines


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=positive_int, nargs="+", default=[96, 160])
    parser.add_argument("--steps", type=positive_int, default=5, help="timed steps per mode")
    parser.add_argument("--warmup", type=positive_int, default=2, help="untimed steps before them")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--repeats", type=positive_int, default=1, help="runs per mode; the best counts")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time (throughput); cpu: this process's CPU time, which other load on a "
                             "shared machine barely disturbs (use with --threads 1)")
    parser.add_argument("--parts", action="store_true",
                        help="time the teacher's forward and the student's step alone, NCHW and channels-last")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # the frozen teacher, by design
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    print(f"torch {torch.__version__}, pytorch_lightning {pl.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps, {args.repeats} repeat(s), "
          f"{args.clock} clock")

    teacher = build_facenet_teacher().eval()
    if args.parts:
        parts = {resolution: time_parts(teacher, resolution, args) for resolution in args.resolutions}
        print("\n".join(report_parts(parts, args.clock)))
        return
    results = {resolution: benchmark_resolution(teacher, resolution, args) for resolution in args.resolutions}
    print()
    print("\n".join(report(results, args.clock)))


if __name__ == "__main__":
    main()
