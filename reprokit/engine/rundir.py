"""The run directory: the single record of an experiment (config, provenance, metrics, evaluation)."""
from __future__ import annotations

import json
import math
import platform
import time
import warnings
from pathlib import Path

import torch
import yaml

import reprokit
from reprokit.codeversion import SCHEME, code_version
from reprokit.config import Config, ConfigError
from reprokit.configure import from_dict
from reprokit.data.check import check_before_training
from reprokit.data.datasets import Splits, record_splits
from reprokit.engine.checkpoint import load_checkpoint, save_atomic
from reprokit.records import git_commit, remove_stale_temps, write_json_atomic, write_text_atomic


def commit_label(commit: str | None, dirty: bool | None) -> str:
    """``abc1234``, ``abc1234+dirty`` (uncommitted changes on top), or ``unknown commit``: how messages and
    captions name the code of a run."""
    if not isinstance(commit, str) or not commit:
        return "unknown commit"
    return commit[:7] + ("+dirty" if dirty is True else "")


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
        "code_version": code_version(method=cfg.method_name, dataset=cfg.data.dataset),
        "code_version_scheme": SCHEME,
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


class RunRecord:
    """Everything a training run writes into its directory besides checkpoints: config.yaml (checked against
    an earlier start), meta.json at each stage, metrics.jsonl and TensorBoard events as steps are logged, and
    the evaluation files. The data are checked here too, before the directory is touched, so bad input leaves
    no trace. The loop (:class:`reprokit.engine.loop.TrainingLoop`) calls these on its main rank and never reads
    anything back, so record keeping cannot move a number."""

    def __init__(self, run_dir: Path, cfg: Config):
        self.run_dir, self.cfg = run_dir, cfg
        self._metrics = self._events = None

    def check_data(self, splits: Splits, progress: bool) -> None:
        check_before_training(splits, self.cfg.data, progress=progress)

    def prepare(self) -> None:
        prepare(self.run_dir, self.cfg)

    def started(self, start_step: int, splits: Splits, info: dict) -> None:
        """Training (re)starts at ``start_step``: metrics logged after it are dropped, the splits recorded."""
        truncate_metrics(self.run_dir / "metrics.jsonl", start_step)
        write_meta(self.run_dir, self.cfg, {
            "status": "running", **info, "split_family": splits.family, "labeled_count": len(splits.labeled),
            "unlabeled_count": len(splits.unlabeled), "splits": record_splits(splits, self.run_dir), "error": None})

    def saved(self, step: int, total: int) -> None:
        write_meta(self.run_dir, self.cfg, {"status": "running", "step": step, "total_steps": total})

    def failed(self, exc: BaseException) -> None:
        write_meta(self.run_dir, self.cfg, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})

    def open_log(self, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._events = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")

    def log(self, record: dict) -> None:
        """One logged step: a whole line of metrics.jsonl (flushed) and its finite scalars as events."""
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        for key, value in record.items():
            if key != "step" and math.isfinite(value):
                self._events.add_scalar(key, value, record["step"])

    def close_log(self) -> None:
        self._metrics.close()
        self._events.close()

    def finished(self, summary: dict, others: dict[str, dict], predictions: dict, total: int) -> None:
        """eval.json, the evaluations under other protocols (file name -> summary), the kept predictions."""
        write_json_atomic(self.run_dir / "eval.json", summary)
        for name, other in others.items():
            write_json_atomic(self.run_dir / name, other)
        if predictions:
            save_atomic(predictions, self.run_dir / "predictions.pt")
        write_meta(self.run_dir, self.cfg, {"status": "finished", "step": total, "miou": summary["miou"]})
