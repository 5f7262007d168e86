"""Run directories -> one pandas DataFrame (tables and figures are built only from these)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from reprokit.codeversion import CodeVersions, record_version
from reprokit.engine.rundir import read_metrics, record_format
from reprokit.methods.stpg_equations import SELECTION_CATEGORIES
from reprokit.runs.origin import CELL_RECORD, machine_label, recorded_origin
from reprokit.runs.stats import format_difference, format_seed_differences, paired_difference


def load_run(run_dir: str | Path, versions: CodeVersions | None = None) -> dict:
    """One row: identity, provenance (git commit, dirty flag, code version and the scheme it was digested with,
    the machine a sweep ran it on; None where unknown), key settings, scalar method parameters
    (``method.<key>``), mIoU and per-class IoU (``iou/<class>``); with ``versions``, ``stale``: whether the run
    ran other code than today's package (:meth:`CodeVersions.is_current`, given the run's configuration, which
    partial certificates name)."""
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    meta = json.loads((run_dir / "meta.json").read_text()) if (run_dir / "meta.json").is_file() else {}
    record_format(meta, run_dir / "meta.json")
    ev = json.loads((run_dir / "eval.json").read_text())
    version = record_version(meta)
    row = {
        "run_id": run_dir.name, "path": str(run_dir), "name": cfg.get("name"), "method": cfg["method"]["name"],
        "dataset": cfg["data"]["dataset"], "backbone": cfg["model"]["backbone"], "seed": cfg["train"]["seed"],
        "labeled_fraction": cfg["data"].get("labeled_fraction"), "labeled_count": meta.get("labeled_count"),
        "split_family": meta.get("split_family"), "config_hash": meta.get("config_hash"),
        "git_commit": (meta.get("git") or {}).get("commit"), "git_dirty": (meta.get("git") or {}).get("dirty"),
        "code_version": version and version[1], "code_scheme": version and version[0],
        "machine": machine_label(recorded_origin(run_dir).get("machine")),
        "status": meta.get("status"), "miou": ev["miou"],
    }
    if versions is not None:
        row["standing"] = versions.standing(meta, cfg)
        row["stale"] = row["standing"] not in ("same code", "certified")
    row.update({f"method.{k}": v for k, v in cfg["method"].items() if isinstance(v, (int, float, str, bool))})
    row.update({f"iou/{k}": v for k, v in ev["iou"].items()})
    return row


NO_MACHINE = "a machine not recorded"


def machine_counts(runs: pd.DataFrame) -> pd.Series:
    """Runs per recorded machine, ``NO_MACHINE`` standing for the runs whose records name none. More than one
    entry means the runs mix machines (or cannot show they do not): another processor alone changes the
    numbers, so captions and ``reprokit results`` say so."""
    return runs["machine"].fillna(NO_MACHINE).value_counts().sort_index()


# ``reprokit sweep --rerun-stale`` keeps a stale run it retrains as ``<run id>.replaced-<time>``: the cell's run is
# the new one under the old name, so the kept one is neither counted nor archived.
REPLACED_MARK = ".replaced-"


def finished_runs(root: str | Path) -> list[Path]:
    """Every finished run directory (config.yaml and eval.json) under ``root``, recursively, in path order,
    leaving out the runs a sweep moved aside (``REPLACED_MARK``)."""
    root = Path(root)
    return [p.parent for p in sorted(root.rglob("eval.json")) if (p.parent / "config.yaml").is_file()
            and not any(REPLACED_MARK in part for part in p.parent.relative_to(root).parts)]


def load_runs(root: str | Path) -> pd.DataFrame:
    """Every finished run under ``root`` (:func:`finished_runs`) as one row each.

    ``stale`` is True for a run whose code version, digested the way its record was, is neither the current
    package's for its method and data set nor certified bit-identical to it (or is unknown): its numbers need
    not be what this code would give."""
    versions = CodeVersions()
    return pd.DataFrame([load_run(run, versions) for run in finished_runs(root)])


def summary_table(df: pd.DataFrame, by: list[str], value: str = "miou") -> pd.DataFrame:
    """Mean, std and count of ``value`` per group (std is NaN for a single seed), and how many of the group's
    runs are stale."""
    grouped = df.groupby(by, dropna=False)
    return grouped[value].agg(["mean", "std", "count"]).join(grouped["stale"].sum()).reset_index()


def compare_runs(runs: pd.DataFrame, reference: pd.DataFrame, value: str = "miou") -> pd.DataFrame:
    """The same cells run twice (same run id in two folders: two machines, two commits): per config name, the
    mean of ``value`` in each and the paired difference ``runs - reference`` over the seeds both have, with
    its 95 % t-interval and the per-seed differences. Cells in one folder only are left out."""
    if runs.empty or reference.empty:
        return pd.DataFrame()
    both = runs.merge(reference, on="run_id", suffixes=("", "_ref"))
    rows = []
    for name, group in both.groupby("name"):
        diff = paired_difference(group.set_index("seed")[value], group.set_index("seed")[f"{value}_ref"])
        rows.append({"name": name, "seeds": diff["n"], value: group[value].mean(),
                     f"{value}_reference": group[f"{value}_ref"].mean(), "difference": format_difference(diff, False),
                     "per seed": format_seed_differences(diff)})
    return pd.DataFrame(rows)


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a DataFrame (one row per logged step; a line still being written is left out)."""
    return pd.DataFrame(read_metrics(Path(run_dir, "metrics.jsonl"))[0])


def selection_summary(run_dirs, from_fraction: float = 0.5) -> pd.DataFrame:
    """STPG's selection diagnostics per run, averaged over the logged steps after ``from_fraction`` of
    training: share of pixels and pseudo-label accuracy for consistent / highly / low mismatched pixels."""
    rows = []
    for run in map(Path, run_dirs):
        m = load_metrics(run)
        late = m[m["step"] >= from_fraction * m["step"].max()]
        row = {"run_id": run.name}
        for cat in SELECTION_CATEGORIES:
            for kind in ("sel", "acc"):
                col = f"diag/{kind}/{cat}"
                row[f"{kind}/{cat}"] = late[col].mean() if col in late else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


ARCHIVED = ("config.yaml", "meta.json", "eval.json", "metrics.jsonl", CELL_RECORD, "splits/labeled.txt")


def archive_runs(root: str | Path, dest: str | Path) -> list[Path]:
    """Copy the small records of every finished run under ``root`` to ``dest/<run id>/`` (no checkpoints,
    notebooks or event files; evaluations under other protocols, ``eval-*.json``, included): enough for
    :func:`load_runs`, the tables and a check of every number quoted from them, small enough to commit. A run
    directory of the same name in ``dest`` is replaced; runs a sweep moved aside are not copied."""
    import shutil

    copied = []
    for run in finished_runs(root):
        target = Path(dest) / run.name
        if target.exists():
            shutil.rmtree(target)
        for name in [*ARCHIVED, *(p.name for p in sorted(run.glob("eval-*.json")))]:  # other eval protocols too
            if (run / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / name, target / name)
        copied.append(target)
    return copied
