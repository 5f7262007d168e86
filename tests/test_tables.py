"""Tables, figures and provenance from small synthetic run directories: the numbers in the outputs
equal the inputs (means, stds, gains, deltas to the paper)."""
import json
import math
import shutil

import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import stats

from reprokit.configure import from_dict
from reprokit.runs.results import load_runs
from reprokit.viz import registry, tables
from tests.conftest import tiny_raw

CLASSES = ["background"] + [f"digit {d}" for d in range(10)]


def fake_run(root, run_id, name, seed, miou, method="stpg", dataset_raw=None, iou=None, **method_params):
    """A run directory as the engine writes it, with chosen numbers (no training)."""
    raw = tiny_raw(dataset_raw or root, method={"name": method, **method_params}, train={"seed": seed})
    raw["name"] = name
    cfg = from_dict(raw)
    d = root / run_id
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    (d / "meta.json").write_text(json.dumps({"config_hash": cfg.hash(), "labeled_count": 12,
                                             "git": {"commit": f"commit-{run_id}"}}))
    iou = iou or {c: miou for c in CLASSES}
    (d / "eval.json").write_text(json.dumps({"miou": miou, "iou": iou, "class_names": CLASSES}))
    return d


@pytest.fixture
def runs(tmp_path, digits_root):
    root = tmp_path / "runs"
    values = {"digits-table4-ls": [0.40, 0.44], "digits-table4-mt": [0.50], "digits-table4-stpg": [0.60, 0.62, 0.64]}
    for name, mious in values.items():
        for seed, m in enumerate(mious):
            method = "supervised" if name.endswith("ls") else "stpg"
            fake_run(root, f"{name}-s{seed}", name, seed, m, method=method, dataset_raw=digits_root)
    return root


def test_ablation_table_means_stds_gains(runs, tmp_path):
    built = registry.build("table4", runs, tmp_path / "fig")
    t = built.table.set_index("Row")
    assert t.loc["L_s", "mIoU (%)"] == f"42.00 ± {100 * pd.Series([0.40, 0.44]).std():.2f} (2)"
    assert t.loc["STPG (all)", "mIoU (%)"] == "62.00 ± 2.00 (3)"
    assert t.loc["+L_u (MT)", "mIoU (%)"] == "50.00" and t.loc["+L_u (MT)", "runs"] == 1
    # paired with L_s on seeds 0 and 1: differences 20 and 18 points, half-width t_{0.975,1} * sd / sqrt(2)
    half = stats.t.ppf(0.975, 1) * pd.Series([20.0, 18.0]).std() / math.sqrt(2)
    assert t.loc["STPG (all)", "gain [95 % CI]"] == f"+19.00 [{19 - half:+.2f}, {19 + half:+.2f}] (2)"
    assert t.loc["+L_u (MT)", "gain [95 % CI]"] == "+10.00 (1)" and t.loc["+DM", "gain [95 % CI]"] == "-"
    assert t.loc["STPG (all)", "paper"] == "75.14" and t.loc["STPG (all)", "paper gain"] == "+8.40"
    assert t.loc["+DM", "mIoU (%)"] == "-"
    assert built.missing == ["digits-table4-dm", "digits-table4-dm_dcl", "digits-table4-dm_ps"]
    md, tex = (tmp_path / "fig" / "table4.md").read_text(), (tmp_path / "fig" / "table4.tex").read_text()
    assert "62.00 ± 2.00 (3)" in md and "\\toprule" in tex and "62.00 $\\pm$ 2.00 (3)" in tex


def test_provenance_sidecars_name_the_runs_used(runs, tmp_path):
    built = registry.build("table4", runs, tmp_path / "fig")
    for f in built.files:
        side = json.loads((f.parent / f"{f.name}.provenance.json").read_text())
        assert sorted(r["run_id"] for r in side["runs"]) == sorted(p.name for p in runs.iterdir())
        assert all(r["git_commit"] == f"commit-{r['run_id']}" and r["config_hash"] for r in side["runs"])
        assert side["notebook"] == "table4.ipynb" and side["parameters"]["preset"] == "digits"


