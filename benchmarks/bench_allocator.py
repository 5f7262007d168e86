"""Training steps with tcmalloc preloaded against glibc's malloc, for each method of the main job.

    .venv/bin/python benchmarks/bench_allocator.py --steps 150        # the quick job's four cells

For each config, two training processes start at the same moment, one per allocator (reprokit.experiments.allocator),
and run the same steps of the same run (1 thread each, the unsupervised losses and all of STPG's phases on
from step 0); then the pair runs again, started in the other order. Both sides see the same machine load, so the ratio holds where the
absolute times do not. Each process also prints the logged losses, and the script fails unless both
allocators log the same values bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from reprokit.experiments.allocator import ENV_SWITCH, with_allocator

CONFIGS = ("params/digits/table4/stpg.yaml", "params/digits/table4/mt.yaml", "params/digits/fixmatch.yaml",
           "params/digits/table4/ls.yaml")
ALL_PHASES = {"stpg": ["method.bank_start=0", "method.contrastive_start=0", "method.proximity_start=0"]}
UNSUP_FROM_START = dict.fromkeys(("stpg", "mean_teacher", "fixmatch"), ["method.unsup_start=0"])


def worker(config: str, steps: int, warmup: int) -> None:
    """Train ``steps`` steps of ``config`` in a temporary run directory; print s/step after ``warmup``."""
    from reprokit.configure import load_config
    from reprokit.engine.train import Trainer

    overrides = ["train.threads=1", "train.iters=2000", "train.log_every=10", f"train.ckpt_every={10 * steps}"]
    method = load_config(config, overrides).method_name
    cfg = load_config(config, overrides + ALL_PHASES.get(method, []) + UNSUP_FROM_START.get(method, []))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        trainer._train_steps(True, warmup)
        trainer.start_step = warmup
        start = time.perf_counter()
        trainer._train_steps(True, steps)
        seconds = (time.perf_counter() - start) / (steps - warmup)
        losses = [json.loads(line)["loss"] for line in open(f"{run_dir}/metrics.jsonl")]
    print(json.dumps({"sec_per_step": seconds, "losses": losses}))


def pair(config: str, steps: int, warmup: int, order: tuple[str, str]) -> dict:
    """Both allocators at once on ``config``; {allocator: worker result}."""
    procs = {}
    for choice in order:
        env = with_allocator({**os.environ, ENV_SWITCH: choice})
        procs[choice] = subprocess.Popen([sys.executable, __file__, "--worker", config, str(steps), str(warmup)],
                                         env=env, stdout=subprocess.PIPE, text=True)
    out = {}
    for choice, proc in procs.items():
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{config} with {choice}: the worker failed (exit {proc.returncode})")
        out[choice] = json.loads(stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--worker", nargs=3, metavar=("CONFIG", "STEPS", "WARMUP"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return 0
    if with_allocator({ENV_SWITCH: "tcmalloc"}).get("LD_PRELOAD") is None:
        raise SystemExit("no tcmalloc on this machine (Debian: apt-get install libtcmalloc-minimal4)")
    print("| config | tcmalloc s/step | glibc s/step | glibc / tcmalloc | losses equal |")
    print("|---|---|---|---|---|")
    for config in args.configs:
        runs = [pair(config, args.steps, args.warmup, order) for order in (("tcmalloc", "system"),
                                                                            ("system", "tcmalloc"))]
        fast = sum(r["tcmalloc"]["sec_per_step"] for r in runs) / 2
        slow = sum(r["system"]["sec_per_step"] for r in runs) / 2
        equal = all(r["tcmalloc"]["losses"] == r["system"]["losses"] for r in runs)
        print(f"| {config} | {fast:.3f} | {slow:.3f} | {slow / fast:.2f}x | {'yes' if equal else 'NO'} |",
              flush=True)
        if not equal:
            raise SystemExit(f"{config}: the logged losses differ between the allocators")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
