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
from reprokit.viz.presets import CW_BASS_ROWS, FARCLUSS_ROWS, PRESETS, Preset, preset


@dataclass(frozen=True)
class Param:
    """A notebook parameter: one line of the parameters cell (``papermill --help-notebook`` shows its help)."""

    name: str
    default: int | float | str
    help: str

    def line(self) -> str:
        value = json.dumps(self.default) if isinstance(self.default, str) else repr(self.default)
        return f"{self.name}: {type(self.default).__name__} = {value}  # {self.help}"


# every artefact notebook's parameters; ``reprokit figures`` sets all three
COMMON_PARAMS = (Param("runs", "runs/quick", "folder holding the run directories (searched recursively)"),
                 Param("out", "figures", "where tables and figures are written"),
                 Param("preset", "digits", f"which runs feed the artefact: {' | '.join(PRESETS)}"))


@dataclass(frozen=True)
class Artefact:
    name: str  # for --only, the notebook notebooks/<name>.ipynb and the sidecars
    title: str  # the notebook's heading
    builder: Callable[..., Built]  # builder(inputs, **params)
    runs: Callable[[Preset], dict[str, str]] | None  # {label: config name} it reads; None: it finds them itself
    params: tuple[Param, ...] = ()  # its own parameters: builder keywords and notebook parameters
    loads_networks: bool = False  # also reads each run's checkpoint and the data set's validation images

    @property
    def notebook(self) -> str:
        return f"{self.name}.ipynb"

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


ARTEFACTS = (
    Artefact("summary", "Methods at 1/8 labels", artefacts.build_summary, _summary_runs,
             (Param("reference", "", "folder of committed records shown beside the runs ('' for none)"),)),
    Artefact("tables_1_3", "Tables 1-3: comparison with the paper", artefacts.build_tables_1_3, None),
    Artefact("table4", "Table 4: module ablation", partial(artefacts.build_ablation, source="Table 4"),
             lambda p: p.table4),
    Artefact("table5", "Table 5: pixel-selection sets", partial(artefacts.build_ablation, source="Table 5"),
             _table5_runs),
    Artefact("cw_bass_ablation", "CW-BASS: component ablation", partial(artefacts.build_ablation, source=None),
             lambda p: p.rows(CW_BASS_ROWS)),
    Artefact("farcluss_ablation", "FARCLUSS: component ablation", partial(artefacts.build_ablation, source=None),
             lambda p: p.rows(FARCLUSS_ROWS)),
    Artefact("weak", "Weak and sparse supervision", artefacts.build_weak, lambda p: p.weak_methods),
    Artefact("fig_weak", "Weak labels: qualitative results", artefacts.build_fig_weak,
             lambda p: p.weak_methods,
             (Param("images", 4, "training images shown per label kind, one row each"),), loads_networks=True),
    Artefact("fig6", "Fig. 6: tail-class IoU", artefacts.build_fig6, lambda p: p.methods),
    Artefact("fig7", "Fig. 7: t-SNE of decoder features", artefacts.build_fig7,
             lambda p: {"supervised": p.table4["L_s"], "STPG": p.table4["STPG (all)"]},
             (Param("per_class", 256, "decoder features per class drawn for the t-SNE"),), loads_networks=True),
    Artefact("fig8", "Fig. 8: memory bank size and lambda_u", artefacts.build_fig8,
             lambda p: {"bank_size": p.config("fig8-bank"), "lambda_u": p.config("fig8-lambda"),
                        "default": p.table4["STPG (all)"]}),
    Artefact("fig9", "Figs. 9/10: qualitative results", artefacts.build_fig9, lambda p: p.methods,
             (Param("images", 4, "validation images shown, one row each"),), loads_networks=True),
    Artefact("claims", "Claims ledger: the seed papers' claims on this benchmark", artefacts.build_claims,
             claims.config_names),
    Artefact("paper_cells", "The papers' VOC and Cityscapes cells and their reproduction", artefacts.build_paper_cells,
             None),
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
