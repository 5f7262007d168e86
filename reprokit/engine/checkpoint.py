"""Atomic, safe-to-load checkpoints holding everything exact resume needs."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from reprokit.records import TensorFileError, load_tensors, write_atomic

# The checkpoint format this version writes and reads. v2: the config hash is that of the resolved
# configuration, and an STPG memory bank holds its normalised copy. Earlier formats are refused by name.
FORMAT = "reprokit-checkpoint-v2"


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, foreign, or belongs to a different configuration."""


def save_atomic(obj, path: str | Path) -> Path:
    """``torch.save`` through :func:`reprokit.records.write_atomic`: a kill or a power loss never leaves half
    a checkpoint, and the previous one stays loadable until the new one is whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: str | Path) -> dict:
    """Load tensors only (:func:`reprokit.records.load_tensors`); anything that is not a reprokit checkpoint
    is a clear error."""
    path = Path(path)
    try:
        obj = load_tensors(path)
    except TensorFileError as exc:
        raise CheckpointError(str(exc)) from None
    found = obj.get("format") if isinstance(obj, dict) else None
    if isinstance(found, str) and found.startswith("reprokit-checkpoint-") and found != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {found!r} was written by another reprokit version; this "
                              f"one reads {FORMAT!r} only: train the run again, or use the version that wrote it")
    if found != FORMAT:
        raise CheckpointError(f"{path}: not a reprokit checkpoint (expected format {FORMAT!r})")
    return obj


def check_written_by(ckpt: dict, path: Path, cfg) -> None:
    """A checkpoint resumes or is evaluated only under the configuration it was written with."""
    if ckpt["config_hash"] != cfg.hash():
        raise CheckpointError(f"{path}: written by config {ckpt['config_hash']}, but the run's configuration has "
                              f"hash {cfg.hash()}")


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
