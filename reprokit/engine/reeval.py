"""Re-evaluate a finished (or interrupted) run from its checkpoint, e.g. with another eval mode."""
from __future__ import annotations

from pathlib import Path

import yaml

from reprokit.config import apply_overrides
from reprokit.configure import from_dict
from reprokit.data.datasets import SegDataset, class_names, resolve_splits
from reprokit.engine import rundir
from reprokit.engine.checkpoint import CheckpointError, check_written_by, load_checkpoint
from reprokit.engine.distributed import init_distributed
from reprokit.engine.evaluate import eval_summary, evaluate, protocol_file
from reprokit.engine.loop import show_progress
from reprokit.methods import build_method


def load_trained_method(run_dir: Path, overrides: list[str] | None = None):
    """(config, method with the checkpoint's weights) of a run directory."""
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.yaml)")
    raw = yaml.safe_load(cfg_file.read_text())
    base = from_dict(raw, str(cfg_file))
    cfg = from_dict(apply_overrides(raw, overrides or []), str(cfg_file))
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    check_written_by(ckpt, run_dir / "checkpoint.pt", base)
    method = build_method(cfg, cfg.data.num_classes)
    method.load_state_dict(ckpt["method"])
    return cfg, method


def evaluate_checkpoint(run_dir: Path, overrides: list[str] | None = None) -> tuple:
    """(config, eval summary) of a run's checkpoint evaluated by the current code; writes nothing."""
    cfg, method = load_trained_method(run_dir, overrides)
    dist = init_distributed(cfg.train.device)
    method.to(dist.device)
    splits = resolve_splits(cfg.data)
    result = evaluate(method.eval_network(), SegDataset(splits.val, cfg.data, train=False), cfg.eval,
                      cfg.eval_crop_size, cfg.data.num_classes, dist, progress=show_progress())
    return cfg, eval_summary(result, class_names(cfg.data), cfg.eval)


def reevaluate(run_dir: Path, overrides: list[str] | None = None) -> dict:
    """Only ``eval.*`` overrides make sense here; results go to eval.json (default settings) or
    eval-<mode>.json (anything else), so the original record is never overwritten."""
    bad = [o for o in overrides or [] if not o.startswith("eval.")]
    if bad:
        raise CheckpointError(f"reprokit eval accepts only eval.* overrides, got {bad[0]!r}")
    cfg, summary = evaluate_checkpoint(run_dir, overrides)
    name = "eval.json" if not overrides else protocol_file(cfg.eval)
    rundir.write_json_atomic(run_dir / name, summary)
    return summary
