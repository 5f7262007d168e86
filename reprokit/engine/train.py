"""Training into a run directory: the engine's loop (:mod:`reprokit.engine.loop`) bound to the record it
writes there (:class:`reprokit.engine.rundir.RunRecord`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from reprokit.config import Config
from reprokit.engine.distributed import DistInfo
from reprokit.engine.loop import TrainingLoop
from reprokit.engine.rundir import RunRecord


class Trainer(TrainingLoop):
    """One training run in ``run_dir`` with its full record; rerunning on the same directory resumes."""

    def __init__(self, cfg: Config, run_dir: str | Path, dist: Optional[DistInfo] = None):
        super().__init__(cfg, run_dir, RunRecord(Path(run_dir), cfg), dist)


def train(cfg: Config, run_dir: str | Path) -> dict:
    """Train (or resume) and evaluate; returns the eval summary."""
    return Trainer(cfg, run_dir).fit()