def test_comparison_table_delta_to_paper(tmp_path, digits_root):
    root = tmp_path / "runs"
    for seed, m in enumerate([0.70, 0.72]):
        d = fake_run(root, f"c-s{seed}", "cityscapes-stpg-1_8", seed, m, dataset_raw=digits_root)
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        cfg["data"]["dataset"], cfg["data"]["labeled_fraction"] = "cityscapes", 0.125
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    table = tables.comparison_table(load_runs(root), "Table 1").set_index("Method")
    assert table.loc["STPG", "1/8"] == "75.14" and table.loc["MMFA", "1/4"] == "76.90"
    assert table.loc["reprokit STPG", "1/8"].startswith("71.00 ± 1.41 (2)")
    assert table.loc["delta to paper STPG", "1/8"] == f"{71.0 - 75.14:+.2f}"
    assert table.loc["reprokit STPG", "1/16"] == "-"


def test_fig6_bars_use_the_per_class_numbers(tmp_path, digits_root):
    root = tmp_path / "runs"
    iou = {c: 0.1 * i for i, c in enumerate(CLASSES)}
    fake_run(root, "a", "digits-table4-ls", 0, 0.3, method="supervised", dataset_raw=digits_root, iou=iou)
    built = registry.build("fig6", root, tmp_path / "fig")
    d = built.table.set_index(["group", "class"])
    assert d.loc[("supervised", "digit 9"), "mean"] == pytest.approx(100.0)
    assert math.isnan(d.loc[("STPG", "digit 9"), "mean"])
    assert sorted(built.missing) == ["digits-cw_bass-1_8", "digits-farcluss-1_8", "digits-fixmatch-1_8", "digits-table4-mt",
                                     "digits-table4-stpg"]
    assert Image.open(tmp_path / "fig" / "fig6.png").size[0] > 100
    assert (tmp_path / "fig" / "fig6.pdf").read_bytes()[:4] == b"%PDF"


def test_fig8_curves_take_their_default_point_from_the_method_cell(tmp_path, digits_root):
    root = tmp_path / "runs"
    for n, m in [(0, 0.5), (64, 0.55)]:
        fake_run(root, f"b{n}", "digits-fig8-bank", 0, m, dataset_raw=digits_root, bank_size=n)
    for lam, m in [(0.0, 0.45), (1.0, 0.58)]:  # this sweep ran the default value itself
        fake_run(root, f"l{lam}", "digits-fig8-lambda", 0, m, dataset_raw=digits_root, lambda_u=lam)
    for seed, m in [(0, 0.6), (1, 0.7)]:  # STPG's own cells, the paper's N and lambda_u
        fake_run(root, f"stpg{seed}", "digits-table4-stpg", seed, m, dataset_raw=digits_root)
    runs = load_runs(root)
    assert sorted(runs[runs["name"] != "digits-fig8-lambda"]["method.bank_size"]) == [0, 64, 256, 256]
    built = registry.build("fig8", root, tmp_path / "fig")
    assert built.missing == []
    curve = {p: list(zip(t["value"], t["miou"], t["run_id"])) for p, t in built.table.groupby("parameter")}
    assert sorted(curve["bank_size"]) == [(0, 0.5, "b0"), (64, 0.55, "b64"), (256, 0.6, "stpg0")]
    assert sorted(curve["lambda_u"]) == [(0.0, 0.45, "l0.0"), (1.0, 0.58, "l1.0")]
    assert (tmp_path / "fig" / "fig8_bank_size.png").is_file()
    side = json.loads((tmp_path / "fig" / "fig8_bank_size.png.provenance.json").read_text())
    assert sorted(r["run_id"] for r in side["runs"]) == ["b0", "b64", "l0.0", "l1.0", "stpg0"]
    shutil.rmtree(root / "l0.0"), shutil.rmtree(root / "l1.0")
    assert registry.build("fig8", root, tmp_path / "fig2").missing == ["digits-fig8-lambda"]


