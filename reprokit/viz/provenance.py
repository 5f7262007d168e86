"""Provenance: every table or figure file gets ``<file>.provenance.json`` naming the runs it was built from
(run id, config hash, git commit, code version, stale flag, machine), the notebook and parameters that built
it, the code that built it, and when; and every caption or title carries a one-line note of the runs' code
versions, so an artefact mixing code versions, built from stale runs or from runs of several recorded
machines says so where it is read."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from reprokit.codeversion import code_version
from reprokit.engine.rundir import commit_label
from reprokit.runs.results import machine_counts


def run_records(runs: pd.DataFrame) -> list[dict]:
    cols = ["run_id", "path", "name", "config_hash", "git_commit", "git_dirty", "code_version", "stale", "machine",
            "seed"]
    if not len(runs):
        return []
    rows = runs.astype(object).to_dict("records")  # plain Python values (bool, int) for JSON
    return [{c: (None if pd.isna(r.get(c)) else r.get(c)) for c in cols} for r in rows]


def write_sidecars(outputs: list[Path], runs: pd.DataFrame, notebook: str | None = None,
                   parameters: dict | None = None) -> list[Path]:
    """One sidecar per output file; ``runs`` are the rows of the run table the artefact used."""
    record = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "notebook": notebook,
        "parameters": parameters or {},
        "code_version": code_version(),
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


def provenance_note(runs: pd.DataFrame) -> str:
    """One line for a caption or title: ``runs of commit abc1234`` when the runs share one code version,
    ``built from runs of N code versions (commits ...)`` when they do not, and the count of stale runs
    (code other than the current package's) whenever there are any; the machines when the runs name more
    than one, or name one and some runs name none (``results.machine_counts``)."""
    if not len(runs):
        return "no runs"
    commits = ", ".join(sorted({commit_label(c, d) for c, d in zip(runs["git_commit"], runs["git_dirty"])}))
    # methods run different parts of the code (codeversion.training_closure): mixed code is one method's runs
    # differing; current runs ran today's code, or code certified bit-identical to it, whatever digest they carry
    version = runs["code_version"].fillna("unknown").where(runs["stale"], "current")
    versions = runs.assign(v=version).groupby("method")["v"].nunique().max()
    plural = "s" if "," in commits else ""
    note = (f"runs of commit{plural} {commits}" if versions == 1
            else f"built from runs of {versions} code versions (commits {commits})")
    if runs["code_version"].isna().all():
        note += " (code version unknown)"
    stale = int(runs["stale"].sum())
    note += f"; {stale} stale run{'s' if stale != 1 else ''}" if stale else ""
    machines = machine_counts(runs)
    if len(machines) > 1:
        on = ", ".join(f"{n} on {m}" for m, n in machines.items())
        note += f"; runs of several machines ({on})"
    return note
