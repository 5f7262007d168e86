"""The one list of the paper's artefacts. The main job (reprokit.main), ``reprokit figures`` (reprokit.figures)
and the notebook generator (scripts/make_notebooks.py) read everything they know about a table or figure
from its entry here: its name, the builder, the runs it reads on each preset, its notebook and parameters.

Adding an artefact: write its builder in :mod:`reprokit.viz.artefacts`, add its :class:`Artefact` to
``ARTEFACTS``, and run ``python scripts/make_notebooks.py`` to write its notebook.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from reprokit.viz import artefacts, claims
from reprokit.viz.artefacts import Built, Inputs, run_table
from reprokit.viz.presets import COSA_ROWS, CW_BASS_ROWS, FARCLUSS_ROWS, PRESETS, Preset, preset


@dataclass(frozen=True)
class Param:
    """A notebook parameter: one line of the parameters cell (``papermill --help-notebook`` shows its help)."""

    name: str
    default: int | float | str
    help: str

    def line(self) -> str:
        value = json.dumps(self.default) if isinstance(self.default, str) else repr(self.default)
        return f"{self.name}: {type(self.default).__name__} = {value}  # {self.help}"


# The defaults a newcomer can run: the committed records of the 5-seed digits benchmark (no checkpoints, so
# for the artefacts that load networks the demo runs, reprokit.experiments.demo), written to the untracked outputs/.
# Relative paths resolve against the project root (reprokit.experiments.project). ``reprokit figures`` sets all three.
RECORDS = "docs/runs/benchmark"
OUTPUTS = "outputs"


def common_params(runs_default: str) -> tuple[Param, ...]:
    """Every artefact notebook's parameters (the runs folder's default differs for those that load networks)."""
    return (Param("runs", runs_default, "folder holding the run directories (searched recursively)"),
            Param("out", OUTPUTS, "where tables and figures are written (outputs/ is untracked)"),
            Param("preset", "digits", f"which runs feed the artefact: {' | '.join(PRESETS)}"))


@dataclass(frozen=True)
class Artefact:
    name: str  # for --only, the notebook notebooks/<name>.ipynb and the sidecars
    title: str  # the notebook's heading: the paper and its table or figure
    reproduces: str  # one sentence for the notebook's first cell: what the artefact shows
    writes: str  # the files it writes into ``out`` (each gets a .provenance.json sidecar)
    builder: Callable[..., Built]  # builder(inputs, **params)
    runs: Callable[[Preset], dict[str, str]] | None  # {label: config name} it reads; None: it finds them itself
    params: tuple[Param, ...] = ()  # its own parameters: builder keywords and notebook parameters
    loads_networks: bool = False  # also reads each run's checkpoint and the data set's validation images

    @property
    def notebook(self) -> str:
        return f"{self.name}.ipynb"

    @property
    def notebook_params(self) -> tuple[Param, ...]:
        """The parameters cell: the common ones, then the artefact's own."""
        from reprokit.experiments.demo import FOLDER

        return (*common_params(FOLDER if self.loads_networks else RECORDS), *self.params)

    def needs(self, preset_name: str) -> list[str]:
        """The config names it reads on ``preset_name``; none for one that finds its runs by method and
        protocol (Tables 1-3), which is therefore never skipped for want of runs."""
        return list(self.runs(preset(preset_name)).values()) if self.runs else []

    def build(self, runs_dir, out, preset_name: str = "digits", **params) -> Built:
        """Build it from the runs under ``runs_dir`` into ``out``; ``params`` override its own parameters."""
        unknown = sorted(set(params) - {p.name for p in self.params})
        if unknown:
            raise ValueError(f"{self.name} has no parameter {', '.join(unknown)}; its parameters are "
                             f"{[p.name for p in self.params]}")
        values = {**{p.name: p.default for p in self.params}, **params}
        chosen = preset(preset_name)
        inputs = Inputs(self.name, run_table(runs_dir), self.runs(chosen) if self.runs else {}, chosen, Path(out),
                        self.notebook, {"runs": str(runs_dir), "preset": preset_name, **values})
        return self.builder(inputs, **values)


def _summary_runs(p: Preset) -> dict[str, str]:
    return {"supervised, all labels": p.config("supervised-full"), **p.extra_rows, **p.methods}


def _table5_runs(p: Preset) -> dict[str, str]:
    """Rows identical to Table 4 rows reuse those runs: cons+hmis is STPG, all three sets is +DM+DCL."""
    t4 = p.table4
    return {"cons": p.config("table5-cons"), "cons+lmis": p.config("table5-cons_lmis"),
            "cons+hmis": t4["STPG (all)"], "cons+lmis+hmis": t4["+DM+DCL"]}


