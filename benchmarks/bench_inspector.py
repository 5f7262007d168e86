"""Update times of the pseudo-label inspector on this CPU: a layer toggle (display only, cached forward
pass) against a new image batch (one network pass), median of several repeats.

    .venv/bin/python benchmarks/bench_inspector.py runs/full/digits-table4-stpg-s0
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from reprokit.inspect import PseudoLabelInspector


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    insp = PseudoLabelInspector.from_run(args.run_dir, export_dir="/tmp/reprokit-bench")
    toggle, new_image = [], []
    batch = insp.cache.batch_size
    for r in range(args.repeats):
        start = time.perf_counter()
        insp.layers["confidence"].value = not insp.layers["confidence"].value
        toggle.append(time.perf_counter() - start)
        start = time.perf_counter()
        insp.index.value = (r + 1) * batch  # first image of a batch not seen yet: one forward pass
        new_image.append(time.perf_counter() - start)
    t, n = statistics.median(toggle), statistics.median(new_image)
    print(f"{args.run_dir}: {insp.current().image.shape[:2]} images, batch {batch}, {args.threads} threads")
    print(f"layer toggle: {1000 * t:.1f} ms   new image (network pass): {1000 * n:.1f} ms   ratio {n / t:.1f}x")
    print(f"forward passes: {insp.cache.forward_passes} for {args.repeats} new images and {args.repeats} toggles")


if __name__ == "__main__":
    main()
