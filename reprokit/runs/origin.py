"""Where a record computed, which its code version cannot say: the machine (the processor's kind decides the
floating-point kernels torch runs) and the pretrained weights the run started from. Sweep cells record both
(``sweep-cell.json``); replays and tables read them back to tell a change of code from a change of origin."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from reprokit.config import ModelConfig
from reprokit.configure import from_dict
from reprokit.models.pretrain import weights_path

# a sweep cell's record beside its run: parameters, outcome, and where it computed
CELL_RECORD = "sweep-cell.json"


def machine_label(machine: dict | None) -> str | None:
    """Short name of a :func:`reprokit.machine.machine_description` for tables, captions and verdicts (None for None)."""
    if not machine:
        return None
    return f"{machine.get('cpu')}, {machine.get('cpu_capability')}" + (f", {machine['gpu']}" if machine.get("gpu")
                                                                      else "")


def recorded_origin(run_dir: str | Path) -> dict:
    """What a sweep cell recorded of its origin (``machine``, ``backbone``), from its ``CELL_RECORD``; empty for
    a run outside a sweep or one recorded before cells named them."""
    try:
        record = json.loads((Path(run_dir) / CELL_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return {k: record.get(k) for k in ("machine", "backbone") if isinstance(record, dict) and record.get(k)}


def backbone_description(model_cfg: ModelConfig) -> dict | None:
    """The pretrained weights a run with ``model_cfg`` starts from: file, digest, and the held-out accuracy
    their provenance records; None when it starts from scratch.

    Glyph pretraining is itself a training run on this machine: another processor builds other weights, and
    every method's numbers move with them, so the digest says whether two runs shared their start."""
    if model_cfg.pretrained != "glyphs":
        return None
    path = weights_path(model_cfg)
    if not path.is_file():
        return {"file": path.name, "sha256": None, "heldout_top1": None}
    sidecar = path.with_name(path.name + ".json")
    top1 = json.loads(sidecar.read_text()).get("heldout_top1") if sidecar.is_file() else None
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16], "heldout_top1": top1}


def run_backbone(run_dir: str | Path) -> dict | None:
    """:func:`backbone_description` for the configuration a run directory recorded (None without one)."""
    cfg_file = Path(run_dir) / "config.yaml"
    if not cfg_file.is_file():
        return None
    return backbone_description(from_dict(yaml.safe_load(cfg_file.read_text()), str(cfg_file)).model)
