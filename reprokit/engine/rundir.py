"""The run directory: the single record of an experiment (config, provenance, metrics, evaluation)."""
from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path

import torch
import yaml

import reprokit
from reprokit.config import Config, ConfigError, from_dict
from reprokit.records import git_commit, write_json_atomic


PACKAGE_DIR = Path(reprokit.__file__).resolve().parent
# The code that decides a run's numbers: configuration, data, models, methods, the engine and the metric.
# Tables, figures, sweeps and the inspector only read finished runs, so editing them leaves runs current.
TRAINING_CODE = ("__init__.py", "config.py", "metrics.py", "data/", "models/", "methods/", "engine/")


def _digest(files: list[tuple[str, bytes]]) -> str:
    """Digest of (relative path, bytes) pairs in path order: the same files give the same version wherever
    they are read from (the working tree or a git commit)."""
    h = hashlib.sha256()
    for rel, data in sorted(files):
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:12]


def _is_source(rel: str) -> bool:
    return rel.endswith(".py") and rel.startswith(TRAINING_CODE) and "__pycache__" not in rel.split("/")


def code_version(package_dir: str | Path | None = None) -> str:
    """Short digest of the package's training code (``TRAINING_CODE``) as it is on disk now.

    A git commit says nothing about uncommitted edits; this digest is exact for any tree, committed or not,
    so two runs with the same code version ran the same code."""
    root = Path(package_dir or PACKAGE_DIR)
    files = [(p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*") if p.is_file()]
    return _digest([(rel, data) for rel, data in files if _is_source(rel)])


@functools.lru_cache(maxsize=None)
def code_version_at(commit: str, package_dir: str | Path | None = None) -> str | None:
    """The code version of the package's files as stored in git ``commit`` (None when the repository
    lacks that commit); lets runs written before meta.json recorded a code version be compared."""
    cwd = Path(package_dir or PACKAGE_DIR)
    try:
        listing = subprocess.run(["git", "ls-tree", "-r", "-z", commit, "--", "."], cwd=cwd, capture_output=True,
                                 check=True).stdout.decode()
        blobs = [(entry.split("\t", 1)[1], entry.split()[2]) for entry in listing.split("\0")
                 if entry and entry.split()[1] == "blob"]
        blobs = [(rel, sha) for rel, sha in blobs if _is_source(rel)]
        data = subprocess.run(["git", "cat-file", "--batch"], cwd=cwd, capture_output=True, check=True,
                              input="".join(f"{sha}\n" for _, sha in blobs).encode()).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files, pos = [], 0
    for rel, _ in blobs:  # each answer: "<sha> blob <size>\n<content>\n"
        header_end = data.index(b"\n", pos)
        size = int(data[pos:header_end].split()[2])
        files.append((rel, data[header_end + 1:header_end + 1 + size]))
        pos = header_end + 1 + size + 1
    return _digest(files)


def commit_label(commit: str | None, dirty: bool | None) -> str:
    """``abc1234``, ``abc1234+dirty`` (uncommitted changes on top), or ``unknown commit``: how messages and
    captions name the code of a run."""
    if not isinstance(commit, str) or not commit:
        return "unknown commit"
    return commit[:7] + ("+dirty" if dirty is True else "")


def recorded_code_version(meta: dict) -> str | None:
    """The code version a run ran: recorded in its meta.json, or derived from its git commit for runs written
    before that field existed. A run of a tree with uncommitted changes cannot be derived (the commit is not
    what ran), so it stays unknown (None)."""
    if meta.get("code_version"):
        return meta["code_version"]
    git = meta.get("git") or {}
    if not git.get("commit") or git.get("dirty") is not False:
        return None
    return code_version_at(git["commit"])


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
        "code_version": code_version(),
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
