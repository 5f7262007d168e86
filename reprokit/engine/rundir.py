"""The run directory: the single record of an experiment (config, provenance, metrics, evaluation)."""
from __future__ import annotations

import functools
import hashlib
import json
import platform
import re
import subprocess
import time
import warnings
from pathlib import Path

import torch
import yaml

import reprokit
from reprokit.config import Config, ConfigError
from reprokit.configure import from_dict
from reprokit.engine.checkpoint import load_checkpoint
from reprokit.records import git_commit, remove_stale_temps, write_json_atomic, write_text_atomic


PACKAGE_DIR = Path(reprokit.__file__).resolve().parent
# The code that decides a run's numbers: configuration, data, models, methods, the engine and the metric.
# Tables, figures, sweeps and the inspector only read finished runs, so editing them leaves runs current.
TRAINING_CODE = ("__init__.py", "config.py", "configure.py", "labels.py", "metrics.py", "data/", "models/",
                 "methods/", "engine/")
# A method's module declares its registry entry on a line of its own, ``METHOD = MethodEntry("name", ...)``
# (reprokit.methods); the code version finds method modules and what they import by reading these lines, so
# it works the same on files in git that are never imported.
_METHOD_DECLARATION = re.compile(rb'^METHOD = MethodEntry\(\s*"(\w+)"', re.M)
_METHODS_IMPORT = re.compile(rb"^\s*(?:from|import) reprokit\.methods\.(\w+)", re.M)


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


def code_of_method(files: list[tuple[str, bytes]], method: str | None) -> list[tuple[str, bytes]]:
    """The training files a run of ``method`` executes: all of them except the modules of other methods that
    neither the shared code nor ``method``'s module imports (directly or through other method modules).

    So adding or editing one method leaves the runs of the others current. ``method`` None, or a tree whose
    methods do not declare themselves (commits before this scheme), keeps every file."""
    owners = {name.decode(): rel for rel, data in files for name in _METHOD_DECLARATION.findall(data)}
    if method is None or method not in owners:
        return files
    method_files = set(owners.values())
    by_module = {rel[len("methods/"):-len(".py")]: rel for rel, _ in files if rel.startswith("methods/")}
    contents = dict(files)
    todo = [rel for rel, _ in files if rel not in method_files] + [owners[method]]
    needed = set()
    while todo:
        rel = todo.pop()
        if rel not in needed:
            needed.add(rel)
            todo += [by_module[m.decode()] for m in _METHODS_IMPORT.findall(contents[rel])
                     if m.decode() in by_module]
    return [(rel, data) for rel, data in files if rel in needed]


