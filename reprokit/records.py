"""Writing the package's records: the commit of the code that wrote them, and JSON written atomically.

At the bottom of the layers (it imports nothing from reprokit) so that the run directory, the glyph
pretraining and the data builders can all record provenance the same way.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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


def write_json_atomic(path: Path, obj) -> None:
    """Temporary file + rename: a reader never sees half a file, even if the writer is killed."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
