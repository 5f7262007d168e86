"""`reprokit replay`: the current code retraces a recorded run bit for bit, and any difference is found."""
from __future__ import annotations

import json

import pytest

from reprokit.cli import main
from reprokit.engine.train import train
from reprokit.machine import machine_description
from reprokit.runs.origin import machine_label
from reprokit.runs.origin import CELL_RECORD
from reprokit.runs.replay import ReplayError, compare_metrics, replay, verdict_line


@pytest.fixture
def record(tiny_cfg, tmp_path):
    """A finished tiny Mean Teacher run (an unlabeled stream, EMA, a ramp): the record to replay."""
    run = tmp_path / "record"
    train(tiny_cfg(method={"name": "mean_teacher"}, train={"iters": 6, "log_every": 2, "ckpt_every": 6}), run)
    return run


def _rewrite_metrics(run, change):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    change(lines)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_replay_of_an_untouched_record_is_identical(record):
    result = replay(record, steps=4)
    assert result["identical"] and result["differences"] == 0
    assert result["logged_steps_compared"] == 2 and result["total_steps"] == 6
    assert result["eval"]["differing_keys"] == []  # the final checkpoint evaluates to its eval.json exactly


def test_a_changed_value_is_found_with_its_step_and_key(record):
    _rewrite_metrics(record, lambda lines: lines[1].update({"loss": lines[1]["loss"] + 1e-7}))
    result = replay(record, steps=4)
    assert not result["identical"]
    assert [(d["step"], d["key"]) for d in result["first_differences"]] == [(4, "loss")]


def test_a_different_verdict_says_whether_the_machine_changed(record):
    _rewrite_metrics(record, lambda lines: lines[0].update({"loss": lines[0]["loss"] + 1e-7}))
    here = machine_label(machine_description())
    line = verdict_line(replay(record, steps=2))
    assert line.endswith(f"; replayed on {here}, and the record does not name its machine: another processor "
                         "alone changes the numbers")
    here_machine = machine_description()  # another kernel level than this machine's, whichever it has
    other = {**here_machine, "cpu_capability": "AVX2" if here_machine["cpu_capability"] != "AVX2" else "AVX512"}
    (record / CELL_RECORD).write_text(json.dumps({"ok": True, "machine": other}))
    result = replay(record, steps=2)
    assert result["recorded_machine"] == other and result["machine"] == machine_description()
    assert f"; recorded on {machine_label(other)}, replayed on {here}: another processor" in verdict_line(result)
    (record / CELL_RECORD).write_text(json.dumps({"ok": True, "machine": machine_description()}))
    line = verdict_line(replay(record, steps=2))
    assert "DIFFERENT" in line and "processor" not in line  # same machine: the difference is the code's
    (record / CELL_RECORD).write_text(json.dumps({"ok": True, "machine": machine_description(),
                                                  "backbone": {"file": "glyphs-x.pt", "sha256": "0123abcd"}}))
    result = replay(record, steps=2)  # the tiny record starts from scratch: no backbone here
    assert result["backbone"] is None and result["recorded_backbone"]["sha256"] == "0123abcd"
    assert verdict_line(result).endswith("; the record started from other pretrained weights (0123abcd, here None)")


def test_a_changed_eval_record_is_found(record):
    ev = json.loads((record / "eval.json").read_text())
    (record / "eval.json").write_text(json.dumps({**ev, "miou": ev["miou"] + 0.01}))
    result = replay(record, steps=2)
    assert not result["identical"] and result["eval"]["differing_keys"] == ["miou"]


def test_a_different_split_is_found_and_only_kept_split_files_are_compared(record):
    (record / "splits" / "val.txt").unlink()  # archived records keep the labeled list only
    assert replay(record, steps=2)["splits_compared"] == ["labeled.txt", "unlabeled.txt"]
    labeled = record / "splits" / "labeled.txt"
    labeled.write_text("\n".join(labeled.read_text().split("\n")[::-1]))
    result = replay(record, steps=2)
    assert not result["identical"] and result["splits_differing"] == ["labeled.txt"]


def test_compare_metrics_reports_missing_steps_and_ignores_timings():
    recorded = [{"step": 2, "loss": 1.0, "sec_per_iter": 0.1}, {"step": 4, "loss": 0.5, "sec_per_iter": 0.1}]
    replayed = [{"step": 2, "loss": 1.0, "sec_per_iter": 9.0}]
    assert compare_metrics(recorded, replayed, stop=4) == [
        {"step": 4, "key": None, "recorded": True, "replayed": False}]
    assert compare_metrics(recorded, replayed, stop=3) == []
    assert compare_metrics([{"step": 2, "loss": 1}], [{"step": 2, "loss": 1.0}], stop=2)[0]["key"] == "loss"


def test_cli_writes_verdicts_and_fails_on_a_difference(record, tmp_path, capsys):
    out = tmp_path / "verdicts"
    assert main(["replay", str(record), "--steps", "2", "--out", str(out)]) == 0
    verdict = json.loads((out / "record.json").read_text())
    assert verdict["identical"] and verdict["record"] == str(record)
    assert "record: identical (1 logged steps to step 2 of 6" in capsys.readouterr().out
    _rewrite_metrics(record, lambda lines: lines[0].update({"loss/sup": 0.0}))
    assert main(["replay", str(record), "--steps", "2"]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_replay_names_what_it_lacks(tmp_path, record, capsys):
    with pytest.raises(ReplayError, match="no config.yaml"):
        replay(tmp_path, steps=2)
    with pytest.raises(ReplayError, match="no step up to 1 was logged"):
        replay(record, steps=1)
    assert main(["replay", str(record), "--steps", "0"]) == 2
    assert "--steps must be a positive" in capsys.readouterr().err
