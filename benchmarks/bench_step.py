"""Cost of one STPG step against the bare network passes it needs, in one process.

    .venv/bin/python benchmarks/bench_step.py                        # embedded default (CPU)
    .venv/bin/python benchmarks/bench_step.py --device cuda --paper  # VOC setting: ResNet-50, crop 512, batch 8

Bare passes: the same teacher forwards (no gradient; the bank teacher also sees the labeled batch), the
same two student forwards and backwards and the optimiser step, with a trivial loss and no method logic.
The STPG step adds CutMix, pseudo-labels, mismatch scores, selection, the weighted losses, prototypes,
matching, memory bank admission, both contrastive losses (all phases on, bank full) and the EMA updates.
Steps alternate between the two so drift in machine load hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from reprokit.configure import load_config
from reprokit.engine.ema import ema_update
from reprokit.engine.optim import build_optimizer
from reprokit.methods import build_method
from reprokit.methods.semi import split_forward

PAPER = ["data.crop_size=512", "data.batch_size=8", "data.num_classes=21", "model.backbone=resnet50",
         "model.width=64", "model.aspp_channels=256", "model.decoder_channels=256", "model.low_level_channels=48",
         "model.aspp_rates=[6,12,18]", "model.output_stride=16"]


def batches(cfg, device):
    b, s, c = cfg.data.batch_size, cfg.data.crop_size, cfg.data.num_classes
    g = torch.Generator().manual_seed(0)
    labeled = {"image": torch.randn(b, 3, s, s, generator=g), "mask": torch.randint(0, c, (b, s, s), generator=g)}
    unlabeled = {"image": torch.randn(2 * b, 3, s, s, generator=g), "image_s": torch.randn(2 * b, 3, s, s, generator=g),
                 "valid": torch.ones(2 * b, s, s, dtype=torch.bool)}
    move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
    return move(labeled), move(unlabeled)


def bare_step(m, opt, labeled, unlabeled):
    x_l, y_l = labeled["image"], labeled["mask"]
    b = x_l.shape[0]
    with torch.no_grad():
        m.gen_teacher(torch.cat([x_l, unlabeled["image"]]), return_features=True)
        m.pro_teacher(unlabeled["image"])
    x_s = unlabeled["image_s"][:b]
    gen = split_forward(m.gen_student, x_l, x_s, return_features=True)
    pro = split_forward(m.pro_student, x_l, x_s)
    loss = (F.cross_entropy(gen["logits"][:b], y_l) + F.cross_entropy(pro[:b], y_l)
            + gen["logits"][b:].mean() + pro[b:].mean() + gen["proj"].mean())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def method_step(m, opt, labeled, unlabeled, step):
    """One whole training step of method ``m``: its losses, backward, the optimiser step and its EMA updates."""
    out = m.training_step(labeled, unlabeled, step)
    opt.zero_grad(set_to_none=True)
    sum(out.losses.values()).backward()
    opt.step()
    for teacher, student, momentum in m.ema_pairs():
        ema_update(teacher, student, momentum)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="params/digits/stpg.yaml")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--paper", action="store_true", help="VOC paper setting (ResNet-50, crop 512, batch 8)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, (PAPER if args.paper else []) + ["method.phi=0.0"])
    device = torch.device(args.device)
    torch.manual_seed(0)
    m = build_method(cfg, cfg.data.num_classes).to(device)
    m.set_total_steps(1)  # every warm-up phase is over: the full method runs
    with torch.no_grad():  # a full memory bank, as late in training
        m.bank.bank.normal_()
        m.bank.unit.copy_(torch.nn.functional.normalize(m.bank.bank, dim=2))
        m.bank.count.fill_(m.params.bank_size)
    m.train()
    opt = build_optimizer(m.students(), cfg.optim)
    labeled, unlabeled = batches(cfg, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {"bare": [], "stpg": []}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps + 3):
        for name in ("bare", "stpg"):
            sync()
            start = time.perf_counter()
            bare_step(m, opt, labeled, unlabeled) if name == "bare" else method_step(m, opt, labeled, unlabeled, step)
            sync()
            if step >= 3:
                times[name].append(time.perf_counter() - start)
    bare, stpg = statistics.median(times["bare"]), statistics.median(times["stpg"])
    b = cfg.data.batch_size
    print(f"{args.config} on {device}{' (paper setting)' if args.paper else ''}: batch {b} labeled + 2x{b} unlabeled, "
          f"crop {cfg.data.crop_size}, {cfg.model.backbone} width {cfg.model.width}")
    print(f"bare passes: {bare * 1000:.1f} ms/step   STPG step: {stpg * 1000:.1f} ms/step   ratio {stpg / bare:.3f}")
    print(f"STPG throughput: {3 * b / stpg:.1f} images/s (labeled + unlabeled)")
    if device.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB")


if __name__ == "__main__":
    main()
