"""The STPG paper's artefacts (Tables 1-5, Figs. 6-9) rebuilt from run directories, per preset.

A preset says which runs (by config name) feed which row, bar or panel: ``digits`` for the embedded
default, ``cityscapes`` and ``voc`` for the paper-scale sweeps. Each ``build_*`` function writes its
files under ``out``, a provenance sidecar next to each, and returns an :class:`Built` record listing the
config names it needed but did not find, so missing runs are reported by name and the rest still builds.
Every caption and figure title ends with :func:`provenance.provenance_note` of the runs it used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from reprokit.results import load_runs
from reprokit.stats import format_difference, format_seed_differences, paired_difference
from reprokit.viz import plots, provenance, tables


def _table4(ds: str) -> dict:
    return {"L_s": f"{ds}-table4-ls", "+L_u (MT)": f"{ds}-table4-mt", "+DM": f"{ds}-table4-dm",
            "+DM+PS": f"{ds}-table4-dm_ps", "+DM+DCL": f"{ds}-table4-dm_dcl", "STPG (all)": f"{ds}-table4-stpg"}


def _preset(ds: str, paper_ds: str, tail: list[str], fixmatch: str, compare: list | None = None,
            extra_rows: dict | None = None, init: dict | None = None) -> dict:
    t4 = _table4(ds)
    return {
        # compare: (A, B) row-label pairs written as paired differences A - B (summary_paired);
        # init: {method: (config name with the preset's initialisation, config name from scratch)} (summary_init)
        "summary": {"rows": {"supervised, all labels": f"{ds}-supervised-full", **(extra_rows or {}),
                             "supervised": t4["L_s"], "Mean Teacher": t4["+L_u (MT)"], "FixMatch": fixmatch,
                             "STPG": t4["STPG (all)"]},
                    "tail": tail, "compare": compare or [], "init": init or {}},
        "table4": {"rows": t4, "paper_dataset": paper_ds},
        # rows identical to Table 4 rows reuse those runs: cons+hmis is STPG, all three is +DM+DCL
        "table5": {"rows": {"cons": f"{ds}-table5-cons", "cons+lmis": f"{ds}-table5-cons_lmis",
                            "cons+hmis": t4["STPG (all)"], "cons+lmis+hmis": t4["+DM+DCL"]}},
        "fig6": {"groups": {"supervised": t4["L_s"], "Mean Teacher": t4["+L_u (MT)"], "FixMatch": fixmatch,
                            "STPG": t4["STPG (all)"]}, "classes": tail},
        "fig7": {"runs": {"supervised": t4["L_s"], "STPG": t4["STPG (all)"]}},
        "fig8": {"bank_size": f"{ds}-fig8-bank", "lambda_u": f"{ds}-fig8-lambda"},
        "fig9": {"runs": {"supervised": t4["L_s"], "Mean Teacher": t4["+L_u (MT)"], "FixMatch": fixmatch,
                          "STPG": t4["STPG (all)"]}, "images": 4},
    }


PRESETS = {
    "digits": _preset("digits", "cityscapes", [f"digit {d}" for d in range(5, 10)], "digits-fixmatch-1_8",
                      [("STPG", "supervised"), ("STPG", "Mean Teacher"), ("Mean Teacher", "supervised"),
                       ("FixMatch", "supervised"), ("oracle (hidden labels)", "supervised"),
                       ("supervised, all labels", "supervised")],
                      extra_rows={"oracle (hidden labels)": "digits-oracle"},
                      init={"supervised": ("digits-table4-ls", "digits-scratch-ls"),
                            "Mean Teacher": ("digits-table4-mt", "digits-scratch-mt"),
                            "STPG": ("digits-table4-stpg", "digits-scratch-stpg")}),
    "cityscapes": _preset("cityscapes", "cityscapes", ["wall", "fence", "pole", "traffic light", "traffic sign",
                                                       "rider", "truck", "bus", "train", "motorcycle"],
                          "cityscapes-fixmatch-1_8"),
    "voc": _preset("voc", "voc-blended", ["bicycle", "chair", "diningtable", "pottedplant", "sofa"], "voc-fixmatch-1_8"),
}
PAPER_ROWS_T4 = {k: k for k in _table4("x")}
PAPER_ROWS_T5 = {"cons": "cons", "cons+lmis": "cons+lmis", "cons+hmis": "cons+hmis", "cons+lmis+hmis": "cons+lmis+hmis"}
FIG8_PAPER = {"lambda_u": {0.0: 66.74, 0.5: 72.5, 1.0: 75.14, 1.5: 73.94}, "bank_size": {}}


@dataclass
class Built:
    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None


def _runs(runs_dir) -> pd.DataFrame:
    return load_runs(runs_dir) if Path(runs_dir).is_dir() else pd.DataFrame()


def _missing(runs: pd.DataFrame, names) -> list[str]:
    have = set(runs["name"]) if len(runs) else set()
    return sorted({n for n in names if n not in have})


def _note(runs: pd.DataFrame, names) -> str:
    """The provenance note of the runs of config ``names`` (what a caption or title states)."""
    return provenance.provenance_note(provenance.used_runs(runs, names))


def _finish(built: Built, runs: pd.DataFrame, names, notebook: str, params: dict) -> Built:
    provenance.write_sidecars(built.files, provenance.used_runs(runs, names), notebook, params)
    return built


def build_tables_1_3(runs_dir, out, preset: str = "digits") -> Built:
    """Tables 1-3: the paper's comparison rows beside this package's STPG runs on the same protocol."""
    runs = _runs(runs_dir)
    names = set(runs[runs["method"] == "stpg"]["name"]) if len(runs) else set()
    built, per_table = Built(), {}
    for i, (source, title) in enumerate([("Table 1", "Cityscapes, ResNet-50"), ("Table 2", "blended VOC, ResNet-50"),
                                         ("Table 3", "classic VOC, ResNet-101")], start=1):
        table = per_table[source] = tables.comparison_table(runs, source)
        built.files += tables.write_table(table, Path(out) / f"table{i}", f"{source}: mIoU (%) on {title}; "
                                          "paper numbers, reprokit runs (mean ± std (seeds)) and delta; "
                                          f"{_note(runs, names)}")
        if table.iloc[-2, 1:].eq("-").all():
            built.missing.append(f"{source}: no stpg runs on its protocol")
    built.table = pd.concat(per_table, names=["source", None])
    return _finish(built, runs, names, "tables_1_3.ipynb", {"runs": str(runs_dir), "preset": preset})


def build_ablation(which: str, runs_dir, out, preset: str = "digits") -> Built:
    """Table 4 (``which="table4"``) or Table 5 (``"table5"``) of ``preset``."""
    spec = PRESETS[preset][which]
    runs = _runs(runs_dir)
    source = "Table 4" if which == "table4" else "Table 5"
    paper_ds = spec.get("paper_dataset", "cityscapes")
    table = tables.ablation_table(runs, spec["rows"], PAPER_ROWS_T4 if which == "table4" else PAPER_ROWS_T5,
                                  source, paper_ds)
    caption = (f"{source} on {preset} at 1/8 labels: reprokit mIoU (%) (mean ± std (seeds)), gain over the "
               f"first row (paired by seed: mean [95 % t-interval] (seeds)), and the paper's {paper_ds} numbers; "
               f"{_note(runs, spec['rows'].values())}")
    built = Built(tables.write_table(table, Path(out) / which, caption), _missing(runs, spec["rows"].values()), table)
    return _finish(built, runs, spec["rows"].values(), f"{which}.ipynb", {"runs": str(runs_dir), "preset": preset})


def build_summary(runs_dir, out, preset: str = "digits") -> Built:
    """The methods side by side at 1/8 labels (and supervised with all labels): mIoU and tail-class mIoU,
    mean ± std over seeds, and the paired difference to supervised; the analogue of Tables 1-3 for data sets
    the paper does not cover. The preset's ``compare`` pairs go to a second table, ``summary_paired``."""
    spec = PRESETS[preset]["summary"]
    runs = _runs(runs_dir)
    note = _note(runs, spec["rows"].values())
    by_seed = {label: tables.seed_values(runs, name) for label, name in spec["rows"].items()}
    rows = []
    for label, name in spec["rows"].items():
        sel = runs[runs["name"] == name] if len(runs) else runs
        tail = sel[[f"iou/{c}" for c in spec["tail"]]].mean(axis=1) if len(sel) else sel
        delta = "-" if label == "supervised" else format_difference(paired_difference(by_seed[label],
                                                                                      by_seed["supervised"]))
        rows.append({"Method": label, "mIoU (%)": tables.fmt(**tables.mean_std(sel["miou"])) if len(sel) else "-",
                     "tail mIoU (%)": tables.fmt(**tables.mean_std(tail)) if len(sel) else "-",
                     "Δ vs supervised [95 % CI]": delta, "runs": len(sel)})
    table = pd.DataFrame(rows)
    caption = (f"{preset}: mIoU and tail-class mIoU ({', '.join(spec['tail'])}), mean ± std (seeds); mIoU "
               f"difference to supervised paired by seed, mean [95 % t-interval] (seeds); {note}")
    built = Built(tables.write_table(table, Path(out) / "summary", caption), _missing(runs, spec["rows"].values()),
                  table)
    if spec["compare"]:
        built.files += tables.write_table(paired_table(by_seed, spec["compare"]), Path(out) / "summary_paired",
                                          f"{preset}: mIoU differences (percent points) paired by seed, mean "
                                          f"[95 % t-interval] (seeds), and the per-seed differences; {note}")
    init_names = [n for pair in spec["init"].values() for n in pair]
    if len(_missing(runs, init_names)) < len(set(init_names)):  # some of them exist
        built.files += tables.write_table(init_table(runs, spec["init"]), Path(out) / "summary_init",
                                          f"{preset}: mIoU (%) with the preset's pretrained initialisation and from "
                                          f"scratch, mean ± std (seeds), and their difference paired by seed, mean "
                                          f"[95 % t-interval] (seeds); {_note(runs, init_names)}")
    stpg = runs[runs["name"] == spec["rows"]["STPG"]] if len(runs) else runs
    if len(stpg):
        built.files += tables.write_table(selection_table(stpg["path"]), Path(out) / "summary_selection",
                                          f"{preset}, STPG: share of strong-view pixels and Gen-Teacher pseudo-label "
                                          "accuracy per selection category (second half of training), mean ± std; "
                                          f"{_note(runs, [spec['rows']['STPG']])}")
    return _finish(built, runs, spec["rows"].values(), "summary.ipynb", {"runs": str(runs_dir), "preset": preset})


