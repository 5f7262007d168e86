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

from reprokit.viz.registry import ARTEFACTS, COMMON_PARAMS, Artefact

ROOT = Path(__file__).resolve().parents[1]

DEDICATED = {
    "train": [
        ("md", "# Train one experiment\n\nRuns `reprokit train` in a child process (torchrun when `nproc > 1`), so a "
               "long run survives the kernel; rerunning resumes from the last checkpoint. The executed copy of this "
               "notebook is the run's record when a sweep runs it."),
        ("params", '''config: str = "params/digits/supervised.yaml"  # parameter file (YAML, may use _base_)
overrides: list = []  # extra config settings, each a string as for reprokit train --set
run_dir: str = "runs/notebook/supervised"  # run directory (created, resumed, or reused when finished)
nproc: int = 1  # processes (GPUs) per run; > 1 launches torchrun'''),
        ("code", "from reprokit.notebook import per_class_table, train_in_subprocess"),
        ("code", "summary = train_in_subprocess(config, overrides, run_dir, nproc)\n"
                 "print(f\"mIoU {100 * summary['miou']:.2f}\")"),
        ("code", "per_class_table(run_dir).T"),
    ],
    "evaluate": [
        ("md", "# Evaluate a run\n\nPer-class IoU and the confusion matrix of a finished run directory."),
        ("params", '''run_dir: str = "runs/notebook/supervised"  # a finished run directory (holds eval.json)'''),
        ("code", "from reprokit.notebook import confusion_figure, per_class_table"),
        ("code", "per_class_table(run_dir)"),
        ("code", "confusion_figure(run_dir);"),
    ],
    "inspect_pseudo_labels": [
        ("md", "# Pseudo-label inspector\n\nBrowse a run's pseudo-labels: image slider, split, checkpoint (snapshots "
               "kept with `train.snapshot_every`), layers with opacity, class filter, confidence threshold. STPG runs "
               "also show the selection category per pixel and the batch's class mismatch scores. Changing layers "
               "or filters reuses the cached forward pass."),
        ("params", '''run_dir: str = "runs/quick/digits-table4-stpg-s0"  # a run directory of a method with pseudo-labels
export_dir: str = "figures"  # where "Export PNG" writes the current view
scale: int = 6  # display magnification of the small embedded images'''),
        ("code", "from reprokit.inspect import PseudoLabelInspector"),
        ("code", "inspector = PseudoLabelInspector.from_run(run_dir, export_dir=export_dir, scale=scale)\n"
                 "inspector.widget"),
    ],
}


def artefact_cells(a: Artefact) -> list:
    """Heading, parameters (the common ones and the artefact's own), and one call of its builder."""
    reads = ("each shown run's checkpoint and the validation images its config names, so the data set must be "
             "on disk" if a.loads_networks else "the runs' records (config, evaluation, metrics) alone")
    own = "".join(f", {p.name}={p.name}" for p in a.params)
    return [
        ("md", f"# {a.title}\n\nRebuilt without training from {reads}. Files go to `out`, each with a "
               "`.provenance.json` sidecar naming the runs used."),
        ("params", "\n".join(p.line() for p in (*COMMON_PARAMS, *a.params))),
        ("code", "from reprokit.notebook import show_outputs\nfrom reprokit.viz.registry import build"),
        ("code", f"built = build({a.name!r}, runs, out, preset{own})\nif built.missing:\n"
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
