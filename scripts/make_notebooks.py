"""Write the notebooks in notebooks/ (edit here or in reprokit/viz/registry.py, rerun, commit the .ipynb).

The dedicated notebooks, where a person works interactively, have their cells below; the artefact notebooks
are written from the artefact registry, one per entry. Every notebook has one cell tagged ``parameters``
(papermill) whose lines read ``name: type = value  # meaning``, so ``papermill --help-notebook`` lists them;
the other cells only call reprokit. Cell ids are fixed, so an unchanged source writes identical files
(tests/test_notebooks.py compares them with the committed ones).

    python scripts/make_notebooks.py [--out notebooks]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nbformat as nbf

from reprokit.viz.registry import ARTEFACTS, Artefact

ROOT = Path(__file__).resolve().parents[1]

# Each notebook's time on 2 CPU cores from a fresh checkout, as measured by the browser test
# (tests/test_e2e_notebooks.py: JupyterLab, "Run All", kernel start and imports included); the first cell says it.
SECONDS = {
    "train": "about 20 s (300 steps), plus about 10 s on first use to build the digit scenes",
    "evaluate": "about 5 s",
    "inspect_pseudo_labels": "about 25 s once its demo run exists; building it first takes about 45 s more",
    "fig7": "about 100 s the first time, about 70 s of it building its two demo runs",
    "fig9": "about 30 s once its demo runs exist; building them first takes about 70 s more",
    "fig_weak": "about 40 s the first time, most of it building its two demo runs",
}
ARTEFACT_SECONDS = "about 6 s"  # the artefacts built from records alone

ROOT_NOTE = ("Relative paths resolve against the project root (the folder holding `notebooks/` and `params/`), "
             "wherever the kernel starts: JupyterLab, papermill from any folder, or a sweep.")


def heading(title: str, **parts: str) -> str:
    """The first cell: a title, then what it reproduces, reads, writes and how long it takes."""
    return f"# {title}\n\n" + "\n".join(f"- **{k.capitalize()}**: {v}" for k, v in parts.items()) + \
        f"\n\n{ROOT_NOTE}"


SETUP = "from reprokit.experiments.project import enter_project\n\nproject = enter_project()\n"

DEDICATED = {
    "train": [
        ("md", heading(
            "Train one experiment",
            reproduces="one cell of any table: trains and evaluates the experiment a parameter file describes, "
                       "in a child process (torchrun when `nproc > 1`), so a long run survives the kernel and "
                       "rerunning resumes from the last checkpoint. The default is a short run, "
                       "`params/notebook/short.yaml`: supervised training on the digit scenes with 1/8 labels for "
                       "300 of the benchmark's 4000 steps. A sweep runs this notebook once per cell, and the "
                       "executed copy is the run's record.",
            reads="`config` (YAML, may use `_base_`) and the data set it names; the digit scenes are built "
                  "under `data/digits` on first use.",
            writes="`run_dir` (`runs/` is untracked): resolved config, metrics, checkpoint, `eval.json`.",
            takes=f"{SECONDS['train']} with the default; the benchmark's full 4000 steps take about 7 minutes "
                  "(supervised) to 30 minutes (STPG).")),
        ("params", '''config: str = "params/notebook/short.yaml"  # parameter file (YAML, may use _base_)
overrides: list = []  # extra config settings, each a string as for reprokit train --set
run_dir: str = "runs/notebook/short-supervised"  # run directory (created, resumed, or reused when finished)
nproc: int = 1  # processes (GPUs) per run; > 1 launches torchrun'''),
        ("code", SETUP + 'config = project.path("config", config, expect="file")\n'
                         'run_dir = project.path("run_dir", run_dir)'),
        ("code", "from reprokit.experiments.notebook import per_class_table, train_in_subprocess\n\n"
                 "summary = train_in_subprocess(str(config), overrides, str(run_dir), nproc)\n"
                 "print(f\"mIoU {100 * summary['miou']:.2f}\")"),
        ("code", "per_class_table(run_dir).T"),
    ],
    "evaluate": [
        ("md", heading(
            "Evaluate a run",
            reproduces="the per-class IoU and the row-normalised confusion matrix of one finished run; the "
                       "default is a committed record of the digits benchmark, STPG with 1/8 labels, seed 0 "
                       "(4000 steps).",
            reads="`run_dir`'s `eval.json` alone (no checkpoint).",
            writes="nothing.",
            takes=SECONDS["evaluate"] + ".")),
        ("params", 'run_dir: str = "docs/runs/benchmark/digits-table4-stpg-s0"  '
                   '# a finished run directory (holds eval.json)'),
        ("code", SETUP + 'run_dir = project.path("run_dir", run_dir, expect="dir")'),
        ("code", "from reprokit.experiments.notebook import confusion_figure, per_class_table\n\nper_class_table(run_dir)"),
        ("code", "confusion_figure(run_dir);"),
    ],
    "inspect_pseudo_labels": [
        ("md", heading(
            "Pseudo-label inspector",
            reproduces="no paper figure: a view of the pseudo-labels a method trains on, per image. Image "
                       "slider, split, checkpoint (snapshots kept with `train.snapshot_every`), layers with "
                       "opacity, class filter, confidence threshold; STPG runs also show each pixel's selection "
                       "category and the batch's class mismatch scores. Changing layers or filters reuses the "
                       "cached forward pass.",
            reads="`run_dir`'s config and checkpoints, and the images of its data set. The default is "
                  "`runs/demo/digits-table4-stpg-s0`, a demo STPG run of 100 steps (not a result) that "
                  "`python -m reprokit.experiments.demo` builds, as this notebook does when it is missing; after `make main`, "
                  "`run_dir = \"runs/quick/digits-table4-stpg-s0\"` opens the quick job's 2000-step STPG run.",
            writes="the current view as PNG into `export_dir` when you press \"Export PNG\".",
            takes=SECONDS["inspect_pseudo_labels"] + ".")),
        ("params", '''run_dir: str = "runs/demo/digits-table4-stpg-s0"  # a run directory of a method with pseudo-labels
export_dir: str = "outputs/inspector"  # where "Export PNG" writes the current view
scale: int = 6  # display magnification of the small embedded images'''),
        ("code", "from reprokit.experiments import demo\n" + SETUP + 'run_dir = demo.run_directory(project, "run_dir", run_dir)\n'
                         'export_dir = project.path("export_dir", export_dir)'),
        ("code", "from reprokit.inspect import PseudoLabelInspector\n\n"
                 "inspector = PseudoLabelInspector.from_run(run_dir, export_dir=export_dir, scale=scale)\n"
                 "inspector.widget"),
    ],
}


def artefact_cells(a: Artefact) -> list:
    """First cell, parameters (the common ones and the artefact's own), path resolution, one builder call."""
    if a.loads_networks:
        reads = ("`runs`: each shown run's checkpoint, and the validation images its config names (the data set "
                 "must be on disk). The committed records hold no checkpoints, so the default is `runs/demo`: "
                 "short demo runs (100-150 steps, not results) that `python -m reprokit.experiments.demo` builds, as this "
                 "notebook does when they are missing; after `make main`, `runs = \"runs/quick\"` shows the "
                 "quick job's runs.")
        resolve = f'runs = demo.runs_folder(project, "runs", runs, {a.name!r})\n'
    else:
        reads = ("`runs`: the run records (config, evaluation, metrics) alone, no checkpoints. The default, "
                 "`docs/runs/benchmark`, holds the committed records of the digits benchmark (5 seeds), so it "
                 "trains nothing.")
        resolve = 'runs = project.path("runs", runs, expect="dir")\n'
    own = "".join(f", {p.name}={p.name}" for p in a.params)
    return [
        ("md", heading(a.title, reproduces=a.reproduces[0].upper() + a.reproduces[1:] + ".", reads=reads,
                       writes=f"{a.writes} into `out` (default `outputs/`, untracked), each with a "
                              "`.provenance.json` sidecar naming the runs used.",
                       takes=SECONDS.get(a.name, ARTEFACT_SECONDS) + ".")),
        ("params", "\n".join(p.line() for p in a.notebook_params)),
        ("code", ("from reprokit.experiments import demo\n" if a.loads_networks else "") + SETUP + resolve
                 + 'out = project.path("out", out)'),
        ("code", "from reprokit.experiments.notebook import show_outputs\nfrom reprokit.viz.registry import build\n\n"
                 f"built = build({a.name!r}, runs, out, preset{own})\nif built.missing:\n"
                 "    print('missing runs:', ', '.join(built.missing))\nshow_outputs(built.files)\nbuilt.table"),
    ]


def notebook(cells: list):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(cells):
        cell = nbf.v4.new_markdown_cell(source) if kind == "md" else nbf.v4.new_code_cell(source)
        cell.id = f"cell-{i}"  # nbformat draws random ids; fixed ones keep the files reproducible
        if kind == "params":
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    return nb


def notebooks() -> dict:
    """{name: notebook} of every notebook in notebooks/."""
    cells = {**DEDICATED, **{a.name: artefact_cells(a) for a in ARTEFACTS}}
    return {name: notebook(c) for name, c in cells.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "notebooks")
    out = p.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks().items():
        nbf.write(nb, out / f"{name}.ipynb")


if __name__ == "__main__":
    main()
