"""The papers' reported numbers for every VOC / Cityscapes cell reprokit has a parameter file for, beside this
package's reproduction of each: a reader sees what the papers report and which of it has been rerun here.

``paper_cells.csv`` maps each runnable row of ``paper_numbers.csv`` (source, data set, method or table row,
split, backbone where the paper names several) to the file that runs it (a parameter file, or for Fig. 8b's
swept values the sweep file, with the value as ``set``) and, where it is not the file's own ``name``, the config
name its runs get (``name``: a sweep block's). A cell's reproduction is the mean ± std over the finished runs of
that config name (and value) under the runs folder: ``-`` until such a run exists.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd
import yaml

from reprokit.viz import tables


def paper_cells() -> pd.DataFrame:
    with resources.files("reprokit.viz").joinpath("paper_cells.csv").open() as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)


def config_name(path: str) -> str:
    """The ``name`` a parameter file gives its runs (each cell file sets its own)."""
    with open(path) as f:
        raw = yaml.safe_load(f)
    if not raw.get("name"):
        raise ValueError(f"{path}: a paper cell's parameter file must set name")
    return raw["name"]


def cell_runs(runs: pd.DataFrame, name: str, override: str) -> pd.DataFrame:
    """The runs of config ``name`` whose method parameter matches ``override`` (``method.key=value``, or none)."""
    if not len(runs):
        return runs
    sel = runs[runs["name"] == name]
    if override:
        key, value = override.split("=", 1)
        sel = sel[sel[key].astype(float) == float(value)] if key in sel else sel.iloc[:0]
    return sel


def paper_cells_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one line per cell: paper's mIoU, the command's parameter file, reprokit's mIoU and the delta; the runs
    used). Paper numbers come from paper_numbers.csv; a cell without its paper number there is refused."""
    paper = tables.paper_numbers()
    lines, used = [], []
    for cell in paper_cells().itertuples(index=False):
        ref = paper[(paper["source"] == cell.source) & (paper["dataset"] == cell.dataset)
                    & (paper["method"] == cell.method) & (paper["split"] == cell.split)]
        if cell.backbone:
            ref = ref[ref["backbone"] == cell.backbone]
        if len(ref) != 1:
            raise ValueError(f"paper_cells.csv: {cell.source} / {cell.dataset} / {cell.method} / {cell.split}: "
                             f"{len(ref)} rows in paper_numbers.csv, expected one")
        sel = cell_runs(runs, cell.name or config_name(cell.config), cell.set)
        used.append(sel)
        stats = tables.mean_std(sel["miou"]) if len(sel) else {"mean": float("nan"), "std": float("nan"), "n": 0}
        reported = float(ref["miou"].iloc[0])
        lines.append({"source": cell.source, "data set": cell.dataset, "method / row": cell.method,
                      "split": cell.split, "backbone": ref["backbone"].iloc[0], "paper": f"{reported:.2f}",
                      "reprokit": tables.fmt(**stats),
                      "delta": f"{stats['mean'] - reported:+.2f}" if stats["n"] else "-",
                      "run by": cell.config + (f" ({cell.set})" if cell.set else "")})
    used = [u for u in used if len(u)]
    return pd.DataFrame(lines), (pd.concat(used) if used else runs.iloc[:0])


ABLATION_SOURCES = ("Table 4", "Table 5", "Fig. 8b")


def compact(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison cells of :func:`paper_cells_table` (not the ablation rows of Tables 4-5 and Fig. 8b), one
    line per paper, data set, method and backbone, each split as ``split: paper (reprokit)``: the README's view."""
    main = table[~table["source"].isin(ABLATION_SOURCES)]
    lines = []
    for key, group in main.groupby(["source", "data set", "method / row", "backbone"], sort=False):
        cells = ", ".join(f"{r['split']}: {r['paper']} ({r['reprokit']})" for _, r in group.iterrows())
        lines.append(dict(zip(["source", "data set", "method", "backbone"], key), **{"paper (reprokit) by split": cells}))
    return pd.DataFrame(lines)