STPG_PAPER = ('the STPG paper (Hong et al., "Semi-Supervised Semantic Segmentation with Professional and General '
              'Training")')
ARTEFACTS = (
    Artefact("summary", "Digits benchmark: the methods at 1/8 labels",
             "the comparison the STPG paper's Tables 1-3 make, on the embedded digit scenes the paper does not "
             "cover: every method's mIoU and tail-class mIoU at 1/8 labels (supervised training with all labels "
             "and the oracle as references), the differences paired by seed with 95 % intervals, STPG's "
             "pixel-selection statistics and the gain of the glyph pretraining",
             "summary, summary_paired, summary_selection and summary_init (.md and .tex)",
             artefacts.build_summary, _summary_runs,
             (Param("reference", "", "folder of committed records shown beside the runs ('' for none)"),)),
    Artefact("tables_1_3", "STPG paper, Tables 1-3: comparison with the paper",
             f"Tables 1-3 of {STPG_PAPER}: mIoU on Cityscapes (ResNet-50), blended VOC (ResNet-50) and classic VOC "
             "(ResNet-101) at each label fraction, the paper's numbers beside reprokit's STPG runs on the same "
             "protocol and the difference; the committed records are digit-scene runs, so reprokit's columns "
             "read '-' until runs on those protocols exist",
             "table1, table2 and table3 (.md and .tex)", artefacts.build_tables_1_3, None),
    Artefact("table4", "STPG paper, Table 4: module ablation",
             f"Table 4 of {STPG_PAPER}: what each module adds, one row each: L_s (the supervised loss alone), +L_u "
             "(Mean Teacher's unsupervised loss), +DM (the dual mean teacher: a professional and a general "
             "student-teacher pair), +DM+PS (with pixel selection by class mismatch), +DM+DCL (with dual "
             "contrastive learning with anchors) and STPG (all of them); reprokit's mIoU on the digit scenes "
             "and each row's gain over L_s beside the paper's Cityscapes numbers",
             "table4.md and table4.tex", partial(artefacts.build_ablation, source="Table 4"), lambda p: p.table4),
    Artefact("table5", "STPG paper, Table 5: pixel-selection sets",
             f"Table 5 of {STPG_PAPER}: which pixels of the unlabeled images train the students, by the teachers' "
             "agreement: consistent pixels (cons), low-mismatch (lmis) and high-mismatch (hmis) pixels and "
             "their unions; reprokit's mIoU on the digit scenes beside the paper's Cityscapes numbers",
             "table5.md and table5.tex", partial(artefacts.build_ablation, source="Table 5"), _table5_runs),
    Artefact("cw_bass_ablation", "CW-BASS: component ablation",
             "the components of CW-BASS (Tarubinga et al., \"Confidence-Weighted Boundary-Aware Learning for "
             "Semi-Supervised Semantic Segmentation\", IJCNN 2025) on the digit scenes: the full method, then one "
             "row per component removed or changed (boundary term, dynamic threshold, confidence decay, the "
             "authors' single view) and Mean Teacher; the paper has no such table",
             "cw_bass_ablation.md and cw_bass_ablation.tex", partial(artefacts.build_ablation, source=None),
             lambda p: p.rows(CW_BASS_ROWS)),
    Artefact("farcluss_ablation", "FARCLUSS: component ablation",
             "the components of FARCLUSS (Tarubinga et al., \"Fuzzy Adaptive Rebalancing and Contrastive "
             "Uncertainty Learning for Semi-Supervised Semantic Segmentation\", 2025) on the digit scenes: the full "
             "method, then one row per component removed (fuzzy labels, entropy weights, class rebalancing, "
             "contrastive term) and Mean Teacher; the paper has no such table",
             "farcluss_ablation.md and farcluss_ablation.tex", partial(artefacts.build_ablation, source=None),
             lambda p: p.rows(FARCLUSS_ROWS)),
    Artefact("weak", "CoSA and AGMM-SASS: weak and sparse supervision",
             "the weakly supervised methods on the digit scenes: CoSA (Yang et al., ECCV 2024) against its "
             "two-stage CAM baseline from image-level labels, AGMM-SASS (Wu et al., CVPR 2023) against partial "
             "cross-entropy from points and from scribbles, with training on every mask as the upper bound",
             "weak.md and weak.tex", artefacts.build_weak, lambda p: p.weak_methods),
    Artefact("cosa_ablation", "CoSA: component ablation on image-level labels",
             "the parts of CoSA (Yang et al., ECCV 2024) on the digit scenes' image-level labels: the full method, "
             "then one row per part turned off or set as the released code sets it (threshold search, the "
             "assignment network's EMA momentum, the dense-CRF energy, reliability weighting, contrastive "
             "separation) and the two-stage CAM baseline; each row's gain over the full method paired by seed",
             "cosa_ablation.md and cosa_ablation.tex",
             partial(artefacts.build_ablation, source=None, labels="with image-level labels on every training image"),
             lambda p: p.rows(COSA_ROWS)),
    Artefact("fig_weak", "CoSA and AGMM-SASS: qualitative results of weak supervision",
             "the qualitative figures of weak supervision: per label kind, training images with their weak "
             "labels, the baseline's and the method's predictions and the ground truth",
             "fig_weak_<kind> (.png and .pdf) for each label kind whose runs exist",
             artefacts.build_fig_weak, lambda p: p.weak_methods,
             (Param("images", 4, "training images shown per label kind, one row each"),), loads_networks=True),
    Artefact("fig6", "STPG paper, Fig. 6: tail-class IoU",
             f"Fig. 6 of {STPG_PAPER}: the IoU of the rare (tail) classes, one bar per method",
             "fig6.png and fig6.pdf", artefacts.build_fig6, lambda p: p.methods),
    Artefact("fig7", "STPG paper, Fig. 7: t-SNE of decoder features",
             f"Fig. 7 of {STPG_PAPER}: a t-SNE map of the decoder's pixel features on validation images, supervised "
             "training (L_s) beside STPG, coloured by class",
             "fig7.png and fig7.pdf", artefacts.build_fig7,
             lambda p: {"supervised": p.table4["L_s"], "STPG": p.table4["STPG (all)"]},
             (Param("per_class", 256, "decoder features per class drawn for the t-SNE"),), loads_networks=True),
    Artefact("fig8", "STPG paper, Fig. 8: memory bank size and lambda_u",
             f"Fig. 8 of {STPG_PAPER}: STPG's mIoU against the memory bank size N and against the unsupervised weight "
             "lambda_u, beside the paper's curves",
             "fig8_bank_size and fig8_lambda_u (.png and .pdf)", artefacts.build_fig8,
             lambda p: {"bank_size": p.config("fig8-bank"), "lambda_u": p.config("fig8-lambda"),
                        "default": p.table4["STPG (all)"]}),
    Artefact("fig9", "STPG paper, Figs. 9/10: qualitative results",
             f"Figs. 9 and 10 of {STPG_PAPER}: each method's prediction on the same validation images, beside the "
             "image and its ground truth",
             "fig9.png and fig9.pdf", artefacts.build_fig9, lambda p: p.methods,
             (Param("images", 4, "validation images shown, one row each"),), loads_networks=True),
    Artefact("claims", "Claims ledger: the seed papers' claims on the digits benchmark",
             "every quantitative claim of the five seed papers (STPG, CW-BASS, FARCLUSS, CoSA, AGMM-SASS) that the "
             "digit scenes can test, one row each: the paper's table or figure and number, the digits "
             "measurement paired by seed with its 95 % interval, and the verdict by the written rule (holds, not "
             "resolved, contradicted); the claims are data (reprokit/viz/claims.yaml)",
             "claims.md and claims.tex", artefacts.build_claims, claims.config_names),
    Artefact("paper_cells", "The papers' VOC and Cityscapes cells and their reproduction",
             "the numbers the seed papers report for every VOC and Cityscapes cell reprokit has parameter files "
             "for, beside this package's reproduction of each (empty until a run of that cell exists)",
             "paper_cells.md and paper_cells.tex", artefacts.build_paper_cells, None),
)
NAMES = tuple(a.name for a in ARTEFACTS)


def select(names=None) -> list[Artefact]:
    """The artefacts called ``names``, in that order (all of them for None); unknown names are refused."""
    unknown = [n for n in names or () if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown artefact {', '.join(unknown)}; artefacts are {', '.join(NAMES)}")
    return [ARTEFACTS[NAMES.index(n)] for n in (names or NAMES)]


def build(name: str, runs_dir, out, preset_name: str = "digits", **params) -> Built:
    """Build the artefact ``name`` (what its notebook calls)."""
    return select([name])[0].build(runs_dir, out, preset_name, **params)
