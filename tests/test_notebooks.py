"""Every notebook runs under papermill with tiny parameters, and its parameters cell is discoverable."""
import json
import runpy
from pathlib import Path

import papermill as pm
import pytest
import yaml

from reprokit.viz.presets import PRESETS
from tests.conftest import tiny_raw

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_discoverable(nb):
    params = pm.inspect_notebook(str(nb))
    assert params, f"{nb.name} has no parameters cell"
    assert all(p["inferred_type_name"] != "None" and p["help"] for p in params.values()), params


def test_generator_writes_exactly_the_committed_notebooks(tmp_path):
    runpy.run_path(str(ROOT / "scripts" / "make_notebooks.py"))["main"](["--out", str(tmp_path)])
    written = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.ipynb")}
    committed = {p.name: json.loads(p.read_text()) for p in NOTEBOOKS}
    assert sorted(written) == sorted(committed)
    stale = [name for name in committed if written[name] != committed[name]]
    assert not stale, f"{stale} differ from their source: run python scripts/make_notebooks.py and commit them"


def _execute(name, out_dir, **parameters):
    out = out_dir / f"{name}.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=parameters,
                        kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, digits_root):
    """Two tiny trained runs under the names the digits preset reads (supervised and STPG rows)."""
    from reprokit.configure import from_dict
    from reprokit.engine.train import train

    root = tmp_path_factory.mktemp("nbruns")
    t4 = PRESETS["digits"].table4
    stpg = {"name": "stpg", "proj_dim": 16, "bank_size": 8}
    for name, method in ((t4["L_s"], {"name": "supervised"}), (t4["STPG (all)"], stpg)):
        raw = tiny_raw(digits_root, method=method)
        raw["name"] = name
        train(from_dict(raw), root / "runs" / name)
    return root


@pytest.mark.slow
def test_train_and_evaluate_notebooks(tmp_path, digits_root):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_raw(digits_root)))
    run_dir = tmp_path / "run"
    nb = _execute("train", tmp_path, config=str(cfg), overrides=["train.iters=4"], run_dir=str(run_dir))
    assert (run_dir / "eval.json").is_file() and (run_dir / "checkpoint.pt").is_file()
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "mIoU" in text
    nb = _execute("evaluate", tmp_path, run_dir=str(run_dir))
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("name, outputs", [("summary", ["summary.md", "summary.tex"]), ("tables_1_3", ["table1.md", "table3.tex"]), ("table4", ["table4.md"]),
                                           ("table5", ["table5.tex"]), ("cw_bass_ablation", ["cw_bass_ablation.md"]),
                                           ("farcluss_ablation", ["farcluss_ablation.tex"]), ("fig6", ["fig6.png"]),
                                           ("fig7", ["fig7.png", "fig7.pdf"]), ("fig8", ["fig8_lambda_u.png"]),
                                           ("fig9", ["fig9.png"])])
def test_artefact_notebooks(trained_runs, tmp_path, name, outputs):
    out = tmp_path / "figures"
    _execute(name, tmp_path, runs=str(trained_runs / "runs"), out=str(out), preset="digits")
    for f in outputs:
        assert (out / f).is_file(), f
        assert (out / f"{f}.provenance.json").is_file()


@pytest.mark.slow
def test_inspector_notebook_headless(trained_runs, tmp_path):
    run = trained_runs / "runs" / PRESETS["digits"].table4["STPG (all)"]
    nb = _execute("inspect_pseudo_labels", tmp_path, run_dir=str(run), export_dir=str(tmp_path / "exp"), scale=2)
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
