"""Memory and speed of the training loader for a real image folder: in memory, streamed from files, LitData shards.

    python benchmarks/data.py                      # 50,000 256 px JPEGs in 100 classes (generated once, reused)
    python benchmarks/data.py --images 500 --batches 3 --student-steps 1   # a check that it runs
    python benchmarks/data.py --images 5000 --batches 100 --repeats 3 --loaders files draft   # JPEG draft decoding

The images are written once into ``--cache-dir`` (default: $DISTILL_CACHE_DIR or ~/.cache/distill, under
benchmarks/) as an ImageFolder (``<class>/<n>.jpg``), and packed once into LitData shards beside it
(``python -m distill.data.pack``). Each loader runs in a process of its own, so each peak RSS is its own:

- ``in memory``:   data.in_memory=true: every image decoded at set-up (the set-up time is reported apart);
- ``files, N w``:  data.in_memory=false, N DataLoader workers decoding, cropping and resizing the JPEGs;
- ``draft, N w``:  the same with data.fast_decode=true (a JPEG decoded at 1/2, 1/4 or 1/8 scale when that is still
  at least the decoded square: less to decode and to resize, slightly different pixels);
- ``litdata, N w``: data.format=litdata from the shards, N workers.

With ``--repeats R`` every loader runs R times, the loaders interleaved (all once, then all again), and a row gives
the median with the lowest and highest rate. A row gives the set-up time (listing, decoding for in memory), the train loader's images/s over ``--batches``
batches (after one untimed batch that starts the workers), and the peak RSS of the main process and of the largest
worker (``resource.getrusage``; a forked worker's RSS counts the pages it shares with the parent, so the two
columns overlap: the worker's own growth is its RSS less the parent's at the fork).
The student's training rate at the same resolution (MobileNetV1 forward, backward and AdamW on random images, one
process) is printed beside them: a loader that feeds at least that rate is not the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import PIL
from PIL import Image, features

from distill.core.paths import default_cache_dir
from distill.data.modules.fine_grained import ImageFolderDataModule
from distill.data.pack import pack
from distill.data.shards import read_pack
from distill.models import create_student

TEST_FRACTION = 0.1  # every 10th image of a class is a test image
LOADERS = ("memory", "files", "draft", "litdata")
DONE = "complete"  # <folder>.complete, written last: a folder without it is generated again


def generate(folder: Path, images: int, classes: int, size: int) -> None:
    """``images`` JPEGs of ``size`` px in ``classes`` folders: smooth colour fields with noise (JPEG sizes like
    photographs', not like flat colour). Deterministic, so a reused folder is the one this would write."""
    done = folder.with_name(f"{folder.name}.{DONE}")  # beside the folder: inside, it would be a file to skip
    if done.is_file():
        return
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    for index in range(images):
        label = index % classes
        base = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
        field = (base[0, 0] * (1 - ramp)[:, None, None] * (1 - ramp)[None, :, None]
                 + base[1, 1] * ramp[:, None, None] * ramp[None, :, None]
                 + base[0, 1] * (1 - ramp)[:, None, None] * ramp[None, :, None]
                 + base[1, 0] * ramp[:, None, None] * (1 - ramp)[None, :, None])
        pixels = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        path = folder / f"c{label:03d}" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)
        if (index + 1) % 5000 == 0:
            print(f"  generated {index + 1}/{images} images", flush=True)
    done.write_text(f"{images} images\n")


def _current_pack(folder: Path) -> bool:
    try:
        read_pack(folder)
    except (OSError, ValueError):
        return False
    return True


def data_overrides(args: argparse.Namespace, folder: Path) -> dict:
    return {"root": str(folder), "image_size": args.image_size, "resolution": args.resolution,
            "batch_size": args.batch_size, "test_fraction": TEST_FRACTION, "num_views": 2, "seed": 0}


def measure(args: argparse.Namespace) -> dict:
    """One loader (``--measure``): set-up time, images/s over the batches, peak RSS of this process and workers."""
    folder = Path(args.folder)
    options = data_overrides(args, folder)
    kind, workers = args.measure.split(":")
    if kind == "litdata":
        options.update(root=None, format="litdata", uri=str(Path(args.shards)), in_memory=False)
    else:
        options.update(in_memory=kind == "memory", fast_decode=kind == "draft")
    start = time.perf_counter()
    datamodule = ImageFolderDataModule(num_workers=int(workers), **options)
    datamodule.setup()
    setup_s = time.perf_counter() - start
    loader = datamodule.train_dataloader()
    batches = iter(loader)
    next(batches)  # starts the workers; not timed
    seen, start = 0, time.perf_counter()
    for _, batch in zip(range(args.batches), batches):
        seen += len(batch["image"])
    rate = seen / (time.perf_counter() - start)
    del batches
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"setup_s": setup_s, "images_per_s": rate, "rss_mb": own, "worker_rss_mb": children if int(workers) else 0}


