"""Provenance sidecars: every table or figure file gets ``<file>.provenance.json`` naming the runs it was
built from (run id, config hash, git commit), the notebook and parameters that built it, and when."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd


def run_records(runs: pd.DataFrame) -> list[dict]:
    cols = ["run_id", "path", "name", "config_hash", "git_commit", "seed"]
    if not len(runs):
        return []
    return [{c: (None if pd.isna(r.get(c)) else r.get(c)) for c in cols} for _, r in runs.iterrows()]


def write_sidecars(outputs: list[Path], runs: pd.DataFrame, notebook: str | None = None,
                   parameters: dict | None = None) -> list[Path]:
    """One sidecar per output file; ``runs`` are the rows of the run table the artefact used."""
    record = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "notebook": notebook,
        "parameters": parameters or {},
        "runs": run_records(runs),
    }
    sidecars = []
    for out in outputs:
        side = Path(f"{out}.provenance.json")
        side.write_text(json.dumps({"file": Path(out).name, **record}, indent=2, default=str))
        sidecars.append(side)
    return sidecars


def used_runs(runs: pd.DataFrame, names) -> pd.DataFrame:
    """The rows of ``runs`` whose config name is one of ``names``."""
    return runs[runs["name"].isin(list(names))] if len(runs) else runs
