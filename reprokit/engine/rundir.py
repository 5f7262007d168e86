"""The run directory: the single record of an experiment (config, provenance, metrics, evaluation)."""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import platform
import shutil
import socket
import time
from contextlib import contextmanager
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


class RunDirLocked(RunDirError):
    """Another live process is writing the run directory; the message names it (host, pid, since when)."""


class RunWriteError(RuntimeError):
    """Writing a checkpoint, metrics or a record failed (a full disk, most often); the one-line message names the
    file, the filesystem, the space needed, and the checkpoint a rerun resumes from."""


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
        self.resume_step = 0  # the step of the last checkpoint on disk, which a rerun resumes from

    @contextmanager
    def writing(self, path: Path, needed: int | None = None):
        """A write of ``path``: any failure becomes the one-line :class:`RunWriteError`."""
        try:
            yield
        except OSError as exc:
            raise write_failure(path, exc, self.resume_step, needed) from exc
        except RuntimeError as exc:
            if type(exc) is not RuntimeError:  # reprokit's own errors say what they mean; torch's writer raises this
                raise
            raise write_failure(path, exc, self.resume_step, needed) from exc

    def check_data(self, splits: Splits, progress: bool) -> None:
        check_before_training(splits, self.cfg.data, progress=progress)

    def prepare(self) -> None:
        prepare(self.run_dir, self.cfg)

    def started(self, start_step: int, splits: Splits, info: dict) -> None:
        """Training (re)starts at ``start_step``: metrics logged after it are dropped, the splits recorded."""
        self.resume_step = start_step
        with self.writing(self.run_dir / "metrics.jsonl"):
            truncate_metrics(self.run_dir / "metrics.jsonl", start_step)
        with self.writing(self.run_dir / "meta.json"):
            write_meta(self.run_dir, self.cfg, {
                "status": "running", **info, "split_family": splits.family, "labeled_count": len(splits.labeled),
                "unlabeled_count": len(splits.unlabeled), "splits": record_splits(splits, self.run_dir),
                "error": None})

    def saved(self, step: int, total: int) -> None:
        self.resume_step = step
        with self.writing(self.run_dir / "meta.json"):
            write_meta(self.run_dir, self.cfg, {"status": "running", "step": step, "total_steps": total})

    def failed(self, exc: BaseException) -> None:
        """The record says the run stopped, and why, where the disk still lets it (the error goes on up anyway)."""
        try:
            write_meta(self.run_dir, self.cfg, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        except OSError:
            pass

    def open_log(self, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._events = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")

    def log(self, record: dict) -> None:
        """One logged step: a whole line of metrics.jsonl (flushed; a line a failed write cut short is taken
        back) and its finite scalars as events."""
        end = self._metrics.tell()
        try:
            with self.writing(self.run_dir / "metrics.jsonl"):
                self._metrics.write(json.dumps(record) + "\n")
                self._metrics.flush()
        except RunWriteError:
            self._metrics.truncate(end)
            raise
        for key, value in record.items():
            if key != "step" and math.isfinite(value):
                self._events.add_scalar(key, value, record["step"])

    def close_log(self) -> None:
        self._metrics.close()
        self._events.close()

    def finished(self, summary: dict, others: dict[str, dict], predictions: dict, total: int) -> None:
        """eval.json, the evaluations under other protocols (file name -> summary), the kept predictions."""
        for name, result in {"eval.json": summary, **others}.items():
            with self.writing(self.run_dir / name):
                write_json_atomic(self.run_dir / name, result)
        if predictions:
            with self.writing(self.run_dir / "predictions.pt"):
                save_atomic(predictions, self.run_dir / "predictions.pt")
        with self.writing(self.run_dir / "meta.json"):
            write_meta(self.run_dir, self.cfg, {"status": "finished", "step": total, "miou": summary["miou"]})


# --- one writer per run directory --------------------------------------------------------------------------
LOCK_FILE = ".reprokit-lock"  # in the run directory: an OS lock held by its writer, and who that writer is
# filesystems whose flock is unsupported answer with one of these; then the holder named in the file decides
_NO_OS_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _holder(lock_path: Path) -> dict:
    try:
        found = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _ancestors() -> set[int]:
    """This process's parent, grandparent, ...: a sweep cell locks the run directory in its worker, and the
    training it starts (kernel, then ``reprokit train``) writes under that lock."""
    found, pid = set(), os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _describe(holder: dict) -> str:
    return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('since', '?')}"
            f"{', ' + holder['what'] if holder.get('what') else ''})")


