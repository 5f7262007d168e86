"""Training into a run directory: the engine's loop (:mod:`reprokit.engine.loop`) bound to the record it
writes there (:class:`reprokit.engine.rundir.RunRecord`), as the directory's one writer."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from reprokit.config import Config
from reprokit.engine.distributed import DistInfo
from reprokit.engine.loop import TrainingLoop
from reprokit.engine.rundir import RunRecord, run_dir_lock


class Trainer(TrainingLoop):
    """One training run in ``run_dir`` with its full record; rerunning on the same directory resumes. A failed
    checkpoint write (a full disk) is one line naming the file, the filesystem, and the checkpoint kept."""

    def __init__(self, cfg: Config, run_dir: str | Path, dist: Optional[DistInfo] = None):
        super().__init__(cfg, run_dir, RunRecord(Path(run_dir), cfg), dist)

    def _save(self, step: int) -> None:
        needed = self.ckpt_path.stat().st_size if self.ckpt_path.is_file() else None  # the last one's size
        with self.record.writing(self.ckpt_path, needed):
            super()._save(step)


def train(cfg: Config, run_dir: str | Path) -> dict:
    """Train (or resume) and evaluate; returns the eval summary. The main process holds the run directory as its
    one writer throughout (:func:`reprokit.engine.rundir.run_dir_lock`): another writer stops at once, naming it."""
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun's other ranks write nothing of the record
        return Trainer(cfg, run_dir).fit()
    with run_dir_lock(run_dir, what=f"training {cfg.name}"):
        return Trainer(cfg, run_dir).fit()
