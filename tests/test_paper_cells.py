"""The papers' VOC / Cityscapes cells: every mapped row exists once in paper_numbers.csv and points at a file that
exists; a cell's reproduction column fills from runs of its config name, and stays '-' without them."""
from pathlib import Path

import pandas as pd

from reprokit.viz import paper_cells, registry
from tests.test_tables import fake_run

ROOT = Path(__file__).resolve().parents[1]


def test_every_cell_has_one_paper_number_and_an_existing_file():
    cells = paper_cells.paper_cells()
    assert all((ROOT / c).is_file() for c in cells["config"])
    table, used = paper_cells.paper_cells_table(pd.DataFrame())
    assert len(table) == len(cells) and (table["reprokit"] == "-").all() and not len(used)
    row = table[(table["source"] == "Table 2") & (table["split"] == "1/8")].iloc[0]
    assert row["paper"] == "75.49" and row["backbone"] == "resnet50"


def test_reproduction_fills_from_runs_of_the_cell(tmp_path, digits_root):
    root = tmp_path / "runs"
    for seed, m in enumerate([0.70, 0.72]):
        fake_run(root, f"s{seed}", "voc-blended-stpg-1_8", seed, m)
    fake_run(root, "lam", "cityscapes-fig8-lambda", 0, 0.60, lambda_u=0.5)
    built = registry.build("paper_cells", root, tmp_path / "out")
    t = built.table.set_index(["source", "method / row", "split"])
    assert t.loc[("Table 2", "STPG", "1/8"), "reprokit"] == "71.00 ± 1.41 (2)"
    assert t.loc[("Table 2", "STPG", "1/8"), "delta"] == f"{71.00 - 75.49:+.2f}"
    assert t.loc[("Fig. 8b", "lambda_u=0.5", "1/8"), "reprokit"] == "60.00"
    assert t.loc[("Fig. 8b", "lambda_u=1.5", "1/8"), "reprokit"] == "-"
    assert "(3 of 44 cells run)" not in (tmp_path / "out" / "paper_cells.md").read_text()
    assert "(2 of 44 cells run)" in (tmp_path / "out" / "paper_cells.md").read_text()
