"""Method registry: the ``method.name`` in a config selects one of these."""
from __future__ import annotations

import importlib

from reprokit.config import ConfigError, dataclass_from_mapping

REGISTRY = {
    "supervised": ("reprokit.methods.supervised", "Supervised"),
    "mean_teacher": ("reprokit.methods.mean_teacher", "MeanTeacher"),
    "fixmatch": ("reprokit.methods.fixmatch", "FixMatch"),
    "stpg": ("reprokit.methods.stpg", "STPG"),
}


def method_class(name: str):
    if name not in REGISTRY:
        raise ConfigError(f"config key 'method.name': unknown method {name!r} (known: {', '.join(sorted(REGISTRY))})")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def validate_method_config(raw: dict) -> dict:
    """Check a ``method:`` block against the method's parameter dataclass; returns it with defaults filled."""
    import dataclasses

    if "name" not in raw:
        raise ConfigError("config key 'method.name' is missing")
    params = dataclass_from_mapping(method_class(raw["name"]).Params, raw, "method.")
    return dataclasses.asdict(params)


def build_method(cfg, num_classes: int):
    cls = method_class(cfg.method_name)
    params = dataclass_from_mapping(cls.Params, cfg.method, "method.")
    return cls(cfg, params, num_classes)
