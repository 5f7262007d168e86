"""Numbers of one code version: its record in meta.json, the stale flag, the machines, and the provenance notes
of tables and figures (how a code version is computed: test_code_versions.py)."""
import json

import pandas as pd
import pytest
import yaml

from reprokit import cli
from reprokit.codeversion import SCHEME, code_version
from reprokit.engine import rundir
from reprokit.configure import load_config
from reprokit.models.pretrain import weights_path
from reprokit.machine import machine_description
from reprokit.runs.origin import CELL_RECORD, backbone_description, machine_label, recorded_origin, run_backbone
from reprokit.runs.results import compare_runs, load_runs
from reprokit.viz import registry
from tests.test_tables import fake_run


def test_meta_records_the_code_version_next_to_the_commit(tmp_path, tiny_cfg):
    rundir.write_meta(tmp_path, tiny_cfg(), {"status": "running"})
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["code_version"] == code_version(method="supervised", dataset="digits") and "commit" in meta["git"]
    assert meta["code_version_scheme"] == SCHEME


@pytest.fixture
def current(monkeypatch):
    """The current code version, pinned so that edits to the package while the tests run change nothing."""
    monkeypatch.setattr("reprokit.codeversion.CodeVersions.today", lambda self, scheme, method, dataset: "v-now")
    monkeypatch.setattr("reprokit.viz.provenance.code_version", lambda: "v-now")
    return "v-now"


def versioned_run(root, digits_root, run_id, name, seed, miou, version, commit):
    d = fake_run(root, run_id, name, seed, miou, dataset_raw=digits_root)
    meta = json.loads((d / "meta.json").read_text())
    meta.update({"code_version": version, "code_version_scheme": SCHEME, "git": {"commit": commit, "dirty": False}})
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    return d


def test_stale_flags_runs_of_other_or_unknown_code(tmp_path, digits_root, current):
    root = tmp_path / "runs"
    versioned_run(root, digits_root, "a", "x", 0, 0.5, current, "a" * 40)
    versioned_run(root, digits_root, "b", "x", 1, 0.5, "older", "b" * 40)
    fake_run(root, "c", "x", 2, 0.5, dataset_raw=digits_root)  # no code version, commit not in the repository
    runs = load_runs(root).set_index("run_id")
    assert runs["stale"].to_dict() == {"a": False, "b": True, "c": True}
    assert runs.loc["a", "code_version"] == current and pd.isna(runs.loc["c", "code_version"])
    assert runs.loc["a", "git_dirty"] == False and pd.isna(runs.loc["c", "git_dirty"])  # noqa: E712


def test_captions_and_sidecars_state_the_code_versions(tmp_path, digits_root, current):
    root = tmp_path / "runs"
    versioned_run(root, digits_root, "ls0", "digits-table4-ls", 0, 0.40, current, "a" * 40)
    versioned_run(root, digits_root, "ls1", "digits-table4-ls", 1, 0.42, current, "a" * 40)
    registry.build("table4", root, tmp_path / "one")
    assert "; runs of commit aaaaaaa\n" in (tmp_path / "one" / "table4.md").read_text()

    versioned_run(root, digits_root, "stpg0", "digits-table4-stpg", 0, 0.60, "older", "b" * 40)
    registry.build("table4", root, tmp_path / "two")
    caption = (tmp_path / "two" / "table4.md").read_text().splitlines()[0]
    assert caption.endswith("built from runs of 2 code versions (commits aaaaaaa, bbbbbbb); 1 stale run")
    side = json.loads((tmp_path / "two" / "table4.md.provenance.json").read_text())
    assert side["code_version"] == current
    assert {r["run_id"]: (r["code_version"], r["stale"]) for r in side["runs"]} == {
        "ls0": (current, False), "ls1": (current, False), "stpg0": ("older", True)}

    registry.build("summary", root, tmp_path / "sum")
    assert "2 code versions" in (tmp_path / "sum" / "summary.md").read_text()
    registry.build("fig6", root, tmp_path / "fig")
    assert json.loads((tmp_path / "fig" / "fig6.png.provenance.json").read_text())["runs"]


def test_a_machine_description_names_the_processor_and_its_kernels():
    import torch

    machine = machine_description()
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cpu"] and machine["cpu_count"] >= 1
    assert machine_label(machine).startswith(f"{machine['cpu']}, {machine['cpu_capability']}")
    assert machine_label(None) is None


