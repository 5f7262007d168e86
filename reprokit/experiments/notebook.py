"""What the notebooks call: training in a child process (so a long run survives a dying kernel and
multi-GPU cells can use torchrun), run summaries, and display helpers. Notebooks stay thin."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd


class TrainingFailed(RuntimeError):
    """The training process exited with an error; the message holds the end of its output."""


def train_command(config: str, overrides: list[str], run_dir: str, nproc: int = 1) -> list[str]:
    sets = [arg for o in overrides for arg in ("--set", o)]
    launcher = [sys.executable, "-m", "reprokit.cli"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", "reprokit.cli"]
    return [*launcher, "train", "--config", config, "--out", run_dir, *sets]


def train_in_subprocess(config: str, overrides: list[str] | None, run_dir: str, nproc: int = 1,
                        env: dict | None = None, cwd: str | Path | None = None) -> dict:
    """Train (or resume, or find finished) the run in a child process, echoing its output; returns eval.json.

    The child owns the run: if the kernel dies, rerunning the cell resumes from the last checkpoint. It runs in
    ``cwd`` (default: this process's working directory), against which the config's relative paths
    (``data.root``) resolve.
    """
    cmd = train_command(config, list(overrides or []), run_dir, nproc)
    tail: deque[str] = deque(maxlen=40)
    child_env = {**os.environ, "REPROKIT_PROGRESS": os.environ.get("REPROKIT_PROGRESS", "0"), **(env or {})}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env,
                          cwd=cwd) as proc:
        for line in proc.stdout:
            tail.append(line)
            print(line, end="", flush=True)
    if proc.returncode:
        raise TrainingFailed(f"training of {run_dir} failed (exit {proc.returncode}); last output:\n{''.join(tail)}")
    return json.loads((Path(cwd or ".") / run_dir / "eval.json").read_text())


def per_class_table(run_dir: str) -> pd.DataFrame:
    ev = json.loads((Path(run_dir) / "eval.json").read_text())
    iou = pd.Series(ev["iou"], dtype=float) * 100
    return pd.DataFrame({"IoU (%)": iou.round(2)}).rename_axis("class")


def confusion_figure(run_dir: str):
    """Row-normalised confusion matrix (rows = ground truth) of a run's evaluation."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ev = json.loads((Path(run_dir) / "eval.json").read_text())
    cm = np.asarray(ev["confusion"], dtype=float)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.4 * len(cm))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(cm, ax=ax, cmap="viridis", vmin=0, vmax=1, square=True,
                xticklabels=ev["class_names"], yticklabels=ev["class_names"], cbar_kws={"label": "share of row"})
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"{Path(run_dir).name}: mIoU {100 * ev['miou']:.2f}")
    return fig


def show_outputs(paths) -> None:
    """Display written artefacts inline: PNG figures as images, Markdown tables as Markdown."""
    from IPython.display import Image, Markdown, display

    for p in map(Path, paths):
        if p.suffix == ".png":
            display(Image(filename=str(p)))
        elif p.suffix == ".md":
            display(Markdown(p.read_text()))
