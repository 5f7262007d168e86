"""Check that the current code retraces a recorded run: the evidence that a change of code left a record's
numbers valid.

A record names the code that produced it (meta.json's commit and code version). When the code changes, the
record's number is only known to hold for the new code if the new code reproduces it. Retraining every run
is the sure way; replaying is the cheap one: train the record's exact configuration again for its first
``steps`` steps (the schedule still spans the whole run, so the learning rate and every ramp are the recorded
ones), and require every logged loss and diagnostic to come out bit for bit equal. Where the record's run
directory still holds its final checkpoint, that checkpoint is also evaluated by the current code and the
whole eval summary must match. The verdict is written as a small JSON record that docs can cite.

Bit for bit holds on the same kind of processor, from the same pretrained weights, only (``reprokit.runs.origin``):
a verdict names the machine it replayed on and the weights it started from and, where the record's sweep cell
names them, the record's, so a DIFFERENT verdict across machines is not taken for a change of code.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import yaml

from reprokit.configure import from_dict
from reprokit.engine import rundir
from reprokit.engine.checkpoint import CheckpointError, load_checkpoint
from reprokit.machine import machine_description
from reprokit.runs.origin import backbone_description, machine_label, recorded_origin
from reprokit.records import git_commit

# metric keys that measure the machine, not the computation
TIMING_KEYS = ("sec_per_iter",)
MAX_LISTED = 20


class ReplayError(ValueError):
    """A directory that cannot be replayed (no config or metrics, or too few logged steps)."""


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def compare_metrics(recorded: list[dict], replayed: list[dict], stop: int) -> list[dict]:
    """Every difference between the logged records up to step ``stop``: a key or step present on one side
    only, or a value that is not bit for bit equal (timings excepted)."""
    def by_step(records):
        return {r["step"]: {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records
                if r.get("step", 0) <= stop}

    rec, rep = by_step(recorded), by_step(replayed)
    diffs = []
    for step in sorted(set(rec) | set(rep)):
        a, b = rec.get(step), rep.get(step)
        if a is None or b is None:
            diffs.append({"step": step, "key": None, "recorded": a is not None, "replayed": b is not None})
            continue
        diffs += [{"step": step, "key": k, "recorded": a.get(k), "replayed": b.get(k)}
                  for k in sorted(set(a) | set(b)) if not _same(a.get(k), b.get(k))]
    return diffs


def compare_splits(record_dir: Path, replay_dir: Path) -> tuple[list[str], list[str]]:
    """(split files the record keeps, those whose ids differ in the replay). Archived records keep only the
    labeled list (the others follow from the data set), so only what the record holds is compared."""
    names = sorted(p.name for p in (record_dir / "splits").glob("*.txt"))
    return names, [n for n in names if not ((replay_dir / "splits" / n).is_file() and
                                            (record_dir / "splits" / n).read_text()
                                            == (replay_dir / "splits" / n).read_text())]


def compare_eval(record_dir: Path) -> dict | None:
    """The record's final checkpoint evaluated by the current code against its eval.json; None when the
    directory has no final checkpoint (archived records keep none), ``{"skipped": why}`` when the current code
    cannot read it (a checkpoint format it refuses)."""
    from reprokit.engine.reeval import evaluate_checkpoint

    ckpt, ev_file = record_dir / "checkpoint.pt", record_dir / "eval.json"
    if not (ckpt.is_file() and ev_file.is_file()):
        return None
    meta = json.loads((record_dir / "meta.json").read_text())
    try:
        if load_checkpoint(ckpt)["step"] != meta.get("total_steps"):
            return None
        _, current = evaluate_checkpoint(record_dir)
    except CheckpointError as exc:
        return {"skipped": str(exc)}
    recorded = json.loads(ev_file.read_text())
    keys = [k for k in sorted(set(recorded) | set(current)) if k != "rank_param_checksums"]
    return {"miou_recorded": recorded.get("miou"), "miou_current": current.get("miou"),
            "differing_keys": [k for k in keys if recorded.get(k) != current.get(k)]}


def replay(record_dir: str | Path, steps: int, work_dir: str | Path | None = None) -> dict:
    """Retrain the run recorded in ``record_dir`` for ``steps`` steps with the current code and compare it
    with the record (see the module docstring); returns the verdict (``identical`` is its summary)."""
    from reprokit.codeversion import code_version, record_version
    from reprokit.engine.train import Trainer

    record_dir = Path(record_dir)
    cfg_file, metrics_file = record_dir / "config.yaml", record_dir / "metrics.jsonl"
    for f in (cfg_file, metrics_file):
        if not f.is_file():
            raise ReplayError(f"{record_dir}: no {f.name}; replay needs a run record (config.yaml, meta.json, "
                              "metrics.jsonl)")
    recorded, _ = rundir.read_metrics(metrics_file)
    logged = [r["step"] for r in recorded if r.get("step", 0) <= steps]
    if not logged:
        raise ReplayError(f"{metrics_file}: no step up to {steps} was logged; replay at least to the first "
                          f"logged step ({recorded[0]['step'] if recorded else 'none logged'})")
    cfg = from_dict(yaml.safe_load(cfg_file.read_text()), str(cfg_file))
    meta = json.loads((record_dir / "meta.json").read_text()) if (record_dir / "meta.json").is_file() else {}
    with tempfile.TemporaryDirectory(prefix="replay-", dir=work_dir) as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run")
        trainer.train_until(steps)
        replayed, _ = rundir.read_metrics(trainer.run_dir / "metrics.jsonl")
        diffs = compare_metrics(recorded, replayed, steps)
        split_files, splits = compare_splits(record_dir, trainer.run_dir)
    ev = compare_eval(record_dir)
    identical = not diffs and not splits and not (ev or {}).get("differing_keys")
    return {"run_id": meta.get("run_id", record_dir.name), "record": str(record_dir),
            "recorded_commit": (meta.get("git") or {}).get("commit"),
            "recorded_code_version": (record_version(meta) or (None, None))[1],
            "git": git_commit(), "code_version": code_version(method=cfg.method_name, dataset=cfg.data.dataset),
            "steps": steps,
            "total_steps": trainer.total, "logged_steps_compared": len(logged), "splits_compared": split_files,
            "splits_differing": splits, "eval": ev, "differences": len(diffs),
            "first_differences": diffs[:MAX_LISTED], "identical": identical,
            "machine": machine_description(), "backbone": backbone_description(cfg.model),
            **{f"recorded_{k}": v for k, v in recorded_origin(record_dir).items()}}


def verdict_line(result: dict) -> str:
    """One line saying what a replay found."""
    what = f"{result['logged_steps_compared']} logged steps to step {result['steps']} of {result['total_steps']}"
    ev = result["eval"]
    if ev is not None and "skipped" in ev:
        what += ", final checkpoint's eval not compared (the current code cannot read it)"
    elif ev is not None:
        what += ", final checkpoint's eval" + (" equal" if not ev["differing_keys"] else
                                               f" differs in {', '.join(ev['differing_keys'])}")
    if result["identical"]:
        return f"{result['run_id']}: identical ({what})"
    first = result["first_differences"][0] if result["first_differences"] else None
    detail = f"; first at step {first['step']}, {first['key']}: {first['recorded']} -> {first['replayed']}" \
        if first else ""
    splits = f"; split files differ: {', '.join(result['splits_differing'])}" if result["splits_differing"] else ""
    return (f"{result['run_id']}: DIFFERENT ({result['differences']} values over {what}{detail}{splits})"
            f"{_origin(result)}")


def _origin(result: dict) -> str:
    """What a DIFFERENT verdict must add about where the two computed: a difference is only evidence against
    the code when the record ran on this kind of processor from the same pretrained weights."""
    here, there = machine_label(result.get("machine")), machine_label(result.get("recorded_machine"))
    if there is None:
        note = f"; replayed on {here}, and the record does not name its machine: another processor alone " \
               "changes the numbers"
    elif there != here:
        note = f"; recorded on {there}, replayed on {here}: another processor alone changes the numbers"
    else:
        note = ""
    digest = [(b or {}).get("sha256") for b in (result.get("recorded_backbone"), result.get("backbone"))]
    if digest[0] and digest[0] != digest[1]:
        note += f"; the record started from other pretrained weights ({digest[0]}, here {digest[1]})"
    return note