def code_version(package_dir: str | Path | None = None, method: str | None = None) -> str:
    """Short digest of the package's training code (``TRAINING_CODE``) as it is on disk now; with ``method``,
    of the part a run of that method executes (:func:`code_of_method`).

    A git commit says nothing about uncommitted edits; this digest is exact for any tree, committed or not,
    so two runs with the same code version ran the same code."""
    root = Path(package_dir or PACKAGE_DIR)
    files = [(p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*") if p.is_file()]
    return _digest(code_of_method([(rel, data) for rel, data in files if _is_source(rel)], method))


@functools.lru_cache(maxsize=None)
def code_version_at(commit: str, package_dir: str | Path | None = None, method: str | None = None) -> str | None:
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
    return _digest(code_of_method(files, method))


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
    return code_version_at(git["commit"], method=meta.get("method"))


# The run record format (config.yaml, meta.json, metrics.jsonl, eval.json) this version writes, in meta.json's
# ``format``, and the formats it reads. Records from before the field existed read as format 1: the archived
# evidence in docs/runs is of that format and must keep loading.
RUN_FORMAT = 2
READABLE_RUN_FORMATS = (1, 2)


def record_format(meta: dict, meta_path: Path) -> int:
    """The format of a run record (1 when meta.json predates the field); a format this version cannot read
    is refused, naming it."""
    found = meta.get("format", 1)
    if found not in READABLE_RUN_FORMATS:
        raise RunDirError(f"{meta_path}: run record format {found!r}; this reprokit reads formats "
                          f"{', '.join(map(str, READABLE_RUN_FORMATS))}: use the version that wrote the run")
    return found


# files a trainer writes into its run directory, the first two only once training has produced something
RESULTS = ("checkpoint.pt", "eval.json")
OWN_FILES = RESULTS + ("config.yaml", "meta.json", "metrics.jsonl", "predictions.pt", "snapshots/step_*.pt")


class RunDirError(RuntimeError):
    """A run directory holds a damaged record that cannot be repaired without guessing; the message names it."""


class RunDirWarning(UserWarning):
    """A run directory was repaired on start (crash leftovers removed, a torn line dropped, a damaged record
    restored); the message says what was done."""


def prepare(run_dir: Path, cfg: Config) -> None:
    """Create the run directory, or check that an existing one may go on with ``cfg``.

    A run that has trained (it holds a checkpoint or an evaluation) continues only with its own configuration,
    so no result is silently overwritten or mixed with another's; rerunning the same command resumes. A run
    that never got that far (stopped by bad data, or before its first checkpoint) does not lock the directory:
    the new configuration replaces the old one. Once ``cfg`` is accepted, half-written files a crash left
    behind are removed.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_file, meta_file = run_dir / "config.yaml", run_dir / "meta.json"
    if meta_file.is_file():
        record_format(_read_meta(meta_file), meta_file)
    if cfg_file.is_file() and any((run_dir / name).is_file() for name in RESULTS):
        _check_same_config(run_dir, cfg)
    else:
        _write_config(cfg_file, cfg)
    stale = [p for name in OWN_FILES for p in remove_stale_temps(run_dir / name)]
    if stale:
        warnings.warn(f"{run_dir}: removed {len(stale)} half-written file(s) a crash left behind: "
                      f"{', '.join(str(p.relative_to(run_dir)) for p in stale)}", RunDirWarning, stacklevel=2)


def _read_meta(meta_file: Path) -> dict:
    """meta.json as a dict; a damaged one reads as empty (it is rewritten as training goes on)."""
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _write_config(cfg_file: Path, cfg: Config) -> None:
    write_text_atomic(cfg_file, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _check_same_config(run_dir: Path, cfg: Config) -> None:
    """Refuse ``cfg`` unless it is the run's own configuration. The checkpoint records the hash of the
    configuration it was written with, so a config.yaml that is damaged (or does not match its checkpoint)
    is restored when ``cfg`` is that configuration, and refused otherwise: nothing is guessed."""
    cfg_file, ckpt = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    try:
        stored, damage = from_dict(yaml.safe_load(cfg_file.read_text()), str(cfg_file)), None
    except (yaml.YAMLError, ConfigError) as exc:
        stored, damage = None, " ".join(str(exc).split())
    if stored is not None and stored.hash() == cfg.hash():
        return
    written_by = load_checkpoint(ckpt)["config_hash"] if ckpt.is_file() else None
    if written_by == cfg.hash():
        _write_config(cfg_file, cfg)
        warnings.warn(f"{cfg_file} {f'was damaged ({damage})' if damage else 'did not match its checkpoint'}; "
                      f"rewrote it with this configuration, the one {ckpt} was written with (hash {written_by})",
                      RunDirWarning, stacklevel=3)
        return
    if stored is None:
        raise RunDirError(
            f"{cfg_file} is damaged ({damage}), and this configuration (hash {cfg.hash()}) is not the one the run's "
            f"checkpoint was written with ({written_by or 'no checkpoint to tell'}): rerun with the run's own "
            f"configuration to restore the file and resume, or choose another --out")
    diff = _diff(stored.to_dict(), cfg.to_dict())
    raise ConfigError(
        f"{run_dir} already holds a run with a different configuration (hash {stored.hash()} != {cfg.hash()}; "
        f"differs in {', '.join(diff[:5])}); choose another --out or delete the directory")


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
        "format": RUN_FORMAT,
        "run_id": run_dir.name,
        "config_hash": cfg.hash(),
        "method": cfg.method_name,
        "dataset": cfg.data.dataset,
        "seed": cfg.train.seed,
        "git": git_commit(),
        "code_version": code_version(method=cfg.method_name),
        "reprokit_version": reprokit.__version__,
        "torch_version": torch.__version__,
        "host": platform.node(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    meta.update(extra)
    write_json_atomic(meta_path, meta)


def read_metrics(path: Path) -> tuple[list[dict], str]:
    """The records of a metrics.jsonl, and the text of a last line that a crash cut short ('' when none).

    Records are appended one line per write, so a kill can only leave the last line incomplete; a bad line
    anywhere else is damage from elsewhere and an error naming the file and line."""
    lines = path.read_text().split("\n")
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if lineno == len(lines):  # no newline after it: the append was cut short
                return records, line
            raise RunDirError(f"{path}:{lineno}: not a JSON record ({line[:60]!r}); metric lines are written "
                              f"whole, so this is damage from outside reprokit: repair or delete that line") from None
    return records, ""


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines logged after the checkpoint a resumed run restarts from, and a last line a crash
    cut short (with a warning naming it), so the file again holds one whole record per step."""
    if not path.is_file():
        return
    records, torn = read_metrics(path)
    if torn:
        warnings.warn(f"{path}: dropped an incomplete last line, left by a crash while it was written "
                      f"({len(torn)} characters: {torn[:40]!r}...)", RunDirWarning, stacklevel=2)
    kept = [r for r in records if r.get("step", 0) <= last_step]
    if torn or len(kept) < len(records):
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