def test_a_backbone_description_digests_the_weights_a_run_starts_from(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROKIT_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    cfg = load_config("params/digits/table4/ls.yaml")
    assert backbone_description(load_config("params/digits/table4/ls.yaml", ["model.pretrained=none"]).model) is None
    path = weights_path(cfg.model)
    assert backbone_description(cfg.model) == {"file": path.name, "sha256": None, "heldout_top1": None}
    path.parent.mkdir()
    path.write_bytes(b"weights of one machine")
    path.with_name(path.name + ".json").write_text(json.dumps({"heldout_top1": 0.98}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    first = run_backbone(run)
    assert first["file"] == path.name and first["heldout_top1"] == 0.98 and len(first["sha256"]) == 16
    path.write_bytes(b"weights of another machine")
    assert run_backbone(run)["sha256"] != first["sha256"] and run_backbone(tmp_path) is None


def on_machine(run, cpu, capability="AVX2"):
    (run / CELL_RECORD).write_text(json.dumps({"ok": True, "machine": {
        "cpu": cpu, "cpu_capability": capability, "cpu_count": 2, "gpu": None}}))


def test_tables_name_the_machines_when_runs_come_from_more_than_one(tmp_path, digits_root, capsys, current):
    root = tmp_path / "runs"
    runs = [versioned_run(root, digits_root, f"ls{s}", "digits-table4-ls", s, 0.4, current, "a" * 40)
            for s in range(3)]
    on_machine(runs[0], "CPU A")
    on_machine(runs[1], "CPU A")
    (runs[2] / CELL_RECORD).write_text("{not json")
    assert recorded_origin(runs[2]) == {} and recorded_origin(tmp_path) == {}
    machines = load_runs(root).set_index("run_id")["machine"]
    assert machines[["ls0", "ls1"]].tolist() == ["CPU A, AVX2"] * 2 and pd.isna(machines["ls2"])
    registry.build("table4", root, tmp_path / "mixed")
    caption = (tmp_path / "mixed" / "table4.md").read_text().splitlines()[0]
    assert caption.endswith("; runs of several machines (2 on CPU A, AVX2, 1 on a machine not recorded)")
    side = json.loads((tmp_path / "mixed" / "table4.md.provenance.json").read_text())
    assert [r["machine"] for r in side["runs"]] == ["CPU A, AVX2", "CPU A, AVX2", None]
    assert cli.main(["results", str(root), "--per-run"]) == 0
    out = capsys.readouterr().out
    assert "not recorded" in out.splitlines()[3]
    assert "runs of several machines (column 'machine' with --per-run): 2 on CPU A, AVX2, 1 on a machine not " \
           "recorded;" in out
    on_machine(runs[2], "CPU A")
    registry.build("table4", root, tmp_path / "one")
    assert "machine" not in (tmp_path / "one" / "table4.md").read_text().splitlines()[0]
    assert cli.main(["results", str(root)]) == 0
    assert "several machines" not in capsys.readouterr().out


def test_results_command_counts_stale_runs(tmp_path, digits_root, capsys, current):
    root = tmp_path / "runs"
    versioned_run(root, digits_root, "a", "x", 0, 0.5, current, "a" * 40)
    versioned_run(root, digits_root, "b", "x", 1, 0.5, "older", "b" * 40)
    assert cli.main(["results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "stale" in out.splitlines()[0] and "1 of 2 runs stale" in out and "code versions stpg on digits v-now" in out
    assert "50.0" in out.splitlines()[2] and "mIoU (%)" in out.splitlines()[0]  # percent, as in every table


def test_results_against_another_folder_pairs_the_same_cells(tmp_path, digits_root, capsys, current):
    here, there = tmp_path / "here", tmp_path / "there"
    for seed, (a, b) in enumerate([(0.50, 0.48), (0.52, 0.49), (0.51, 0.50)]):
        versioned_run(here, digits_root, f"ls-s{seed}", "ls", seed, a, current, "a" * 40)
        versioned_run(there, digits_root, f"ls-s{seed}", "ls", seed, b, current, "a" * 40)
    versioned_run(there, digits_root, "mt-s0", "mt", 0, 0.6, current, "a" * 40)  # under one folder only
    table = compare_runs(load_runs(here), load_runs(there))
    assert table["name"].tolist() == ["ls"] and table.loc[0, "seeds"] == 3
    assert table.loc[0, "difference"] == "+2.00 [-0.48, +4.48]"  # mean 2, std 1, t(0.975, 2) = 4.303
    assert table.loc[0, "per seed"] == "s0 +2.00, s1 +3.00, s2 +1.00"
    assert cli.main(["results", str(here), "--against", str(there)]) == 0
    assert "+2.00 [-0.48, +4.48]" in capsys.readouterr().out
    assert cli.main(["results", str(here), "--against", str(tmp_path / "none")]) == 1
    assert "no run id of" in capsys.readouterr().err


def test_results_pair_two_configs_by_seed(tmp_path, digits_root, capsys, current):
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate([(0.50, 0.48), (0.52, 0.49), (0.51, 0.50)]):
        versioned_run(root, digits_root, f"a-s{seed}", "a", seed, a, current, "a" * 40)
        versioned_run(root, digits_root, f"b-s{seed}", "b", seed, b, current, "a" * 40)
    versioned_run(root, digits_root, "b-s3", "b", 3, 0.9, current, "a" * 40)  # no partner: left out
    assert cli.main(["results", str(root), "--pair", "a", "b", "--pair", "b", "a"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("a − b (mIoU points, paired by seed): +2.00 [-0.48, +4.48] (3); "
                      "per seed: s0 +2.00, s1 +3.00, s2 +1.00")
    assert out[1].startswith("b − a (mIoU points, paired by seed): -2.00 [-4.48, +0.48] (3)")
    assert cli.main(["results", str(root), "--pair", "a", "c"]) == 2
    assert "no finished run of config 'c'" in capsys.readouterr().err


def test_per_run_listing_and_archive_keep_what_tables_need(tmp_path, digits_root, capsys, current):
    root = tmp_path / "runs"
    run = versioned_run(root, digits_root, "a", "x", 0, 0.5, current, "a" * 40)
    (run / "checkpoint.pt").write_bytes(b"big")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    assert cli.main(["results", str(root), "--per-run"]) == 0
    assert "| " not in capsys.readouterr().out  # plain text listing
    assert cli.main(["archive", str(root), str(tmp_path / "kept")]) == 0
    kept = tmp_path / "kept" / "a"
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "eval.json", "meta.json", "metrics.jsonl"]
    assert load_runs(tmp_path / "kept")["miou"].tolist() == [0.5]
