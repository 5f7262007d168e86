"""Method registry: the ``method.name`` in a config selects one of these entries.

An entry says where the method's class lives and how the artefacts show it, so adding a method is one entry
here (and its module): the summary tables and Fig. 6 take their method rows from ``label`` and ``experiment``,
and the inspector takes a method's extra layers from its class (:attr:`Method.inspector_layers`).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Optional

from reprokit.config import ConfigError, dataclass_from_mapping


@dataclass(frozen=True)
class MethodEntry:
    module: str  # module of the method's class
    cls: str  # the class, a :class:`reprokit.methods.base.Method`
    label: str  # the method's row in the summary tables and its bar in Fig. 6
    # its run at 1/8 labels on each data set, the config ``<data set>-<experiment>``; None: not in the comparison
    experiment: Optional[str] = None


REGISTRY = {
    "supervised": MethodEntry("reprokit.methods.supervised", "Supervised", "supervised", "table4-ls"),
    "mean_teacher": MethodEntry("reprokit.methods.mean_teacher", "MeanTeacher", "Mean Teacher", "table4-mt"),
    "fixmatch": MethodEntry("reprokit.methods.fixmatch", "FixMatch", "FixMatch", "fixmatch-1_8"),
    "stpg": MethodEntry("reprokit.methods.stpg", "STPG", "STPG", "table4-stpg"),
    "cw_bass": MethodEntry("reprokit.methods.cw_bass", "CWBASS", "CW-BASS", "cw_bass-1_8"),
    "farcluss": MethodEntry("reprokit.methods.farcluss", "FARCLUSS", "FARCLUSS", "farcluss-1_8"),
}


def method_class(name: str):
    if name not in REGISTRY:
        raise ConfigError(f"config key 'method.name': unknown method {name!r} (known: {', '.join(sorted(REGISTRY))})")
    entry = REGISTRY[name]
    return getattr(importlib.import_module(entry.module), entry.cls)


def method_params(raw: dict):
    """A ``method:`` block as its method's parameter dataclass, defaults filled and every value checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'method': expected a mapping, got {raw!r}")
    if "name" not in raw:
        raise ConfigError("config key 'method.name' is missing")
    return dataclass_from_mapping(method_class(raw["name"]).Params, raw, "method.")


def build_method(cfg, num_classes: int):
    """The configured method, with a fresh copy of its parameters."""
    cls = method_class(cfg.method_name)
    return cls(cfg, dataclass_from_mapping(cls.Params, dataclasses.asdict(cfg.method), "method."), num_classes)
