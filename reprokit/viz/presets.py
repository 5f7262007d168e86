"""Presets of ``reprokit figures --preset``: how one data set's runs are named and laid out in the artefacts.

Every sweep names its configs ``<data set>-<experiment>`` (``digits-table4-stpg``), so a preset is mostly its
data set's name; beside it, it holds what the tables of that data set need and the runs cannot say: the
paper's protocol its Table 4 is compared with, its tail classes, and, for the embedded default, the extra rows,
paired comparisons and initialisation pairs of its benchmark. Which runs each artefact reads is said in
:mod:`reprokit.viz.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from reprokit.methods import REGISTRY

# Table 4's rows: the label (also the paper's row name in paper_numbers.csv) and the experiment's name
TABLE4_ROWS = {"L_s": "ls", "+L_u (MT)": "mt", "+DM": "dm", "+DM+PS": "dm_ps", "+DM+DCL": "dm_dcl",
               "STPG (all)": "stpg"}


@dataclass(frozen=True)
class Preset:
    name: str  # the data set, and the prefix of its config names
    paper_dataset: str  # the paper's protocol (paper_numbers.csv ``dataset``) its ablations are compared with
    tail: tuple[str, ...]  # the rare classes of Fig. 6 and the summary's tail-class mIoU
    extra_rows: dict[str, str] = field(default_factory=dict)  # summary rows besides the methods {label: config}
    compare: tuple[tuple[str, str], ...] = ()  # (A, B) summary row labels written as A - B paired by seed
    init: dict[str, tuple[str, str]] = field(default_factory=dict)  # {method: (pretrained config, scratch config)}

    def config(self, experiment: str) -> str:
        """The config name of ``experiment`` on this data set."""
        return f"{self.name}-{experiment}"

    @property
    def table4(self) -> dict[str, str]:
        """{Table 4 row label: config name}; several artefacts reuse these runs."""
        return {label: self.config(f"table4-{row}") for label, row in TABLE4_ROWS.items()}

    @property
    def methods(self) -> dict[str, str]:
        """The methods compared at 1/8 labels, {label: config name}, as the method registry lists them."""
        return {entry.label: self.config(entry.experiment) for entry in REGISTRY.values() if entry.experiment}


PRESETS = {
    "digits": Preset(
        "digits", "cityscapes", tuple(f"digit {d}" for d in range(5, 10)),
        extra_rows={"oracle (hidden labels)": "digits-oracle"},
        compare=(("STPG", "supervised"), ("STPG", "Mean Teacher"), ("Mean Teacher", "supervised"),
                 ("FixMatch", "supervised"), ("oracle (hidden labels)", "supervised"),
                 ("supervised, all labels", "supervised")),
        init={"supervised": ("digits-table4-ls", "digits-scratch-ls"),
              "Mean Teacher": ("digits-table4-mt", "digits-scratch-mt"),
              "STPG": ("digits-table4-stpg", "digits-scratch-stpg")}),
    "cityscapes": Preset("cityscapes", "cityscapes", ("wall", "fence", "pole", "traffic light", "traffic sign",
                                                      "rider", "truck", "bus", "train", "motorcycle")),
    "voc": Preset("voc", "voc-blended", ("bicycle", "chair", "diningtable", "pottedplant", "sofa")),
}


def preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is refused with the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown figures preset {name!r}; presets are {', '.join(PRESETS)}")
    return PRESETS[name]
