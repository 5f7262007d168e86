"""A sweep a person can watch: cells done / running / failed, and each running cell's step and time left,
read from the files its training writes (meta.json, metrics.jsonl). Live bars (tqdm.auto: a terminal or a
notebook widget) when someone is looking; in a batch log, one line per cell that starts, finishes or fails."""
from __future__ import annotations

import json
import sys
from pathlib import Path

TERMINAL = ("done", "stale", "failed")


def run_progress(run_dir: Path) -> tuple[int, int, float | None] | None:
    """(step, total steps, seconds left) of the training in ``run_dir``; None before its first log line.
    Seconds left come from the last logged seconds per step (None while none is logged)."""
    meta, metrics = run_dir / "meta.json", run_dir / "metrics.jsonl"
    try:
        total = int(json.loads(meta.read_text())["total_steps"])
        last = _last_line(metrics)
    except (OSError, ValueError, KeyError):
        return None
    if last is None:
        return None
    step = int(last.get("step", 0))
    rate = last.get("sec_per_iter")
    return step, total, (total - step) * rate if rate else None


def _last_line(path: Path) -> dict | None:
    """The last complete JSON line of a growing file (a line being appended is skipped)."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - 8192))
        lines = fh.read().split(b"\n")
    for raw in reversed(lines):
        try:
            return json.loads(raw)
        except ValueError:
            continue
    return None


def _interactive() -> bool:
    if sys.stderr.isatty():
        return True
    shell = sys.modules.get("IPython")
    return bool(shell and getattr(shell, "get_ipython", lambda: None)())


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{sec:02d}s"


class SweepDisplay:
    """Shows the cells a sweep runs. ``update`` takes every cell's state (see ``reprokit.experiments.sweep.status``,
    plus 'queued' and 'running'); ``write`` prints a message without tearing the bars."""

    def __init__(self, name: str, run_dirs: dict[str, Path], log=print, interactive: bool | None = None):
        self.run_dirs = run_dirs
        self.states: dict[str, str] = {}
        self.interactive = _interactive() if interactive is None else interactive
        self._log = log
        self._bars: dict[str, object] = {}
        self._overall = None
        if self.interactive:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self._overall = tqdm(total=len(run_dirs), desc=name, unit="cell", dynamic_ncols=True)

    def write(self, message: str) -> None:
        if self._overall is not None and self._log is print:
            self._tqdm.write(message)
        else:
            self._log(message)

    def update(self, states: dict[str, str]) -> None:
        for cell_id, state in states.items():
            if state == "running" and self.states.get(cell_id) != "running" and not self.interactive:
                self.write(f"start  {cell_id}")
        self.states.update(states)
        if self._overall is None:
            return
        counts = {s: sum(v == s for v in self.states.values()) for s in ("running", "queued", "failed")}
        self._overall.n = sum(v in TERMINAL for v in self.states.values())
        self._overall.set_postfix_str(" · ".join(f"{k} {v}" for k, v in counts.items() if v), refresh=False)
        self._overall.refresh()
        for cell_id in [c for c in self._bars if self.states.get(c) != "running"]:
            self._bars.pop(cell_id).close()
        for cell_id in (c for c, s in self.states.items() if s == "running"):
            self._show_cell(cell_id)

    def _show_cell(self, cell_id: str) -> None:
        progress = run_progress(self.run_dirs[cell_id])
        if progress is None:
            return
        step, total, left = progress
        bar = self._bars.get(cell_id)
        if bar is None:
            bar = self._bars[cell_id] = self._tqdm(total=total, desc=cell_id, unit="step", leave=False,
                                                   dynamic_ncols=True, bar_format="{desc} {bar} {n_fmt}/{total_fmt}"
                                                   " steps{postfix}")
        bar.total = total
        bar.n = step
        bar.set_postfix_str(f"left {_clock(left)}", refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self._overall is not None:
            self._overall.close()
            self._overall = None
