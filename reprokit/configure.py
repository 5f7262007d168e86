"""Reading a whole configuration: the sections of :mod:`reprokit.config` with the ``method:`` block resolved
to its method's parameter dataclass through the method registry. This module sits above both, so the config
module never imports the methods (which import it), and ``Config.method`` is typed."""
from __future__ import annotations

from pathlib import Path

from reprokit.config import Config, ConfigError, apply_overrides, build_config, read_yaml
from reprokit.data import registry as datasets
from reprokit.methods import method_class, method_params


def from_dict(raw: dict, source: str = "<dict>") -> Config:
    """Validate a plain mapping into a :class:`~reprokit.config.Config`; errors name ``source`` and the key.
    The data set must be a registered one, and a method is refused labels of a kind it cannot learn from,
    before any data is read."""
    cfg = build_config(raw, source, method_params)
    if cfg.data.dataset not in datasets():
        raise ConfigError(f"{source}: config key 'data.dataset': {cfg.data.dataset!r} is not one of "
                          f"{sorted(datasets())}")
    kinds = method_class(cfg.method_name).label_kinds
    if cfg.data.label_kind not in kinds:
        raise ConfigError(f"{source}: config key 'data.label_kind': method {cfg.method_name!r} learns from "
                          f"{' or '.join(kinds)} labels, not {cfg.data.label_kind!r} labels")
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A params file (``_base_`` chain merged) with ``key=value`` overrides applied; the built-in defaults
    without a file."""
    raw = read_yaml(path) if path else {}
    return from_dict(apply_overrides(raw, overrides or []), str(path) if path else "<defaults>")
