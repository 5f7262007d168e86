"""Shared fixtures: a small digit-scenes build and tiny configurations that train in seconds."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from reprokit.configure import from_dict
from reprokit.data.digits import DigitScenesSpec, build_digit_scenes

os.environ.setdefault("REPROKIT_PROGRESS", "0")


def _share_cores_among_workers() -> None:
    """Under pytest-xdist (`make test`), give each worker its share of the cores for torch's intra-op
    threads: every worker defaulting to all cores oversubscribes them, and OpenMP's spinning threads then
    slow the whole suite down. Runs that set ``train.threads`` still set their own."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


_share_cores_among_workers()
ROOT = Path(__file__).resolve().parents[1]
TINY_SPEC = DigitScenesSpec(n_train=48, n_val=12, size=32, min_scale=12, max_scale=20, min_digits=1, max_digits=3)


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    build_digit_scenes(root, TINY_SPEC)
    return root


def tiny_raw(root: Path, **sections) -> dict:
    """A plain config mapping for a seconds-long CPU run on the tiny digit scenes."""
    raw = {
        "name": "tiny",
        "method": {"name": "supervised"},
        "data": {"dataset": "digits", "root": str(root), "crop_size": 32, "batch_size": 4,
                 "labeled_fraction": 0.25, "scale_range": [0.75, 1.25]},
        "model": {"backbone": "resnet18", "width": 8, "aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8,
                  "aspp_rates": [1, 2, 3]},
        "optim": {"lr": 0.01},
        "train": {"iters": 6, "ckpt_every": 3, "log_every": 1, "threads": 1},
        "eval": {"batch_size": 12},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and key != "method":
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def step_batches(cfg, seed: int = 0) -> tuple[dict, dict]:
    """One labeled batch and one unlabeled batch of 2B (u0, u1) with strong views and hidden masks, as the
    engine makes them for a method that reads hidden masks. With weak labels (``data.label_kind``), the
    labeled batch is what the engine gives weakly supervised methods (simulated labels written first), with
    its images' masks as ``hidden_mask``."""
    from reprokit.data.datasets import SegDataset, collate, resolve_splits
    from reprokit.data.weak_source import ensure_weak_labels

    splits = resolve_splits(cfg.data)
    ensure_weak_labels(cfg.data, splits.labeled)
    lab = SegDataset(splits.labeled, cfg.data, train=True, hidden_truth=True)
    unl = SegDataset(splits.unlabeled, cfg.data, train=True, strong=True, masks="hidden")
    b = cfg.data.batch_size
    labeled = collate([lab[(i, seed + i)] for i in range(b)])
    unlabeled = collate([unl[(i, seed + 100 + i)] for i in range(2 * b)])
    return labeled, unlabeled


@pytest.fixture
def tiny_cfg(digits_root):
    def make(**sections):
        return from_dict(tiny_raw(digits_root, **sections))

    return make


def tree_digest(root: Path) -> dict[str, str]:
    """Every file (hidden ones included) and folder under ``root``, relative path -> sha256 of its bytes
    ('dir' for folders): equal digests before and after mean nothing on disk changed."""
    import hashlib

    root = Path(root)
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


class Crash(RuntimeError):
    """Raised inside a training step to stand for a killed process."""


def crash_and_rerun(raw: dict, run_dir: Path, monkeypatch, crash_step: int = 5) -> tuple[dict, dict, list[dict]]:
    """Train ``raw`` straight through, and again with a crash at step ``crash_step`` followed by a rerun
    (which resumes from the last checkpoint); returns both final method states and the rerun's metric records,
    so a test can require them to be equal (exact resume)."""
    import json

    from reprokit.engine.checkpoint import load_checkpoint
    from reprokit.engine.train import train
    from reprokit.methods import method_class

    cfg = from_dict(raw)
    train(cfg, run_dir / "straight")
    cls = method_class(cfg.method_name)
    original = cls.training_step

    def crashing(self, labeled, unlabeled, step):
        if step == crash_step:
            raise Crash
        return original(self, labeled, unlabeled, step)

    monkeypatch.setattr(cls, "training_step", crashing)
    with pytest.raises(Crash):
        train(from_dict(raw), run_dir / "crashed")
    monkeypatch.setattr(cls, "training_step", original)
    train(from_dict(raw), run_dir / "crashed")
    straight = load_checkpoint(run_dir / "straight" / "checkpoint.pt")["method"]
    rerun = load_checkpoint(run_dir / "crashed" / "checkpoint.pt")["method"]
    records = [json.loads(x) for x in (run_dir / "crashed" / "metrics.jsonl").read_text().splitlines()]
    return straight, rerun, records


def categories(method) -> list:
    """The category layers a method declares (label and heat layers have no names or colours of their own)."""
    from reprokit.methods.display import CategoryLayer

    return [layer for layer in method.inspector_layers if isinstance(layer, CategoryLayer)]
