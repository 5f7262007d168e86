"""Step time of CW-BASS and FARCLUSS against Mean Teacher's, as ratios measured in one process.

    .venv/bin/python benchmarks/bench_new_methods.py --steps 40 --threads 1        # digits protocol (CPU)
    .venv/bin/python benchmarks/bench_new_methods.py --device cuda --paper          # VOC setting

Each contender is its digits params file (Mean Teacher, CW-BASS, FARCLUSS) built once and taken through whole
training steps: the method's step with every component on (burn-in and ramp over), backward, the optimiser step
and the EMA update, on the same synthetic batches. Steps go round the three methods in turn, so drift in machine
load hits all alike; the ratios are of medians.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from reprokit.configure import load_config
from reprokit.engine.optim import build_optimizer
from reprokit.methods import build_method

from bench_step import PAPER, batches, method_step  # the sibling script (benchmarks/ is the script's folder on sys.path)

CONFIGS = {"Mean Teacher": "params/digits/mean_teacher.yaml", "CW-BASS": "params/digits/cw_bass.yaml",
           "FARCLUSS": "params/digits/farcluss.yaml"}


def contender(config: str, overrides: list[str], device):
    cfg = load_config(config, overrides + ["method.unsup_start=0", "method.unsup_ramp=0"])
    torch.manual_seed(0)
    method = build_method(cfg, cfg.data.num_classes).to(device).train()
    method.set_total_steps(1)
    return cfg, method, build_optimizer(method.students(), cfg.optim)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--paper", action="store_true", help="VOC paper setting (ResNet-50, crop 512, batch 8)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    built = {name: contender(path, PAPER if args.paper else [], device) for name, path in CONFIGS.items()}
    cfg = built["Mean Teacher"][0]
    labeled, unlabeled = batches(cfg, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {name: [] for name in built}
    for step in range(args.steps + 3):
        for name, (_, method, opt) in built.items():
            sync()
            start = time.perf_counter()
            method_step(method, opt, labeled, unlabeled, step)
            sync()
            if step >= 3:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["Mean Teacher"])
    b = cfg.data.batch_size
    print(f"on {device}{' (paper setting)' if args.paper else ''}: batch {b} labeled + 2x{b} unlabeled, crop "
          f"{cfg.data.crop_size}, {cfg.model.backbone} width {cfg.model.width}, {args.threads} threads, "
          f"medians of {args.steps} steps")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>12}: {median * 1000:7.1f} ms/step   ratio to Mean Teacher {median / base:.3f}")


if __name__ == "__main__":
    main()
