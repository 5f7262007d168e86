"""The package's records: the commit of the code that wrote them, files written atomically, and tensor
files loaded safely.

At the bottom of the layers (it imports nothing from reprokit) so that the run directory, the checkpoints,
the glyph pretraining and the data builders all record provenance, write and load files the same way.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
from pathlib import Path
from typing import BinaryIO, Callable

import reprokit


def git_commit(cwd: str | Path | None = None) -> dict:
    """Commit of the code that produced a run (and whether the tree had uncommitted changes)."""
    cwd = cwd or Path(reprokit.__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout
        return {"commit": sha.strip(), "dirty": bool(dirty.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def temp_path(path: Path) -> Path:
    """Where an atomic write of ``path`` stages its bytes: a hidden sibling named after the file and the
    writing process (``.checkpoint.pt.tmp1234``)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete what writes of ``path`` killed half-way left behind (its name may hold glob wildcards, e.g.
    ``step_*.pt``); returns the files removed. Call it only where no other process may be writing ``path``
    now, such as a run directory as its trainer starts."""
    stale = sorted(path.parent.glob(f".{path.name}.tmp*"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write through ``write(file)`` to a temporary file, fsync it, rename it over ``path``, fsync the folder.

    A reader sees the old file or the whole new one, never half of one, even if the writer is killed; and
    after a power loss the rename cannot survive without the bytes it points to."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda fh: fh.write(text.encode()))


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2))


class TensorFileError(ValueError):
    """A file that cannot be loaded as tensors: corrupt, not a PyTorch file, or refused for safety."""


def load_tensors(path: str | Path):
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only.

    A file holding other Python objects is refused, naming the first one, because unpickling it could run
    code; it is never retried unsafely, and PyTorch's hint to do so is not passed on."""
    import torch  # here, not at the top: the data builders use this module without needing torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise TensorFileError(
                f"{path}: holds Python objects other than tensors ({found.group(1)}); refused for safety, as loading "
                f"it could run code. Expected tensors only, as in a checkpoint written by reprokit") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(\n\n|$)", str(exc), re.S)
        reason = detail.group(1) if detail else "not a file of tensors"
        raise TensorFileError(f"{path}: corrupt or not a PyTorch checkpoint ({reason})") from None
    except Exception as exc:  # noqa: BLE001 - corrupt zip, truncated file, not a PyTorch file ...
        raise TensorFileError(f"{path}: corrupt or not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