def init_table(runs: pd.DataFrame, init: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """One line per method: mIoU pretrained, mIoU from scratch, and pretrained − scratch paired by seed."""
    rows = []
    for label, (pretrained, scratch) in init.items():
        a, b = tables.seed_values(runs, pretrained), tables.seed_values(runs, scratch)
        rows.append({"Method": label, "pretrained": tables.fmt(**tables.mean_std(a)),
                     "from scratch": tables.fmt(**tables.mean_std(b)),
                     "pretrained − scratch [95 % CI]": format_difference(paired_difference(a, b))})
    return pd.DataFrame(rows)


def paired_table(by_seed: dict[str, pd.Series], compare: list[tuple[str, str]]) -> pd.DataFrame:
    """One line per ``(A, B)`` of ``compare``: A − B paired by seed, its interval, seeds and per-seed values;
    ``by_seed`` maps row labels to mIoU indexed by seed."""
    rows = []
    for a, b in compare:
        unknown = [x for x in (a, b) if x not in by_seed]
        if unknown:
            raise ValueError(f"summary compare ({a!r}, {b!r}): no summary row labeled {unknown}; "
                             f"rows are {sorted(by_seed)}")
        diff = paired_difference(by_seed[a], by_seed[b])
        rows.append({"Comparison": f"{a} − {b}", "Δ mIoU [95 % CI]": format_difference(diff, count=False),
                     "seeds": diff["n"], "per seed": format_seed_differences(diff)})
    return pd.DataFrame(rows)


def selection_table(run_dirs) -> pd.DataFrame:
    """Pixel share and pseudo-label accuracy per selection category over seeds (percent)."""
    from reprokit.results import selection_summary

    per_run = selection_summary(run_dirs)
    names = {"cons": "consistent", "hmis": "highly mismatched", "lmis": "low mismatched"}
    return pd.DataFrame([{"category": names[c],
                          "pixels (%)": tables.fmt(**tables.mean_std(per_run[f"sel/{c}"].dropna())),
                          "accuracy (%)": tables.fmt(**tables.mean_std(per_run[f"acc/{c}"].dropna()))}
                         for c in names])


def build_fig6(runs_dir, out, preset: str = "digits") -> Built:
    spec = PRESETS[preset]["fig6"]
    runs = _runs(runs_dir)
    data = plots.class_iou(runs, spec["groups"], spec["classes"])
    fig = plots.grouped_bars(data, f"Tail-class IoU, {preset}, 1/8 labels")
    built = Built(plots.save_figure(fig, Path(out) / "fig6", _note(runs, spec["groups"].values())),
                  _missing(runs, spec["groups"].values()), data)
    return _finish(built, runs, spec["groups"].values(), "fig6.ipynb", {"runs": str(runs_dir), "preset": preset})


def build_fig8(runs_dir, out, preset: str = "digits") -> Built:
    spec = PRESETS[preset]["fig8"]
    runs = _runs(runs_dir)
    built = Built(missing=_missing(runs, spec.values()))
    for column, name in spec.items():
        label = {"bank_size": "memory bank size N", "lambda_u": "unsupervised weight lambda_u"}[column]
        fig = plots.hyper_curve(runs, name, f"method.{column}", label, FIG8_PAPER[column])
        built.files += plots.save_figure(fig, Path(out) / f"fig8_{column}", _note(runs, [name]))
    return _finish(built, runs, spec.values(), "fig8.ipynb", {"runs": str(runs_dir), "preset": preset})


def first_run_dir(runs: pd.DataFrame, name: str) -> Path | None:
    """The lowest-seed run of config ``name`` (t-SNE and qualitative figures show one model)."""
    sel = runs[runs["name"] == name].sort_values("seed") if len(runs) else runs
    return Path(sel.iloc[0]["path"]) if len(sel) else None


def _trained(runs: pd.DataFrame, named: dict[str, str]):
    """{label: TrainedRun} of the lowest-seed run of each config name, and the run-table rows used."""
    from reprokit.viz.samples import TrainedRun

    loaded = {label: TrainedRun(first_run_dir(runs, name)) for label, name in named.items()}
    used = runs[runs["path"].isin([str(r.run_dir) for r in loaded.values()])]
    return loaded, used


def build_fig7(runs_dir, out, preset: str = "digits", per_class: int = 256) -> Built:
    from reprokit.viz.samples import tsne_panels

    spec = PRESETS[preset]["fig7"]
    runs = _runs(runs_dir)
    built = Built(missing=_missing(runs, spec["runs"].values()))
    if built.missing:
        return built
    panels, used = _trained(runs, spec["runs"])
    built.files = plots.save_figure(tsne_panels(panels, per_class), Path(out) / "fig7",
                                    provenance.provenance_note(used))
    provenance.write_sidecars(built.files, used, "fig7.ipynb", {"runs": str(runs_dir), "preset": preset,
                                                               "per_class": per_class})
    return built


def build_fig9(runs_dir, out, preset: str = "digits") -> Built:
    from reprokit.viz.samples import qualitative_grid

    spec = PRESETS[preset]["fig9"]
    runs = _runs(runs_dir)
    have = {label: name for label, name in spec["runs"].items() if name not in _missing(runs, [name])}
    built = Built(missing=_missing(runs, spec["runs"].values()))
    if not have:
        return built
    loaded, used = _trained(runs, have)
    n_val = len(next(iter(loaded.values())).val)
    fig = qualitative_grid(loaded, list(range(min(spec["images"], n_val))))
    built.files = plots.save_figure(fig, Path(out) / "fig9", provenance.provenance_note(used))
    provenance.write_sidecars(built.files, used, "fig9.ipynb", {"runs": str(runs_dir), "preset": preset})
    return built


BUILDERS = {"summary": build_summary, "tables_1_3": build_tables_1_3, "table4": partial(build_ablation, "table4"),
            "table5": partial(build_ablation, "table5"), "fig6": build_fig6, "fig7": build_fig7, "fig8": build_fig8,
            "fig9": build_fig9}
