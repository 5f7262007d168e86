"""How each of the STPG paper's artefacts (Tables 1-5, Figs. 6-9) is built from run directories.

A builder gets :class:`Inputs` (the run table, the config names it reads by row, bar or panel label, the
preset, where to write) and returns a :class:`Built` listing the files it wrote and the config names it needed
but did not find, so missing runs are reported by name and the rest still builds. Every file gets a provenance
sidecar, and every caption and figure title ends with the provenance note of the runs it used. Which builder
makes which artefact from which runs is said once, in :mod:`reprokit.viz.registry`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reprokit.methods.stpg_equations import SELECTION_CATEGORIES
from reprokit.runs.cam_seed import SEED_FILE
from reprokit.runs.results import load_runs, machine_counts, selection_summary
from reprokit.runs.stats import format_difference, format_seed_differences, paired_difference
from reprokit.viz import claims, paper_cells, plots, provenance, tables
from reprokit.viz.presets import WEAK_REFERENCE, WEAK_ROWS, Preset

FIG8_AXES = {"bank_size": "memory bank size N", "lambda_u": "unsupervised weight lambda_u"}


@dataclass
class Built:
    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None


@dataclass
class Inputs:
    """One build of one artefact: what it reads, where it writes, and what its provenance records."""

    name: str  # the artefact, also the stem of its main output
    runs: pd.DataFrame  # every finished run of the runs folder
    named: dict[str, str]  # {row, bar or panel label: config name} the artefact reads on this preset
    preset: Preset
    out: Path
    notebook: str  # the notebook and parameters the sidecars record
    parameters: dict

    def missing(self, names=None) -> list[str]:
        """Config names among ``names`` (default: all the artefact reads) without a finished run."""
        have = set(self.runs["name"]) if len(self.runs) else set()
        return sorted({n for n in (self.named.values() if names is None else names) if n not in have})

    def used(self, names=None) -> pd.DataFrame:
        return provenance.used_runs(self.runs, self.named.values() if names is None else names)

    def note(self, names=None) -> str:
        """The provenance note (commits, stale runs) a caption or title states."""
        return provenance.provenance_note(self.used(names))

    def finish(self, built: Built, used: pd.DataFrame | None = None) -> Built:
        """Write the sidecars of ``built``'s files, naming ``used`` (default: the runs of every name read)."""
        provenance.write_sidecars(built.files, self.used() if used is None else used, self.notebook, self.parameters)
        return built


def run_table(runs_dir) -> pd.DataFrame:
    """The finished runs under ``runs_dir``; an empty table when there are none or the folder is absent."""
    return load_runs(runs_dir) if Path(runs_dir).is_dir() else pd.DataFrame()