def test_selection_summary_averages_the_late_steps(tmp_path):
    from reprokit.runs.results import selection_summary

    run = tmp_path / "r"
    run.mkdir()
    records = [{"step": s, "diag/sel/cons": 0.1 * s, "diag/acc/hmis": 0.5 + 0.01 * s} for s in range(1, 11)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    row = selection_summary([run]).iloc[0]
    assert row["sel/cons"] == pytest.approx(0.1 * 7.5)  # steps 5..10
    assert row["acc/hmis"] == pytest.approx(0.5 + 0.01 * 7.5)
    assert math.isnan(row["acc/lmis"])


def test_summary_with_tail_classes_and_selection_accuracy(tmp_path, digits_root):
    root = tmp_path / "runs"
    iou = {c: (0.9 if c == "background" else 0.2) for c in CLASSES}
    for seed, acc in enumerate([0.6, 0.8]):
        d = fake_run(root, f"stpg-s{seed}", "digits-table4-stpg", seed, 0.5, dataset_raw=digits_root, iou=iou)
        (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "diag/sel/hmis": 0.1, "diag/acc/hmis": acc}) + "\n")
    built = registry.build("summary", root, tmp_path / "fig")
    row = built.table.set_index("Method").loc["STPG"]
    assert row["mIoU (%)"] == "50.00 ± 0.00 (2)" and row["tail mIoU (%)"] == "20.00 ± 0.00 (2)"
    sel = (tmp_path / "fig" / "summary_selection.md").read_text()
    assert "| highly mismatched | 10.00 ± 0.00 (2) | 70.00 ± 14.14 (2) |" in sel
    assert "digits-supervised-full" in built.missing