def student_rate(resolution: int, batch_size: int, steps: int) -> float:
    """Images/s of MobileNetV1 training steps (forward, cross-entropy, backward, AdamW) on random images."""
    model = create_student("mobilenet_v1", num_classes=100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 3, resolution, resolution)
    labels = torch.randint(0, 100, (batch_size,))
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def _decoder() -> str:
    """The JPEG decoder Pillow was built with (the wheels bundle libjpeg-turbo)."""
    turbo = features.version_feature("libjpeg_turbo") if features.check_feature("libjpeg_turbo") else None
    return f"Pillow {PIL.__version__}, " + (f"libjpeg-turbo {turbo}" if turbo else "libjpeg (not libjpeg-turbo)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000, help="images in the generated folder")
    parser.add_argument("--classes", type=int, default=None, help="class folders (default: images / 50, <= 100)")
    parser.add_argument("--source-size", type=int, default=256, help="side of the generated JPEGs (px)")
    parser.add_argument("--image-size", type=int, default=128, help="data.image_size: the decoded square (px)")
    parser.add_argument("--resolution", type=int, default=96, help="data.resolution: the student's input (px)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=50, help="timed batches per loader")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts of the file loader")
    parser.add_argument("--student-steps", type=int, default=5, help="timed student steps (0: skip)")
    parser.add_argument("--loaders", nargs="+", default=["memory", "files", "litdata"], choices=LOADERS,
                        help="which loaders to run (draft: files with data.fast_decode=true)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every loader, interleaved (median shown)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # one loader, in a process of its own
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shards", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.classes = args.classes or max(2, min(100, args.images // 50))
    if args.measure:
        print(json.dumps(measure(args)))
        return

    root = default_cache_dir(args.cache_dir) / "benchmarks" / f"image_folder_{args.images}x{args.classes}_{args.source_size}px"
    folder, shards = root / "images", root / f"shards_{args.image_size}px"
    print(f"image folder: {folder}")
    generate(folder, args.images, args.classes, args.source_size)
    if shards.exists() and not _current_pack(shards):  # unfinished, or packed by an older version
        shutil.rmtree(shards)
    if not shards.exists():
        print(f"packing into {shards}")
        pack(["data=image_folder", f"data.root={folder}", f"data.image_size={args.image_size}",
              f"data.test_fraction={TEST_FRACTION}"], shards, verbose=False)
    runs = [("in memory", "memory:0") if kind == "memory" else (f"{kind}, {n} w", f"{kind}:{n}")
            for kind in args.loaders for n in ([0] if kind == "memory" else args.workers)]
    print(f"\n{args.images} images of {args.source_size} px, decoded to {args.image_size} px, served at "
          f"{args.resolution} px, batch {args.batch_size}, {args.batches} timed batches, {args.repeats} run(s) each; "
          f"{_decoder()}\n")
    rows: dict[str, list[dict]] = {name: [] for name, _ in runs}
    failed: dict[str, str] = {}
    for _ in range(args.repeats):  # interleaved: every loader once, then again
        for name, spec in runs:
            if name in failed:
                continue
            command = [sys.executable, __file__, "--measure", spec, "--folder", str(folder), "--shards",
                       str(shards), "--image-size", str(args.image_size), "--resolution", str(args.resolution),
                       "--batch-size", str(args.batch_size), "--batches", str(args.batches)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                failed[name] = str(result.stderr.strip().splitlines()[-1:])
                continue
            rows[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
    spread = args.repeats > 1
    print("| loader | set-up s | images/s" + (" (min-max)" if spread else "") + " | peak RSS MB | largest worker RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, _ in runs:
        if name in failed:
            print(f"| {name} | failed: {failed[name]} | | | |")
            continue
        measured = rows[name]
        rates = [row["images_per_s"] for row in measured]
        rate = f"{statistics.median(rates):.0f}" + (f" ({min(rates):.0f}-{max(rates):.0f})" if spread else "")
        print(f"| {name} | {statistics.median(row['setup_s'] for row in measured):.1f} | {rate} | "
              f"{max(row['rss_mb'] for row in measured):.0f} | {max(row['worker_rss_mb'] for row in measured):.0f} |",
              flush=True)
    if args.student_steps:
        rate = student_rate(args.resolution, args.batch_size, args.student_steps)
        print(f"\nstudent (MobileNetV1-1.0) training rate at {args.resolution} px: {rate:.0f} images/s "
              f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
