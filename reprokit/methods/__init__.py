"""Method registry: the ``method.name`` in a config selects one of the methods found here.

Each method module declares its entry (:class:`reprokit.methods.base.MethodEntry`: name, class, the label of
its row in the summary tables and Fig. 6, its 1/8-labels experiment) as ``METHOD = MethodEntry(...)``, and the
registry collects them from the modules of this package. So adding a method is adding its module: no list
here changes, the inspector takes the method's extra layers from its class (:attr:`Method.inspector_layers`),
and the code version of other methods' runs stays the same.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil

from reprokit.config import ConfigError, dataclass_from_mapping
from reprokit.methods.base import MethodEntry


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, MethodEntry]:
    """Every method entry declared by a module of this package, by name."""
    found: dict[str, MethodEntry] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        entry = getattr(importlib.import_module(f"{__name__}.{info.name}"), "METHOD", None)
        if isinstance(entry, MethodEntry):
            if entry.name in found:
                raise ConfigError(f"method {entry.name!r} is declared twice: by {found[entry.name].cls.__module__} "
                                  f"and by {entry.cls.__module__}")
            found[entry.name] = entry
    return found


def method_class(name: str):
    methods = registry()
    if name not in methods:
        raise ConfigError(f"config key 'method.name': unknown method {name!r} (known: {', '.join(sorted(methods))})")
    return methods[name].cls


def method_params(raw: dict):
    """A ``method:`` block as its method's parameter dataclass, defaults filled and every value checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'method': expected a mapping, got {raw!r}")
    if "name" not in raw:
        raise ConfigError("config key 'method.name' is missing")
    params = dataclass_from_mapping(method_class(raw["name"]).Params, raw, "method.")
    params.check()
    return params


def build_method(cfg, num_classes: int):
    """The configured method, with a fresh copy of its parameters."""
    cls = method_class(cfg.method_name)
    return cls(cfg, dataclass_from_mapping(cls.Params, dataclasses.asdict(cfg.method), "method."), num_classes)
