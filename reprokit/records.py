"""The package's records: the commit of the code and the machine that wrote them, files written atomically,
and tensor files loaded safely.

At the bottom of the layers (it imports nothing from reprokit) so that the run directory, the checkpoints,
the glyph pretraining and the data builders all record provenance, write and load files the same way.
"""
from __future__ import annotations

import json
import os
import pickle
import platform
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


# a sweep cell's record beside its run: parameters, outcome, and the machine it ran on
CELL_RECORD = "sweep-cell.json"


def machine_description() -> dict:
    """The processor (and GPU) this process computes on.

    The same code, configuration and seed give bit-identical numbers only on the same kind of processor: torch
    picks its floating-point kernels by instruction set (``cpu_capability``: AVX2, AVX512, ...), and the
    rounding differences they leave grow through training. A record that says where it ran tells a replay or
    a rerun that differs whether the code or the machine changed."""
    import torch

    return {"cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _cpu_model() -> str:
    """The processor's model name with its vendor's family and model numbers (a hypervisor may shorten the
    name to the brand alone), else what ``platform`` knows."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0]
                      .splitlines() if ":" in line)
    except OSError:
        fields = {}
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    ids = [f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields]
    return f"{fields['model name']} ({', '.join([fields.get('vendor_id', '?'), *ids])})"


def machine_label(machine: dict | None) -> str | None:
    """Short name of a :func:`machine_description` for tables, captions and verdicts (None for None)."""
    if not machine:
        return None
    return f"{machine.get('cpu')}, {machine.get('cpu_capability')}" + (f", {machine['gpu']}" if machine.get("gpu")
                                                                      else "")


def recorded_machine(run_dir: str | Path) -> dict | None:
    """The machine a sweep cell ran on, from its :data:`CELL_RECORD`; None for a run outside a sweep or one
    recorded before cells named their machine."""
    try:
        return json.loads((Path(run_dir) / CELL_RECORD).read_text()).get("machine")
    except (OSError, ValueError, AttributeError):
        return None


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
