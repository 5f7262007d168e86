"""Mismatch scores (Eq. 5) on the device vs scikit-learn's confusion_matrix on the same predictions.

    .venv/bin/python benchmarks/bench_mismatch.py [--device cuda]

Both compute the 21x21 confusion matrix of two 8x512x512 label maps (the VOC paper setting); the
reprokit timing includes the scores themselves. Reports the median of several repeats and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.metrics import confusion_matrix

from reprokit.methods.stpg import mismatch_scores


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    student = torch.randint(0, args.classes, (8, 512, 512), generator=g)
    teacher = torch.where(torch.rand(8, 512, 512, generator=g) < 0.7, student,
                          torch.randint(0, args.classes, (8, 512, 512), generator=g))
    s_np, t_np = student.numpy().ravel(), teacher.numpy().ravel()
    s_dev, t_dev = student.to(args.device), teacher.to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def ours():
        mismatch_scores(s_dev, t_dev, args.classes)
        sync()

    ref = confusion_matrix(s_np, t_np, labels=np.arange(args.classes))
    m = ref.astype(np.float64)
    rows, cols, diag = m.sum(1), m.sum(0), np.diag(m)
    want = np.where(rows > 0, (rows - diag) / np.maximum(rows, 1), 0) + np.where(cols > 0, (cols - diag) / np.maximum(cols, 1), 0)
    assert np.allclose(mismatch_scores(s_dev, t_dev, args.classes).cpu().numpy(), want, atol=1e-6)
    t_ours = median_seconds(ours, args.repeats)
    t_sk = median_seconds(lambda: confusion_matrix(s_np, t_np, labels=np.arange(args.classes)), args.repeats)
    print(f"8x512x512, {args.classes} classes, device {args.device}")
    print(f"reprokit mismatch_scores: {t_ours * 1000:.1f} ms")
    print(f"sklearn confusion_matrix: {t_sk * 1000:.1f} ms")
    print(f"speed-up: {t_sk / t_ours:.1f}x")


if __name__ == "__main__":
    main()