def lock_holder(run_dir: str | Path) -> dict | None:
    """Who writes ``run_dir`` now (host, pid, since, what), or None when no live process does. Reads only."""
    lock_path = Path(run_dir) / LOCK_FILE
    if not lock_path.is_file():
        return None
    with open(lock_path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(lock_path) or {"pid": None}
        except OSError as exc:
            if exc.errno not in _NO_OS_LOCKS:
                raise
            holder = _holder(lock_path)
            return holder if holder.get("host") != socket.gethostname() or _alive(holder.get("pid")) else None
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextmanager
def run_dir_lock(run_dir: str | Path, what: str = "", wait: bool = False):
    """Hold ``run_dir`` as its one writer for the ``with`` block: an exclusive ``flock`` on its lock file,
    which the OS releases when the process dies, so a killed writer never blocks the next. Another live
    writer stops this one before anything in the directory is touched (:class:`RunDirLocked`, naming it),
    unless ``wait``, or unless it is an ancestor of this process (a sweep cell's worker holds the lock for the
    training it starts). Where the filesystem has no working ``flock`` (some network filesystems), the holder
    the lock file names decides: a live process on this host, or any process on another host, holds it."""
    run_dir = Path(run_dir)
    created = next((p for p in [*reversed(run_dir.parents), run_dir] if not p.exists()), None)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / LOCK_FILE
    new_lock = not lock_path.exists()
    fh = open(lock_path, "a+")
    try:
        if not _acquire(fh, lock_path, wait):
            yield  # an ancestor holds it for this process
            return
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "what": what}))
        fh.flush()
        try:
            yield
        except BaseException:
            if new_lock:  # a run stopped by bad input leaves no trace, not even its lock or folders
                lock_path.unlink(missing_ok=True)
                _remove_empty(run_dir, created)
            raise
        finally:
            fh.seek(0)
            fh.truncate()
    finally:
        fh.close()  # releases the OS lock


def _remove_empty(run_dir: Path, created: Path | None) -> None:
    """Remove the folders from ``run_dir`` up to ``created`` (the first one this process made) if empty."""
    if created is None:
        return
    for folder in [run_dir, *run_dir.parents]:
        if not folder.is_dir() or any(folder.iterdir()):
            return
        folder.rmdir()
        if folder == created:
            return


def _acquire(fh, lock_path: Path, wait: bool) -> bool:
    """True once this process holds the lock; False when an ancestor holds it; else RunDirLocked. A reader
    probing the lock (:func:`lock_holder`) holds it for an instant, so a busy lock is tried again for a second."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            holder = _holder(lock_path)
            if holder.get("host") == socket.gethostname() and holder.get("pid") in _ancestors():
                return False
            if time.monotonic() < deadline or not holder:
                time.sleep(0.05)
                continue
            raise RunDirLocked(f"{lock_path.parent} is being written by {_describe(holder)}; a run directory has "
                               f"one writer at a time: wait for it to finish, or choose another --out") from None
        except OSError as exc:
            if exc.errno not in _NO_OS_LOCKS:
                raise
            return _acquire_by_record(lock_path)


def _acquire_by_record(lock_path: Path) -> bool:
    """The fallback where ``flock`` does not work: the lock file's holder decides."""
    holder = _holder(lock_path)
    if holder.get("host") == socket.gethostname() and holder.get("pid") in _ancestors():
        return False
    if holder and (holder.get("host") != socket.gethostname() or _alive(holder.get("pid"))):
        raise RunDirLocked(
            f"{lock_path.parent} is being written by {_describe(holder)} (this filesystem has no working file "
            f"locks, so the holder named in {lock_path} decides; if that process is gone, delete the file)")
    return True


# --- writes that fail ----------------------------------------------------------------------------------------
def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def write_failure(path: Path, exc: BaseException, resume_step: int | None, needed: int | None) -> RunWriteError:
    """The one-line error for a failed write of ``path`` (torch reports a full disk during a checkpoint as
    "enforce fail at inline_container.cc ... unexpected pos", which names neither file nor cause)."""
    path = Path(path)
    folder = path.parent if path.parent.exists() else Path.cwd()
    free = shutil.disk_usage(folder).free
    full = getattr(exc, "errno", None) == errno.ENOSPC or (needed is not None and free < needed)
    what = (f"no space left on the filesystem at {_mount_point(folder)} ({free / 2**20:.1f} MiB free"
            + (f", this write needs about {needed / 2**20:.1f} MiB)" if needed else ")")
            if full else f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    resume = (f"the previous checkpoint (step {resume_step}) is intact and rerunning the same command resumes "
              f"from it" if resume_step else "no checkpoint had been written yet, so a rerun starts afresh")
    return RunWriteError(f"{path}: could not be written: {what}; {resume}")