def test_summary_pairs_seeds_against_supervised_and_writes_the_paired_table(tmp_path, digits_root):
    root = tmp_path / "runs"
    values = {"digits-table4-ls": [0.40, 0.44, 0.42], "digits-table4-mt": [0.45, 0.50],
              "digits-table4-stpg": [0.50, 0.52, 0.55]}
    for name, mious in values.items():
        for seed, m in enumerate(mious):
            d = fake_run(root, f"{name}-s{seed}", name, seed, m, dataset_raw=digits_root)
            (d / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    built = registry.build("summary", root, tmp_path / "fig")
    t = built.table.set_index("Method")["Δ vs supervised [95 % CI]"]
    half = stats.t.ppf(0.975, 2) * pd.Series([10.0, 8.0, 13.0]).std() / math.sqrt(3)
    assert t["STPG"] == f"+10.33 [{31 / 3 - half:+.2f}, {31 / 3 + half:+.2f}] (3)"
    assert t["supervised"] == "-" and "FixMatch" not in t  # rows without runs are left out, not shown empty
    assert built.missing and "digits-fixmatch-1_8" in built.missing  # ... and still reported as missing
    paired = (tmp_path / "fig" / "summary_paired.md").read_text()
    assert "| STPG − Mean Teacher | +3.50 [" in paired and "| 2 | s0 +5.00, s1 +2.00 |" in paired
    assert "FixMatch − supervised" not in paired
    assert "$-$" in (tmp_path / "fig" / "summary_paired.tex").read_text()
    assert "$\\Delta$ vs supervised" in (tmp_path / "fig" / "summary.tex").read_text()


def test_summary_shows_a_reference_measurement_beside_the_runs(tmp_path, digits_root):
    """The quick job's summary: its rows beside the same rows of a folder of committed records, labelled as
    such, and the machine the runs name in the caption."""
    quick, reference = tmp_path / "quick", tmp_path / "reference"
    fake_run(quick, "ls-s0", "digits-table4-ls", 0, 0.40, dataset_raw=digits_root)
    fake_run(quick, "mt-s0", "digits-table4-mt", 0, 0.43, dataset_raw=digits_root)
    for seed, (ls, mt) in enumerate([(0.50, 0.55), (0.52, 0.58), (0.51, 0.57)]):
        fake_run(reference, f"ls-s{seed}", "digits-table4-ls", seed, ls, dataset_raw=digits_root)
        fake_run(reference, f"mt-s{seed}", "digits-table4-mt", seed, mt, dataset_raw=digits_root)
    built = registry.build("summary", quick, tmp_path / "fig", reference=str(reference))
    t = built.table.set_index("Method")
    assert list(t.index) == ["Mean Teacher", "supervised"]
    assert t.loc["Mean Teacher", "Δ vs supervised [95 % CI]"] == "+3.00 (1)"
    assert t.loc["Mean Teacher", "committed measurement: mIoU (%)"] == "56.67 ± 1.53 (3)"
    half = stats.t.ppf(0.975, 2) * pd.Series([5.0, 6.0, 6.0]).std() / math.sqrt(3)
    assert t.loc["Mean Teacher", "committed measurement: Δ vs supervised [95 % CI]"] == \
        f"+5.67 [{17 / 3 - half:+.2f}, {17 / 3 + half:+.2f}] (3)"
    caption = (tmp_path / "fig" / "summary.md").read_text().splitlines()[0]
    assert f"Committed measurement: the records in {reference}" in caption and "vary by processor" in caption
    assert "ran on a machine not recorded (2 runs)" in caption
    same = registry.build("summary", quick, tmp_path / "same", reference=str(quick))  # itself: no extra columns
    assert "committed measurement: mIoU (%)" not in same.table


def test_fig6_error_bars_are_t_intervals_of_the_mean(tmp_path, digits_root):
    root = tmp_path / "runs"
    for seed, m in enumerate([0.2, 0.3, 0.4]):
        fake_run(root, f"s{seed}", "digits-table4-stpg", seed, m, dataset_raw=digits_root)
    built = registry.build("fig6", root, tmp_path / "fig")
    row = built.table.set_index(["group", "class"]).loc[("STPG", "digit 5")]
    assert row["mean"] == pytest.approx(30.0)
    assert row["ci"] == pytest.approx(stats.t.ppf(0.975, 2) * 10.0 / math.sqrt(3))
    assert built.table.set_index(["group", "class"]).loc[("supervised", "digit 5"), "ci"] == 0.0


def test_ablation_gain_without_shared_seeds_is_the_unpaired_difference():
    runs = pd.DataFrame({"name": ["a", "a", "b"], "seed": [0, 1, 5], "miou": [0.40, 0.42, 0.50]})
    t = tables.ablation_table(runs, {"first": "a", "second": "b", "absent": "c"}).set_index("Row")
    assert t["gain [95 % CI]"].to_dict() == {"first": "-", "second": "+9.00 (unpaired)", "absent": "-"}


def test_summary_init_table_pairs_pretrained_against_scratch(tmp_path, digits_root):
    root = tmp_path / "runs"
    values = {"digits-table4-ls": [0.50, 0.54], "digits-scratch-ls": [0.30, 0.40], "digits-table4-stpg": [0.6],
              "digits-oracle": [0.7, 0.72]}
    for name, mious in values.items():
        for seed, m in enumerate(mious):
            method = "stpg" if "stpg" in name else "supervised"
            d = fake_run(root, f"{name}-s{seed}", name, seed, m, method=method, dataset_raw=digits_root)
            (d / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    built = registry.build("summary", root, tmp_path / "fig")
    assert built.table.set_index("Method").loc["oracle (hidden labels)", "Δ vs supervised [95 % CI]"] \
        .startswith("+19.00 [")
    init = (tmp_path / "fig" / "summary_init.md").read_text()
    assert "| supervised | 52.00 ± 2.83 (2) | 35.00 ± 7.07 (2) | +17.00 [" in init
    assert "| STPG | 60.00 | - | - |" in init