def runs_of(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    return runs[runs["name"] == name] if len(runs) else runs


def build_tables_1_3(inputs: Inputs) -> Built:
    """Tables 1-3: the paper's comparison rows beside this package's STPG runs on the same protocol."""
    runs = inputs.runs
    names = set(runs[runs["method"] == "stpg"]["name"]) if len(runs) else set()
    built, per_table = Built(), {}
    for i, (source, title) in enumerate([("Table 1", "Cityscapes, ResNet-50"), ("Table 2", "blended VOC, ResNet-50"),
                                         ("Table 3", "classic VOC, ResNet-101")], start=1):
        table = per_table[source] = tables.comparison_table(runs, source)
        built.files += tables.write_table(table, inputs.out / f"table{i}", f"{source}: mIoU (%) on {title}; "
                                          "paper numbers, reprokit runs (mean ± std (seeds)) and delta; "
                                          f"{inputs.note(names)}")
        if table.iloc[-2, 1:].eq("-").all():
            built.missing.append(f"{source}: no stpg runs on its protocol")
    built.table = pd.concat(per_table, names=["source", None])
    return inputs.finish(built, inputs.used(names))


def build_ablation(inputs: Inputs, source: str | None, labels: str = "at 1/8 labels") -> Built:
    """Table 4 or Table 5 (``source``): one row per ablation, beside the paper's numbers of the preset's
    protocol, or of the only protocol the paper's table has (its Table 5 covers Cityscapes alone). Without a
    ``source`` (the component ablations of CW-BASS, FARCLUSS and CoSA, which their papers do not give on these rows)
    the table has no paper columns. ``labels`` names the supervision its rows train with, for the caption."""
    paper = tables.paper_numbers()
    protocols = list(paper[paper["source"] == source]["dataset"].unique())
    paper_ds = inputs.preset.paper_dataset if inputs.preset.paper_dataset in protocols else next(iter(protocols), None)
    table = tables.ablation_table(inputs.runs, inputs.named, source, paper_ds)
    if source is None:
        table = table.drop(columns=["paper", "paper gain"])
    reference = f", and the paper's {paper_ds} numbers" if paper_ds else ""
    caption = (f"{source or inputs.name} on {inputs.preset.name} {labels}: reprokit mIoU (%) (mean ± std "
               f"(seeds)), gain over the first row (paired by seed: mean [95 % t-interval] (seeds)){reference}; "
               f"{inputs.note()}")
    return inputs.finish(Built(tables.write_table(table, inputs.out / inputs.name, caption), inputs.missing(), table))


def build_summary(inputs: Inputs, reference: str = "") -> Built:
    """The methods side by side at 1/8 labels (and supervised with all labels): mIoU and tail-class mIoU,
    mean ± std over seeds, and the paired difference to supervised; the analogue of Tables 1-3 for data sets
    the paper does not cover. Rows without runs are left out (the main job's quick size trains four of them).
    ``reference``, a folder of committed records (the 5-seed measurement), adds its mIoU and difference for the
    same rows in columns of their own, so a short demonstration run is read beside the numbers to quote. The
    caption names the machines the runs came from: another processor gives other numbers. The preset's
    ``compare`` pairs go to a second table, ``summary_paired``, its ``init`` pairs to ``summary_init``, and
    STPG's selection statistics to ``summary_selection``."""
    runs, rows, preset = inputs.runs, inputs.named, inputs.preset
    by_seed = {label: tables.seed_values(runs, name) for label, name in rows.items()}
    lines = [summary_line(runs, label, name, preset, by_seed) for label, name in rows.items()]
    table = pd.DataFrame([line for line in lines if line["runs"]])
    caption = (f"{preset.name}: mIoU and tail-class mIoU ({', '.join(preset.tail)}), mean ± std (seeds); mIoU "
               f"difference to supervised paired by seed, mean [95 % t-interval] (seeds); {inputs.note()}; "
               f"ran on {machines_named(inputs.used())}")
    if reference and Path(reference).resolve() != Path(inputs.parameters["runs"]).resolve():
        table, caption = with_reference(table, rows, preset, reference, caption)
    built = Built(tables.write_table(table, inputs.out / "summary", caption), inputs.missing(), table)
    if preset.compare:
        built.files += tables.write_table(paired_table(by_seed, preset.compare), inputs.out / "summary_paired",
                                          f"{preset.name}: mIoU differences (percent points) paired by seed, mean "
                                          f"[95 % t-interval] (seeds), and the per-seed differences; {inputs.note()}")
    init_names = [n for pair in preset.init.values() for n in pair]
    if len(inputs.missing(init_names)) < len(set(init_names)):  # some of them exist
        built.files += tables.write_table(init_table(runs, preset.init), inputs.out / "summary_init",
                                          f"{preset.name}: mIoU (%) with the preset's pretrained initialisation and "
                                          f"from scratch, mean ± std (seeds), and their difference paired by seed, "
                                          f"mean [95 % t-interval] (seeds); {inputs.note(init_names)}")
    stpg = runs_of(runs, rows["STPG"])
    if len(stpg):
        built.files += tables.write_table(selection_table(stpg["path"]), inputs.out / "summary_selection",
                                          f"{preset.name}, STPG: share of strong-view pixels and Gen-Teacher "
                                          "pseudo-label accuracy per selection category (second half of training), "
                                          f"mean ± std; {inputs.note([rows['STPG']])}")
    return inputs.finish(built)


def summary_line(runs: pd.DataFrame, label: str, name: str, preset: Preset, by_seed: dict) -> dict:
    """One summary row: mIoU, tail-class mIoU, the paired difference to the ``supervised`` row, run count."""
    sel = runs_of(runs, name)
    tail = sel[[f"iou/{c}" for c in preset.tail]].mean(axis=1) if len(sel) else sel
    delta = "-" if label == "supervised" else format_difference(paired_difference(by_seed[label],
                                                                                  by_seed["supervised"]))
    return {"Method": label, "mIoU (%)": tables.fmt(**tables.mean_std(sel["miou"])) if len(sel) else "-",
            "tail mIoU (%)": tables.fmt(**tables.mean_std(tail)) if len(sel) else "-",
            "Δ vs supervised [95 % CI]": delta, "runs": len(sel)}


def machines_named(runs: pd.DataFrame) -> str:
    """The machines the runs' records name (``results.machine_counts``), for a caption."""
    if not len(runs):
        return "no runs"
    return "; ".join(f"{m} ({n} runs)" for m, n in machine_counts(runs).items())


def with_reference(table: pd.DataFrame, rows: dict[str, str], preset: Preset, reference: str,
                   caption: str) -> tuple[pd.DataFrame, str]:
    """``table`` with two columns of the committed measurement in ``reference`` for the same rows."""
    ref_runs = run_table(reference)
    by_seed = {label: tables.seed_values(ref_runs, name) for label, name in rows.items()}
    ref = {line["Method"]: line for line in (summary_line(ref_runs, label, name, preset, by_seed)
                                             for label, name in rows.items())}
    table = table.assign(**{
        "committed measurement: mIoU (%)": [ref[m]["mIoU (%)"] for m in table["Method"]],
        "committed measurement: Δ vs supervised [95 % CI]": [ref[m]["Δ vs supervised [95 % CI]"]
                                                             for m in table["Method"]]})
    used = provenance.used_runs(ref_runs, rows.values())
    caption += (f". Committed measurement: the records in {reference} for the same rows ({len(used)} runs; "
                f"{provenance.provenance_note(used)}), the numbers to quote. Short runs of one seed vary by "
                f"processor: read the direction of each difference beside the measurement's, not its digits")
    return table, caption


def build_weak(inputs: Inputs) -> Built:
    """The weak-supervision table: for each label kind, its baseline, the method and full supervision, with
    mIoU, tail-class mIoU (mean ± std (seeds)), each row's difference to the kind's baseline paired by seed, and
    its mean mIoU as a share of full supervision's (how much of the masks' worth the weak labels recover)."""
    runs, preset, lines = inputs.runs, inputs.preset, []
    reference, reference_name = WEAK_REFERENCE[0], preset.config(WEAK_REFERENCE[1])
    full = runs_of(runs, reference_name)["miou"].mean() if len(runs) else float("nan")
    for kind in WEAK_ROWS:
        rows = {**preset.weak_rows(kind), reference: reference_name}
        base_label = next(iter(rows))
        base = tables.seed_values(runs, rows[base_label])
        for label, name in rows.items():
            sel = runs_of(runs, name)
            tail = sel[[f"iou/{c}" for c in preset.tail]].mean(axis=1) if len(sel) else sel
            delta = "-" if label == base_label else format_difference(
                paired_difference(tables.seed_values(runs, name), base))
            masked = masked_miou(sel["path"]) if len(sel) else pd.Series([], dtype=float)
            seeds = cam_seed_accuracy(sel["path"]) if len(sel) else pd.DataFrame()
            lines.append({"labels": kind, "Method": label,
                          "mIoU (%)": tables.fmt(**tables.mean_std(sel["miou"])) if len(sel) else "-",
                          "masked protocol mIoU (%)": tables.fmt(**tables.mean_std(masked)) if len(masked) else "-",
                          "tail mIoU (%)": tables.fmt(**tables.mean_std(tail)) if len(sel) else "-",
                          "share of full supervision (%)": f"{100 * sel['miou'].mean() / full:.1f}"
                          if len(sel) and full > 0 else "-",
                          "CAM seed accuracy (%) (all-background)": "-" if seeds.empty else
                          f"{tables.fmt(**tables.mean_std(seeds['seed']))} ({100 * seeds['background'].mean():.2f})",
                          "Δ vs the kind's baseline [95 % CI]": delta, "runs": len(sel)})
    table = pd.DataFrame(lines)
    names = [*inputs.named.values(), reference_name]
    caption = (f"{preset.name}, weak and sparse labels on every training image: mIoU and tail-class mIoU "
               f"({', '.join(preset.tail)}), mean ± std (seeds); difference to the first row of each label kind "
               f"paired by seed, mean [95 % t-interval] (seeds); mean mIoU as a share of full supervision's; the masked protocol (CoSA's reported one: classes "
               f"absent from a val image's true labels are not predicted there) where the runs evaluated it; the "
               f"pixel accuracy of the CAM pseudo-masks on the training images (reprokit cam-seed) and of "
               f"all-background on the same pixels, where measured; "
               f"{inputs.note(names)}")
    built = Built(tables.write_table(table, inputs.out / inputs.name, caption), inputs.missing(names), table)
    return inputs.finish(built, inputs.used(names))


def cam_seed_accuracy(run_dirs) -> pd.DataFrame:
    """Per run with a measured CAM seed (``cam_seed.json``): its pixel accuracy and all-background's on the same
    pixels (columns ``seed``, ``background``)."""
    found = [json.loads(p.read_text()) for p in (Path(r) / SEED_FILE for r in run_dirs) if p.is_file()]
    return pd.DataFrame({"seed": [s["accuracy"] for s in found],
                         "background": [s["all_background"]["accuracy"] for s in found]})


def masked_miou(run_dirs) -> pd.Series:
    """mIoU of each run's evaluation under the masked protocol (``eval-*-masked.json``), where it has one."""
    values = []
    for run_dir in run_dirs:
        found = sorted(Path(run_dir).glob("eval-*-masked.json"))
        if found:
            values.append(json.loads(found[0].read_text())["miou"])
    return pd.Series(values, dtype=float)


def init_table(runs: pd.DataFrame, init: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """One line per method: mIoU pretrained, mIoU from scratch, and pretrained − scratch paired by seed."""
    rows = []
    for label, (pretrained, scratch) in init.items():
        a, b = tables.seed_values(runs, pretrained), tables.seed_values(runs, scratch)
        rows.append({"Method": label, "pretrained": tables.fmt(**tables.mean_std(a)),
                     "from scratch": tables.fmt(**tables.mean_std(b)),
                     "pretrained − scratch [95 % CI]": format_difference(paired_difference(a, b))})
    return pd.DataFrame(rows)


def paired_table(by_seed: dict[str, pd.Series], compare) -> pd.DataFrame:
    """One line per ``(A, B)`` of ``compare`` with runs of a common seed: A − B paired by seed, its interval,
    seeds and per-seed values; ``by_seed`` maps row labels to mIoU indexed by seed."""
    rows = []
    for a, b in compare:
        unknown = [x for x in (a, b) if x not in by_seed]
        if unknown:
            raise ValueError(f"summary compare ({a!r}, {b!r}): no summary row labeled {unknown}; "
                             f"rows are {sorted(by_seed)}")
        diff = paired_difference(by_seed[a], by_seed[b])
        if not diff["n"]:  # a row the runs folder does not have: no line rather than an empty one
            continue
        rows.append({"Comparison": f"{a} − {b}", "Δ mIoU [95 % CI]": format_difference(diff, count=False),
                     "seeds": diff["n"], "per seed": format_seed_differences(diff)})
    return pd.DataFrame(rows)


def selection_table(run_dirs) -> pd.DataFrame:
    """Pixel share and pseudo-label accuracy per selection category over seeds (percent)."""
    per_run = selection_summary(run_dirs)
    return pd.DataFrame([{"category": name,
                          "pixels (%)": tables.fmt(**tables.mean_std(per_run[f"sel/{c}"].dropna())),
                          "accuracy (%)": tables.fmt(**tables.mean_std(per_run[f"acc/{c}"].dropna()))}
                         for c, name in SELECTION_CATEGORIES.items()])


def build_claims(inputs: Inputs) -> Built:
    """The claims ledger (:mod:`reprokit.viz.claims`): each seed-paper claim, the paper's number, the paired
    difference measured on the preset's runs and its verdict; claims whose runs are missing or stale say so."""
    table, used = claims.ledger(inputs.runs, inputs.preset)
    counts = ", ".join(f"{n} {v}" for v, n in claims.verdict_counts(table).items())
    caption = (f"Claims of the seed papers on {inputs.preset.name} ({counts}). Measured: a − b paired by seed, "
               "mean [95 % t-interval] in percent points. Verdict: holds when the interval excludes 0 on the "
               "claimed side (for 'within m points': lies inside ±m), contradicted when it excludes 0 on the other "
               "side (lies outside ±m), not resolved otherwise or with one seed; "
               f"{provenance.provenance_note(used)}")
    built = Built(tables.write_table(table, inputs.out / inputs.name, caption), inputs.missing(), table)
    return inputs.finish(built, used)


def build_paper_cells(inputs: Inputs) -> Built:
    """The papers' VOC and Cityscapes numbers of every cell reprokit can run, with its reproduction where the
    runs folder holds that cell's runs (:mod:`reprokit.viz.paper_cells`)."""
    table, used = paper_cells.paper_cells_table(inputs.runs)
    done = int((table["reprokit"] != "-").sum())
    caption = (f"The papers' reported mIoU (%) for the {len(table)} VOC and Cityscapes cells reprokit has parameter "
               f"files for; reprokit: mean ± std (runs) of that file's runs under the runs folder ({done} of "
               f"{len(table)} cells run), delta = reprokit − paper; {provenance.provenance_note(used)}")
    files = tables.write_table(table, inputs.out / inputs.name, caption)
    files += tables.write_table(paper_cells.compact(table), inputs.out / f"{inputs.name}_compact",
                                f"{caption}. One line per paper, data set, method and backbone: each split's paper "
                                "mIoU and, in brackets, reprokit's (- until a run exists)")
    return inputs.finish(Built(files, [], table), used)


def build_fig6(inputs: Inputs) -> Built:
    """Fig. 6: per-class IoU of the tail classes, one bar per method."""
    data = plots.class_iou(inputs.runs, inputs.named, list(inputs.preset.tail))
    fig = plots.grouped_bars(data, f"Tail-class IoU, {inputs.preset.name}, 1/8 labels")
    return inputs.finish(Built(plots.save_figure(fig, inputs.out / "fig6", inputs.note()), inputs.missing(), data))


def build_fig8(inputs: Inputs) -> Built:
    """Fig. 8: mIoU against each swept hyper-parameter (``FIG8_AXES``), the paper's curve beside. The method's
    own cell (``named["default"]``: STPG with the paper's N and lambda_u) is each curve's default point at the
    seeds its sweep ran, so the sweeps do not train that configuration again (:func:`swept_with_default`)."""
    built, curves = Built(missing=inputs.missing()), []
    for column, xlabel in FIG8_AXES.items():
        name = inputs.named[column]
        curve = swept_with_default(inputs.runs, name, inputs.named["default"], f"method.{column}")
        fig = plots.hyper_curve(curve.assign(name=name), name, f"method.{column}", xlabel, tables.paper_curve(column))
        built.files += plots.save_figure(fig, inputs.out / f"fig8_{column}", provenance.provenance_note(curve))
        curves.append(curve.assign(parameter=column, value=curve[f"method.{column}"]) if len(curve) else curve)
    used = pd.concat(curves)
    built.table = used[["parameter", "value", "seed", "run_id", "miou"]] if len(used) else used
    return inputs.finish(built, used)


def swept_with_default(runs: pd.DataFrame, name: str, default: str, column: str) -> pd.DataFrame:
    """The runs of the sweep config ``name`` and, at each seed it ran, the run of ``default`` (the same
    configuration at its default ``column`` value) unless the sweep itself ran that value at that seed."""
    swept = runs_of(runs, name)
    if not len(swept):
        return swept
    base = runs_of(runs, default)
    base = base[base["seed"].isin(set(swept["seed"]))]
    ran = set(zip(swept["seed"], swept[column]))
    return pd.concat([swept, base.loc[[(s, v) not in ran for s, v in zip(base["seed"], base[column])]]])


def first_run_dir(runs: pd.DataFrame, name: str) -> Path | None:
    """The lowest-seed run of config ``name`` (t-SNE and qualitative figures show one model)."""
    sel = runs_of(runs, name).sort_values("seed") if len(runs) else runs
    return Path(sel.iloc[0]["path"]) if len(sel) else None


def _trained(runs: pd.DataFrame, named: dict[str, str]):
    """{label: TrainedRun} of the lowest-seed run of each config name, and the run-table rows used."""
    from reprokit.viz.samples import TrainedRun

    loaded = {label: TrainedRun(first_run_dir(runs, name)) for label, name in named.items()}
    used = runs[runs["path"].isin([str(r.run_dir) for r in loaded.values()])]
    return loaded, used


def build_fig7(inputs: Inputs, per_class: int) -> Built:
    """Fig. 7: t-SNE of decoder features of every run read; drawn only when all of them exist."""
    from reprokit.viz.samples import tsne_panels

    built = Built(missing=inputs.missing())
    if built.missing:
        return built
    panels, used = _trained(inputs.runs, inputs.named)
    built.files = plots.save_figure(tsne_panels(panels, per_class), inputs.out / "fig7",
                                    provenance.provenance_note(used))
    return inputs.finish(built, used)


def build_fig9(inputs: Inputs, images: int) -> Built:
    """Figs. 9/10: predictions of the runs that exist on the first ``images`` validation images."""
    from reprokit.viz.samples import qualitative_grid

    built = Built(missing=inputs.missing())
    have = {label: name for label, name in inputs.named.items() if name not in built.missing}
    if not have:
        return built
    loaded, used = _trained(inputs.runs, have)
    n_val = len(next(iter(loaded.values())).val)
    fig = qualitative_grid(loaded, list(range(min(images, n_val))))
    built.files = plots.save_figure(fig, inputs.out / "fig9", provenance.provenance_note(used))
    return inputs.finish(built, used)


def build_fig_weak(inputs: Inputs, images: int) -> Built:
    """One qualitative figure per label kind (``fig_weak_<kind>``): training images with their weak labels, the
    baseline's and the method's predictions and the ground truth; a kind is drawn when its runs exist."""
    from reprokit.viz.samples import weak_grid

    built = Built(missing=inputs.missing())
    used_all = []
    for kind in WEAK_ROWS:
        have = {label.split(": ", 1)[1]: name for label, name in inputs.named.items()
                if label.startswith(f"{kind}: ") and name not in built.missing}
        if not have:
            continue
        loaded, used = _trained(inputs.runs, have)
        n_train = len(next(iter(loaded.values())).training_images())
        fig = weak_grid(loaded, list(range(min(images, n_train))))
        stem = f"fig_weak_{kind.replace(' ', '_')}"
        built.files += plots.save_figure(fig, inputs.out / stem, provenance.provenance_note(used))
        used_all.append(used)
    return inputs.finish(built, pd.concat(used_all) if used_all else inputs.used([]))
