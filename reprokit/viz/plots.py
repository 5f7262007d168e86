"""Figures from run tables: per-class IoU bars (Fig. 6) and hyper-parameter curves (Fig. 8).
Every figure is saved as PNG and PDF."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; notebooks display the saved PNGs
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reprokit.runs.stats import mean_interval  # noqa: E402


def save_figure(fig, stem: Path, note: str | None = None) -> list[Path]:
    """``stem``.png and ``stem``.pdf; ``note`` (the runs' provenance) goes in small type above the figure."""
    if note:
        fig.suptitle(note, y=1.02, fontsize=7, color="dimgrey")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def class_iou(runs: pd.DataFrame, groups: dict[str, str], classes: list[str]) -> pd.DataFrame:
    """Mean IoU (percent) over seeds per (group label, class) and the half-width ``ci`` of its 95 % t-interval
    (0 below two seeds); ``groups`` maps labels to config names."""
    rows = []
    for label, name in groups.items():
        sel = runs[runs["name"] == name] if len(runs) else runs
        for c in classes:
            values = 100 * sel[f"iou/{c}"].astype(float) if len(sel) else pd.Series([], dtype=float)
            stats = mean_interval(values)
            rows.append({"group": label, "class": c, "mean": stats["mean"], "n": stats["n"],
                         "ci": 0.0 if np.isnan(stats["half_width"]) else stats["half_width"]})
    return pd.DataFrame(rows)


def grouped_bars(data: pd.DataFrame, title: str):
    """Fig. 6 style: one group of bars per class, one bar per method; error bars are the 95 % t-intervals
    of the mean over seeds (``ci``), so overlapping bars read as unresolved differences."""
    groups, classes = list(dict.fromkeys(data["group"])), list(dict.fromkeys(data["class"]))
    x, width = np.arange(len(classes)), 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(classes)), 3.6))
    for i, g in enumerate(groups):
        d = data[data["group"] == g].set_index("class").loc[classes]
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, d["mean"], width, yerr=d["ci"], capsize=2, label=g)
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylabel("IoU (%), mean over seeds\n± 95 % t-interval")
    ax.set_ylim(0, max(5.0, float(np.nanmax((data["mean"] + data["ci"]).to_numpy(), initial=0)) * 1.1))
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def hyper_curve(runs: pd.DataFrame, name: str, column: str, xlabel: str, paper: dict | None = None):
    """Fig. 8 style: mIoU (mean ± std over seeds) of the runs of config ``name`` against ``column``;
    ``paper`` ({x: mIoU}) adds the paper's reported points on a second axis for shape comparison."""
    sel = runs[runs["name"] == name] if len(runs) else runs
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    if len(sel):
        stats = (100 * sel.groupby(column)["miou"].agg(["mean", "std"])).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label="reprokit")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mIoU (%)")
    if paper:
        twin = ax.twinx()
        xs = sorted(paper)
        twin.plot(xs, [paper[k] for k in xs], "s--", color="grey", label="paper (right axis)")
        twin.set_ylabel("paper mIoU (%)", color="grey")
        twin.legend(loc="lower right", frameon=False)
    if len(sel):
        ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return fig
