"""Device check before the first paper-scale run: one command that, on one GPU in a few minutes, measures the STPG
training step at the VOC paper setting and extrapolates what a Table 2 cell costs.

    .venv/bin/python benchmarks/gpu_check.py [--out gpu_check.json]      # on a GPU: the paper setting
    .venv/bin/python benchmarks/gpu_check.py --tiny                        # on a CPU: the same path, tiny

The device machine reaches no network, so the check brings its own data and weights: a synthetic tree in
VOC's augmented layout (random images and masks, ``JPEGImages``, ``SegmentationClassAug``,
``ImageSets/Segmentation``) and randomly initialised networks (``model.pretrained: none``); the arithmetic per
step is the paper cell's (DeepLabV3+ ResNet-50, crop 512, 8 labeled + 2 x 8 unlabeled images, bf16 autocast).
It trains ``params/voc/blended/stpg_1_8.yaml`` for a few steps through the ordinary trainer (data loading,
AMP, EMA and logging included) and reports:

- seconds per step and steps per second (median of the logged steps after the warm-up);
- peak GPU memory (``torch.cuda.max_memory_allocated``; the process's peak resident memory on a CPU);
- the floating-point operations of one step (``torch.utils.flop_counter``, counted on the device), and the
  achieved FLOP/s = that count / the median step time;
- the GPU-hours of the Table 2 1/8 cell: its iterations (``train.total_iterations`` with 1323 labeled and
  9259 unlabeled images, one process) x the median step time. An estimate: evaluation and checkpoints are
  left out, and the real data's decoding may cost more than the synthetic tree's;
- a 2-process ``torchrun`` run of a few steps on the same device, if the machine allows it (NCCL refuses
  two ranks on one GPU in many versions; the result says what happened).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CONFIG = "params/voc/blended/stpg_1_8.yaml"
# the Table 2 1/8 cell: 1323 of the 10582 augmented training images labeled
TABLE2_LABELED, TABLE2_UNLABELED = 1323, 10582 - 1323
TINY = ["data.crop_size=64", "data.batch_size=2", "model.backbone=resnet18", "model.width=16", "model.aspp_channels=32",
        "model.decoder_channels=32", "model.low_level_channels=16", "model.proj_dim=16", "eval.crop_size=64",
        "train.amp=none", "data.scale_choices=[1.0]"]


def write_voc_tree(root: Path, images: int, size: tuple[int, int], classes: int = 21, seed: int = 0) -> Path:
    """A synthetic tree in VOC's augmented layout: ``images`` random JPEGs of ``size`` (w, h) with masks of
    random rectangles of random classes on background, a ``train_aug`` list of all but two and a ``val`` list
    of those two."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClassAug").mkdir(exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    w, h = size
    ids = [f"2007_{i:06d}" for i in range(images)]
    for sid in ids:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{sid}.jpg")
        mask = np.zeros((h, w), np.uint8)
        for _ in range(3):
            x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
            mask[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(1, classes)
        Image.fromarray(mask).save(root / "SegmentationClassAug" / f"{sid}.png")
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(ids[2:]) + "\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[:2]) + "\n")
    return root


def overrides(root: Path, steps: int, tiny: bool) -> list[str]:
    return [f"data.root={root}", "model.pretrained=none", "train.epochs=null", f"train.iters={steps}", "train.log_every=1",
            f"train.ckpt_every={steps}", "data.num_workers=2", *(TINY if tiny else [])]


def step_flops(cfg, device: torch.device) -> int:
    """Floating-point operations of one STPG training step (forward, backward, optimiser) on random batches of
    the configured shape, counted by torch's FLOP counter (matrix products and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    from reprokit.engine.optim import build_optimizer
    from reprokit.methods import build_method

    b, s, c = cfg.data.batch_size, cfg.data.crop_size, cfg.data.num_classes
    labeled = {"image": torch.randn(b, 3, s, s), "mask": torch.randint(0, c, (b, s, s))}
    unlabeled = {"image": torch.randn(2 * b, 3, s, s), "image_s": torch.randn(2 * b, 3, s, s),
                 "valid": torch.ones(2 * b, s, s, dtype=torch.bool)}
    labeled, unlabeled = ({k: v.to(device) for k, v in d.items()} for d in (labeled, unlabeled))
    method = build_method(cfg, c).to(device)
    method.set_total_steps(10)
    opt = build_optimizer(method.students(), cfg.optim)
    with FlopCounterMode(display=False) as counter:
        out = method.training_step(labeled, unlabeled, 5)
        sum(out.losses.values()).backward()
        opt.step()
    return int(counter.get_total_flops())


def torchrun_check(root: Path, work: Path, tiny: bool, timeout: int) -> dict:
    """A 2-process torchrun of ``reprokit train`` for 3 steps on this machine's device."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reprokit.cli",
           "train", "--config", CONFIG, "--out", str(work / "torchrun"),
           *(a for o in overrides(root, 3, tiny) for a in ("--set", o)), "--set", "data.num_workers=0"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return {"ok": False, "seconds": timeout, "tail": f"stopped after {timeout} s"}
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
    return {"ok": proc.returncode == 0, "returncode": proc.returncode,
            "seconds": round(time.perf_counter() - start, 1), "tail": "\n".join(tail)}


def run_check(work: Path, tiny: bool, steps: int, warmup: int, torchrun: bool, torchrun_timeout: int = 240) -> dict:
    from reprokit.configure import load_config
    from reprokit.engine.rundir import read_metrics
    from reprokit.engine.loop import total_iterations
    from reprokit.engine.train import Trainer
    from reprokit.machine import machine_description
    from reprokit.runs.origin import machine_label

    root = write_voc_tree(work / "VOC2012", 16 if tiny else 64, (80, 60) if tiny else (500, 375))
    cfg = load_config(CONFIG, overrides(root, steps, tiny))
    trainer = Trainer(cfg, work / "run")
    device = trainer.dist.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - start
    logged = [r["sec_per_iter"] for r in read_metrics(work / "run" / "metrics.jsonl")[0]
              if isinstance(r.get("sec_per_iter"), (int, float))]
    measured = logged[warmup:] or logged
    step = statistics.median(measured)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    flops = step_flops(cfg, device)
    paper_cfg = load_config(CONFIG)
    iters = total_iterations(paper_cfg, TABLE2_LABELED, TABLE2_UNLABELED, 1)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else machine_label(machine_description()),
        "size": "tiny" if tiny else "paper (ResNet-50, crop 512, 8 + 2 x 8 images, bf16)",
        "steps": steps, "steps_measured": len(measured), "seconds_per_step": round(step, 4),
        "steps_per_second": round(1 / step, 3), "peak_memory_gib": round(peak / 2**30, 3),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "flops_per_step": flops, "achieved_tflops": round(flops / step / 1e12, 3),
        "table2_cell_iterations": iters, "table2_cell_gpu_hours_estimate": round(iters * step / 3600, 2),
        "train_wall_seconds": round(wall, 1),
    }
    if torchrun:
        result["torchrun_2_processes"] = torchrun_check(root, work, tiny, torchrun_timeout)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="a tiny model and crop: the CPU path of the test suite")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 30; tiny 4)")
    ap.add_argument("--warmup", type=int, default=None, help="logged steps left out of the median (default 5; tiny 1)")
    ap.add_argument("--no-torchrun", action="store_true", help="skip the 2-process torchrun run")
    ap.add_argument("--out", default="gpu_check.json", help="where the JSON result is written")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args(argv)
    steps = args.steps or (4 if args.tiny else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_check(Path(args.work or tmp), args.tiny, steps, warmup, not args.no_torchrun)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
