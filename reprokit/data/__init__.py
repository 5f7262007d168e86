"""Data-set registry: ``data.dataset`` in a config selects one of the data sets found here.

Each data set's module declares its entry as ``DATASET = DataSet(...)`` (:class:`DataSet`: class names, how a
list line becomes a sample, its default lists, how a mask file becomes train ids, where its sparse labels live,
its palette, and what must exist before training), and the registry collects them from the modules of this
package. So adding a data set is adding its module (and its params): no other code names a data set, and a
run's code version takes in only its own data set's module.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class DataSet:
    """What a data set declares (``cfg`` below is the run's :class:`reprokit.config.DataConfig`)."""

    name: str  # the config's ``data.dataset``
    class_names: tuple[str, ...]  # by train id
    resolver: Callable  # (cfg, split) -> a function from a list line to a Sample
    default_list: Callable  # (cfg, split) -> the data set's own list of ``split`` ("train" / "val")
    read_mask: Callable  # (path) -> the mask as HxW uint8 train ids (255 ignore), as stored values allow
    weak_label_path: Callable  # (root, kind, sample id, mask path, clicks) -> where its sparse label lives
    palette: Callable  # () -> [256, 3] uint8 colours of its label maps
    prepare: Optional[Callable] = None  # (cfg) -> None: make the data exist before training (built data sets)
    simulated_weak_labels: bool = False  # weak labels are simulated from masks unless data.weak_source says


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, DataSet]:
    """Every data set declared by a module of this package, by name."""
    found: dict[str, DataSet] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        entry = getattr(importlib.import_module(f"{__name__}.{info.name}"), "DATASET", None)
        if isinstance(entry, DataSet):
            if entry.name in found:
                raise ValueError(f"data set {entry.name!r} is declared twice (module {info.name})")
            found[entry.name] = entry
    return found


def dataset(name: str) -> DataSet:
    """The registered data set ``name``; an unknown name is a ValueError listing the known ones."""
    sets = registry()
    if name not in sets:
        raise ValueError(f"unknown data set {name!r} (known: {', '.join(sorted(sets))})")
    return sets[name]
