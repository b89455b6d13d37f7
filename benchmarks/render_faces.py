"""Rendering the synthetic faces in one process or in several, side by side.

    python benchmarks/render_faces.py --count 2000 --size 96 --workers 1 2

The face recipes render their synthetic data once and keep it on disk; a first run pays for it. Each row renders
the same ``--count`` faces (the bytes are checked equal to the one-process rendering) and reports the best of
``--repeats`` wall times, including starting the worker processes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from distill.data.synthetic import faces as synthetic_faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    people = synthetic_faces.sample_identities(args.count, seed=0)
    index = np.arange(args.count)
    reference = None
    rows = []
    for workers in args.workers:
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            images, _ = synthetic_faces.render_faces(people, index, seed=0, size=args.size, workers=workers)
            best = min(best, time.perf_counter() - start)
        if reference is None:
            reference = images
        if images.tobytes() != reference.tobytes():
            raise SystemExit(f"workers={workers} rendered different bytes than workers={args.workers[0]}")
        rows.append((workers, best))

    print(f"{args.count} faces of {args.size} px")
    print("| workers | seconds | faces/s | speed-up |")
    print("|---|---|---|---|")
    for workers, seconds in rows:
        print(f"| {workers} | {seconds:.1f} | {args.count / seconds:.0f} | {rows[0][1] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
