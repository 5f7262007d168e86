"""Run records carry a format version. The oldest committed evidence in docs/runs (the protocol's selection runs
and the early main-job probes) predates the field and reads as format 1; later records, every benchmark record
among them, say format 2. Both kinds load side by side, the benchmark's keep building the tables and figures,
and a format this version does not know is refused by name."""
import json
import shutil

import pytest

from reprokit.cli import main as cli_main
from reprokit.engine.rundir import RUN_FORMAT, RunDirError, prepare, record_format
from reprokit.runs.results import load_run, load_runs
from tests.conftest import ROOT

ARCHIVE = ROOT / "docs" / "runs"
BENCHMARK = ARCHIVE / "benchmark"


def test_archived_records_of_both_formats_load_together(tmp_path):
    formats = {}
    for meta in sorted(ARCHIVE.rglob("meta.json")):
        formats.setdefault(record_format(json.loads(meta.read_text()), meta), meta.parent)
    assert formats.keys() == {1, RUN_FORMAT}
    for version, run in formats.items():
        shutil.copytree(run, tmp_path / f"format{version}-{run.name}")
    runs = load_runs(tmp_path)
    assert len(runs) == 2 and runs["miou"].notna().all()
    runs = load_runs(BENCHMARK)
    assert len(runs) == len(list(BENCHMARK.rglob("eval.json"))) and runs["miou"].notna().all()


def test_figures_still_build_from_the_archived_benchmark_records(tmp_path):
    out = tmp_path / "figures"
    assert cli_main(["figures", "--runs", str(BENCHMARK), "--out", str(out), "--only", "summary", "table4",
                     "fig6"]) == 0
    for name in ("summary.md", "table4.md", "fig6.png"):
        assert (out / name).is_file(), name


def test_an_unknown_record_format_is_refused_naming_it(tmp_path, tiny_cfg):
    source = next(p.parent for p in sorted(BENCHMARK.rglob("eval.json")))
    run = tmp_path / "run"
    shutil.copytree(source, run)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(RunDirError, match=r"meta.json: run record format 99; this reprokit reads formats 1, 2"):
        load_run(run)
    with pytest.raises(RunDirError, match="run record format 99"):
        prepare(run, tiny_cfg())
    assert (run / "config.yaml").read_text() == (source / "config.yaml").read_text()  # nothing rewritten
