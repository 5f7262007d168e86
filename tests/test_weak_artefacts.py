"""The weak-supervision table and figures, built from tiny trained runs of each sparse label kind."""
import pytest

from reprokit.configure import from_dict
from reprokit.engine.train import train
from reprokit.viz import registry
from tests.conftest import tiny_raw


@pytest.fixture(scope="module")
def weak_runs(tmp_path_factory, digits_root):
    """Two seeds of partial CE and AGMM-SASS on points (each seed its own simulated points), one of full
    supervision: the points block of the table."""
    root = tmp_path_factory.mktemp("weak-runs")
    cells = [("digits-weak-partial_ce-points", "supervised", "points"), ("digits-weak-agmm-points", "agmm", "points"),
             ("digits-supervised-full", "supervised", "dense")]
    for name, method, kind in cells:
        for seed in ((0, 1) if kind != "dense" else (0,)):
            raw = tiny_raw(digits_root, method={"name": method}, train={"seed": seed, "iters": 4},
                           data={"label_kind": kind, "labeled_fraction": None, "split_seed": seed})
            raw["name"] = name
            train(from_dict(raw), root / f"{name}-s{seed}")
    return root


def test_weak_table_pairs_each_row_with_its_kinds_baseline(weak_runs, tmp_path):
    built = registry.build("weak", weak_runs, tmp_path)
    t = built.table.set_index(["labels", "Method"])
    assert t.loc[("points", "partial CE"), "runs"] == 2 and t.loc[("points", "AGMM-SASS"), "runs"] == 2
    assert t.loc[("points", "partial CE"), "Δ vs the kind's baseline [95 % CI]"] == "-"
    assert t.loc[("points", "AGMM-SASS"), "Δ vs the kind's baseline [95 % CI]"].endswith("(2)")  # paired, 2 seeds
    assert t.loc[("scribbles", "AGMM-SASS"), "mIoU (%)"] == "-"
    # each row's mean mIoU as a share of full supervision's, computed from the runs themselves
    from reprokit.runs.results import load_runs

    runs = load_runs(weak_runs)
    full = runs[runs["name"] == "digits-supervised-full"]["miou"].mean()
    agmm = runs[runs["name"] == "digits-weak-agmm-points"]["miou"].mean()
    assert t.loc[("points", "AGMM-SASS"), "share of full supervision (%)"] == f"{100 * agmm / full:.1f}"
    assert t.loc[("points", "fully supervised"), "share of full supervision (%)"] == "100.0"
    assert t.loc[("scribbles", "AGMM-SASS"), "share of full supervision (%)"] == "-"
    assert "digits-weak-agmm-scribbles" in built.missing and "digits-weak-agmm-points" not in built.missing
    assert (tmp_path / "weak.md").is_file()


def test_weak_figure_draws_the_kinds_whose_runs_exist(weak_runs, tmp_path):
    built = registry.build("fig_weak", weak_runs, tmp_path, images=2)
    assert [f.name for f in built.files if f.suffix == ".png"] == ["fig_weak_points.png"]
    assert (tmp_path / "fig_weak_points.png.provenance.json").is_file()


def test_the_sparse_label_panel_colours_exactly_the_grown_labeled_pixels():
    import numpy as np

    from reprokit.viz.palette import display_palette
    from reprokit.viz.samples import weak_label_panel

    image = np.full((9, 9, 3), 200, np.uint8)
    sparse = np.full((9, 9), 11, np.uint8)
    sparse[4, 4] = 3
    panel = weak_label_panel(image, sparse, "digits", 11)
    coloured = (panel == display_palette("digits")[3]).all(-1)
    assert coloured.sum() == 9 and coloured[3:6, 3:6].all()
    assert (panel[0, 0] == 90).all()  # the rest dimmed


def test_a_run_on_image_labels_is_evaluated_under_both_protocols(digits_root, tmp_path):
    """CoSA's reported protocol masks the classes absent from each val image's true labels: a run on image labels
    writes both evaluations, each naming its protocol, the masked one never below the plain one (it can only
    remove wrong classes), and the weak table shows it."""
    import json

    raw = tiny_raw(digits_root, method={"name": "cam"}, train={"iters": 4},
                   data={"label_kind": "image", "labeled_fraction": None})
    raw["name"] = "digits-weak-cam"
    train(from_dict(raw), tmp_path / "runs" / "cam-s0")
    run = tmp_path / "runs" / "cam-s0"
    plain, masked = (json.loads((run / f).read_text()) for f in ("eval.json", "eval-whole-masked.json"))
    assert (plain["eval"]["mask_absent_classes"], masked["eval"]["mask_absent_classes"]) == (False, True)
    assert masked["pixel_accuracy"] >= plain["pixel_accuracy"]
    table = registry.build("weak", tmp_path / "runs", tmp_path / "out").table.set_index(["labels", "Method"])
    row = table.loc[("image labels", "CAM pseudo-masks (two stages)")]
    assert row["masked protocol mIoU (%)"] == f"{100 * masked['miou']:.2f}"
    assert row["CAM seed accuracy (%) (all-background)"] == "-"  # not measured yet

    from reprokit.runs.cam_seed import measure_cam_seed
    seed = measure_cam_seed(run)
    table = registry.build("weak", tmp_path / "runs", tmp_path / "out").table.set_index(["labels", "Method"])
    assert table.loc[("image labels", "CAM pseudo-masks (two stages)"), "CAM seed accuracy (%) (all-background)"] == \
        f"{100 * seed['accuracy']:.2f} ({100 * seed['all_background']['accuracy']:.2f})"
