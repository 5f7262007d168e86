"""The inspector's layers a method declares (:attr:`reprokit.methods.base.Method.inspector_layers`): what its
:meth:`~reprokit.methods.base.Method.pseudo_labels` returns under which key, and how to draw it.

Display only: training never reads these. So this module, and every ``inspector_layers = ...`` of a method class,
is left out of a run's code version (:mod:`reprokit.codeversion`); a test keeps this module to plain frozen
records and trains with ``inspector_layers`` made unreadable.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CategoryLayer:
    """An inspector layer a method adds: per-pixel category ids that its :meth:`Method.pseudo_labels` returns
    under ``key``, drawn in ``colours`` and named ``names`` (both by id) in the legend and the statistics."""

    title: str
    key: str
    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class LabelLayer:
    """An inspector layer of class ids (train ids, 255 ignore) that :meth:`Method.pseudo_labels` returns under
    ``key`` [B, H, W]: drawn in the data set's palette like the pseudo-label, ignored pixels in its ignore colour."""

    title: str
    key: str


@dataclass(frozen=True)
class HeatLayer:
    """An inspector layer of scores in [0, 1] that :meth:`Method.pseudo_labels` returns under ``key``: one map
    [B, H, W], or with ``per_class`` a stack [B, K, H, W] (or K maps ``<key>/<k>``) whose channel k scores class
    ``first_class + k``; the inspector's class picker chooses the class drawn."""

    title: str
    key: str
    per_class: bool = False
    first_class: int = 0


#: what :attr:`Method.inspector_layers` may hold
InspectorLayer = CategoryLayer | LabelLayer | HeatLayer
