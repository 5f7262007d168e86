"""Write the notebooks in notebooks/ from the cell sources below (edit here, rerun, commit the .ipynb).

Every notebook has one cell tagged ``parameters`` (papermill) whose lines read ``name: type = value  # meaning``,
so ``papermill --help-notebook`` lists them; the other cells only call reprokit.
"""
from __future__ import annotations

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1]
ARTEFACT_PARAMS = '''runs: str = "runs/quick"  # folder holding the run directories (searched recursively)
out: str = "figures"  # where tables and figures are written
preset: str = "digits"  # which runs feed the artefact: digits | cityscapes | voc'''


def artefact(title: str, builder: str, extra: str = "") -> list:
    return [
        ("md", f"# {title}\n\nRebuilt from run directories alone (no training). Files go to `out`, each with a "
               "`.provenance.json` sidecar naming the runs used."),
        ("params", ARTEFACT_PARAMS + extra),
        ("code", "from reprokit.viz.artefacts import BUILDERS\nfrom reprokit.notebook import show_outputs"),
        ("code", f"built = {builder}\nif built.missing:\n    print('missing runs:', ', '.join(built.missing))\n"
                 "show_outputs(built.files)\nbuilt.table"),
    ]


NOTEBOOKS = {
    "train": [
        ("md", "# Train one experiment\n\nRuns `reprokit train` in a child process (torchrun when `nproc > 1`), so a "
               "long run survives the kernel; rerunning resumes from the last checkpoint. The executed copy of this "
               "notebook is the run's record when a sweep runs it."),
        ("params", '''config: str = "params/digits/supervised.yaml"  # parameter file (YAML, may use _base_)
overrides: list = []  # extra config settings, each a string as for reprokit train --set
run_dir: str = "runs/notebook/supervised"  # run directory (created, resumed, or reused when finished)
nproc: int = 1  # processes (GPUs) per run; > 1 launches torchrun'''),
        ("code", "from reprokit.notebook import confusion_figure, per_class_table, train_in_subprocess"),
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
    "summary": artefact("Methods at 1/8 labels", "BUILDERS['summary'](runs, out, preset)"),
    "tables_1_3": artefact("Tables 1-3: comparison with the paper", "BUILDERS['tables_1_3'](runs, out, preset)"),
    "table4": artefact("Table 4: module ablation", "BUILDERS['table4'](runs, out, preset)"),
    "table5": artefact("Table 5: pixel-selection sets", "BUILDERS['table5'](runs, out, preset)"),
    "fig6": artefact("Fig. 6: tail-class IoU", "BUILDERS['fig6'](runs, out, preset)"),
    "fig7": artefact("Fig. 7: t-SNE of decoder features", "BUILDERS['fig7'](runs, out, preset)"),
    "fig8": artefact("Fig. 8: memory bank size and lambda_u", "BUILDERS['fig8'](runs, out, preset)"),
    "fig9": artefact("Figs. 9/10: qualitative results", "BUILDERS['fig9'](runs, out, preset)"),
}


def cell(kind: str, source: str):
    if kind == "md":
        return nbf.v4.new_markdown_cell(source)
    c = nbf.v4.new_code_cell(source)
    if kind == "params":
        c.metadata["tags"] = ["parameters"]
    return c


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [cell(k, s) for k, s in cells]
        nbf.write(nb, ROOT / "notebooks" / f"{name}.ipynb")


if __name__ == "__main__":
    main()
