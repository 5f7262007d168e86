"""Presets of ``reprokit figures --preset``: how one data set's runs are named and laid out in the artefacts.

Every sweep names its configs ``<data set>-<experiment>`` (``digits-table4-stpg``), so a preset is mostly its
data set's name; beside it, it holds what the tables of that data set need and the runs cannot say: the
paper's protocol its Table 4 is compared with, its tail classes, and, for the embedded default, the extra rows,
paired comparisons and initialisation pairs of its benchmark. Which runs each artefact reads is said in
:mod:`reprokit.viz.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from reprokit.methods import registry

# Table 4's rows: the label (also the paper's row name in paper_numbers.csv) and the experiment's name
TABLE4_ROWS = {"L_s": "ls", "+L_u (MT)": "mt", "+DM": "dm", "+DM+PS": "dm_ps", "+DM+DCL": "dm_dcl",
               "STPG (all)": "stpg"}
# The component ablations of CW-BASS and FARCLUSS (no paper numbers): the full method first, so each row's gain
# is what changing that one component does; Mean Teacher, the base both build on, last.
CW_BASS_ROWS = {"CW-BASS (full)": "cw_bass-1_8", "without boundary term": "cw_bass-no_boundary",
                "without dynamic threshold": "cw_bass-no_threshold", "with confidence decay": "cw_bass-decay",
                "single view (authors' code)": "cw_bass-single_view", "Mean Teacher": "table4-mt"}
FARCLUSS_ROWS = {"FARCLUSS (full)": "farcluss-1_8", "without fuzzy labels (top-1)": "farcluss-hard_labels",
                 "without entropy weights": "farcluss-no_entropy",
                 "without class rebalancing": "farcluss-no_rebalancing",
                 "without contrastive term": "farcluss-no_contrastive", "Mean Teacher": "table4-mt"}
# CoSA's parts on image-level labels: the full method first, then one row per part turned off or set as the
# released code sets it, and the two-stage CAM baseline that shares its CAM classifier.
COSA_ROWS = {"CoSA (full)": "weak-cosa", "without threshold search (authors' code)": "weak-cosa-no_search",
             "EMA at the code's momentum 0.9994": "weak-cosa-code_momentum",
             "without dense-CRF energy": "weak-cosa-no_crf", "without reliability weighting": "weak-cosa-no_reliability",
             "without contrastive separation": "weak-cosa-no_contrastive",
             "CAM pseudo-masks (two stages)": "weak-cam"}

# The weak-supervision table: per label kind, its baseline first (each row's gain is paired against it) and
# the weakly supervised method; the table adds training on every mask (the upper bound) to each kind.
WEAK_ROWS = {
    "image labels": {"CAM pseudo-masks (two stages)": "weak-cam", "CoSA": "weak-cosa"},
    "points": {"partial CE": "weak-partial_ce-points", "AGMM-SASS": "weak-agmm-points"},
    "scribbles": {"partial CE": "weak-partial_ce-scribbles", "AGMM-SASS": "weak-agmm-scribbles"},
}
WEAK_REFERENCE = ("fully supervised", "supervised-full")


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

    def rows(self, experiments: dict[str, str]) -> dict[str, str]:
        """{row label: config name} of ``experiments`` ({row label: experiment}) on this data set."""
        return {label: self.config(experiment) for label, experiment in experiments.items()}

    @property
    def table4(self) -> dict[str, str]:
        """{Table 4 row label: config name}; several artefacts reuse these runs."""
        return self.rows({label: f"table4-{row}" for label, row in TABLE4_ROWS.items()})

    def weak_rows(self, kind: str) -> dict[str, str]:
        """{row label: config name} of the weak-supervision methods for label ``kind`` (baseline first)."""
        return self.rows(WEAK_ROWS[kind])

    @property
    def weak_methods(self) -> dict[str, str]:
        """{"<kind>: <row label>": config name} of every weak-supervision method (what the weak artefacts need)."""
        return {f"{kind}: {label}": name for kind in WEAK_ROWS for label, name in self.weak_rows(kind).items()}

    @property
    def methods(self) -> dict[str, str]:
        """The methods compared at 1/8 labels, {label: config name}, as the method registry lists them."""
        return {entry.label: self.config(entry.experiment) for entry in registry().values() if entry.experiment}


PRESETS = {
    "digits": Preset(
        "digits", "cityscapes", tuple(f"digit {d}" for d in range(5, 10)),
        extra_rows={"oracle (hidden labels)": "digits-oracle"},
        compare=(("STPG", "supervised"), ("STPG", "Mean Teacher"), ("Mean Teacher", "supervised"),
                 ("FixMatch", "supervised"), ("CW-BASS", "supervised"), ("CW-BASS", "Mean Teacher"),
                 ("FARCLUSS", "supervised"), ("FARCLUSS", "Mean Teacher"), ("oracle (hidden labels)", "supervised"),
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
