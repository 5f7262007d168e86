"""The run directory: the single record of an experiment (config, provenance, metrics, evaluation)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch
import yaml

import reprokit
from reprokit.config import Config, ConfigError, from_dict


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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def prepare(run_dir: Path, cfg: Config) -> None:
    """Create the run directory, or check that an existing one holds the same configuration.

    Rerunning the same command resumes; a different configuration in the same directory is refused
    so no finished result is silently overwritten.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        old = from_dict(yaml.safe_load(cfg_file.read_text()), str(cfg_file))
        if old.hash() != cfg.hash():
            diff = _diff(old.to_dict(), cfg.to_dict())
            raise ConfigError(
                f"{run_dir} already holds a run with a different configuration (hash {old.hash()} != {cfg.hash()}; "
                f"differs in {', '.join(diff[:5])}); choose another --out or delete the directory")
        return
    cfg_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


def write_meta(run_dir: Path, cfg: Config, extra: dict) -> None:
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta.update({
        "run_id": run_dir.name,
        "config_hash": cfg.hash(),
        "method": cfg.method_name,
        "dataset": cfg.data.dataset,
        "seed": cfg.train.seed,
        "git": git_commit(),
        "reprokit_version": reprokit.__version__,
        "torch_version": torch.__version__,
        "host": platform.node(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    meta.update(extra)
    write_json_atomic(meta_path, meta)


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines logged after the checkpoint a resumed run restarts from."""
    if not path.is_file():
        return
    kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= last_step]
    path.write_text("".join(ln + "\n" for ln in kept))
