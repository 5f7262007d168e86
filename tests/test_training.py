import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from reprokit.cli import main as cli_main
from reprokit.config import ConfigError
from reprokit.configure import from_dict
from reprokit.engine.checkpoint import load_checkpoint
from reprokit.engine.loop import NonFiniteLossError
from reprokit.engine.train import Trainer, train
from reprokit.runs.results import load_runs
from tests.conftest import tiny_raw

ROOT = Path(__file__).resolve().parents[1]


def test_run_directory_contents(tiny_cfg, tmp_path):
    summary = train(tiny_cfg(eval={"keep_predictions": 2}), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "eval.json", "checkpoint.pt", "splits/labeled.txt",
                 "splits/unlabeled.txt", "splits/val.txt", "predictions.pt"):
        assert (run / name).exists(), name
    assert list((run / "tb").glob("events.*"))
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["labeled_count"] == 12 and meta["git"]["commit"]
    assert meta["format"] == 2 and load_checkpoint(run / "checkpoint.pt")["format"] == "reprokit-checkpoint-v2"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6] and lines[-1]["lr"] == 0
    ev = json.loads((run / "eval.json").read_text())
    assert 0 <= ev["miou"] <= 1 and len(ev["iou"]) == 11 and summary["miou"] == ev["miou"]
    assert sum(map(sum, ev["confusion"])) > 0
    df = load_runs(tmp_path)
    assert len(df) == 1 and df.loc[0, "miou"] == ev["miou"] and "iou/digit 0" in df.columns
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 6


def test_rerun_finished_is_a_noop_and_other_config_is_refused(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(), run)
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    train(tiny_cfg(), run)
    assert (run / "checkpoint.pt").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match=r"different configuration .* differs in optim.lr"):
        train(tiny_cfg(optim={"lr": 0.5}), run)
    assert (run / "eval.json").is_file()  # nothing already written is lost


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg, tmp_path):
    cfg = tiny_cfg(optim={"lr": 1e12}, train={"iters": 30, "ckpt_every": 1, "log_every": 1})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .* kept the last good checkpoint"):
        train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert 1 <= ckpt["step"] < 30
    assert all(torch.isfinite(v).all() for v in ckpt["method"].values() if v.dtype.is_floating_point)


def test_cli_errors_name_the_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"iters": 1, "itres": 2}}))
    assert cli_main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key 'train.itres'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_reevaluate_with_sliding_window(tiny_cfg, tmp_path, capsys):
    train(tiny_cfg(), tmp_path / "run")
    assert cli_main(["eval", str(tmp_path / "run"), "--set", "eval.mode=sliding", "--set", "eval.crop_size=16"]) == 0
    ev = json.loads((tmp_path / "run" / "eval-sliding.json").read_text())
    assert ev["eval"]["mode"] == "sliding" and 0 <= ev["miou"] <= 1


def _params_of(run: Path) -> dict:
    return {k: v for k, v in load_checkpoint(run / "checkpoint.pt")["method"].items()}


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(digits_root, tmp_path):
    raw = tiny_raw(digits_root, train={"iters": 16, "ckpt_every": 2, "log_every": 1, "threads": 1})
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "reprokit.cli", "train", "--config", str(cfg_file)]
    env = {**os.environ, "REPROKIT_PROGRESS": "0"}
    subprocess.run(cmd + ["--out", str(tmp_path / "straight")], check=True, env=env, cwd=ROOT)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed)], env=env, cwd=ROOT)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 7:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = load_checkpoint(killed / "checkpoint.pt")["step"]
    assert 0 < step_at_kill < 16 and not (killed / "eval.json").exists()
    subprocess.run(cmd + ["--out", str(killed)], check=True, env=env, cwd=ROOT)
    a, b = _params_of(tmp_path / "straight"), _params_of(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps == list(range(1, 17))


@pytest.mark.slow
def test_torchrun_two_processes_agree(digits_root, tmp_path):
    raw = tiny_raw(digits_root, train={"iters": 4, "ckpt_every": 2, "log_every": 1, "threads": 1},
                   model={"sync_bn": True})
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "reprokit.cli", "train", "--config", str(cfg_file), "--out", str(out)]
    subprocess.run(cmd, check=True, env={**os.environ, "REPROKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"},
                   cwd=ROOT, timeout=300)
    ev = json.loads((out / "eval.json").read_text())
    checks = ev["rank_param_checksums"]
    assert len(checks) == 2 and checks[0] == checks[1]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["status"] == "finished"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4  # only rank 0 writes
    assert not list(tmp_path.glob("**/.*.tmp*"))
    from_dict(yaml.safe_load((out / "config.yaml").read_text()))


def test_trainer_counts_epochs(tiny_cfg, tmp_path):
    t = Trainer(tiny_cfg(train={"iters": None, "epochs": 2}), tmp_path / "r")
    assert t.total == 2 * (12 // 4)


def test_bf16_autocast_and_channels_last_on_cpu(tiny_cfg, tmp_path):
    summary = train(tiny_cfg(train={"amp": "bf16", "channels_last": True, "iters": 3}), tmp_path / "run")
    assert 0 <= summary["miou"] <= 1
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(x)["loss"] == json.loads(x)["loss"] for x in lines)  # finite, not NaN


def test_a_checkpoint_of_an_older_format_is_refused_naming_its_version(tiny_cfg, tmp_path):
    """No migration: a checkpoint written in an earlier format is refused, by name, when resuming and
    when evaluating."""
    from reprokit.engine.checkpoint import CheckpointError
    from reprokit.engine.reeval import load_trained_method

    cfg = tiny_cfg(train={"iters": 2, "ckpt_every": 2})
    run = tmp_path / "old"
    train(cfg, run)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    ckpt["format"] = "reprokit-checkpoint-v1"
    torch.save(ckpt, run / "checkpoint.pt")
    for attempt in (lambda: load_trained_method(run), lambda: train(cfg, run)):
        with pytest.raises(CheckpointError, match=r"checkpoint format 'reprokit-checkpoint-v1'.*reads "
                                                  r"'reprokit-checkpoint-v2' only"):
            attempt()


def test_masked_protocol_forbids_classes_absent_from_the_true_labels():
    """CoSA's reported protocol: a class missing from an image's mask is never predicted there."""
    from reprokit.engine.evaluate import true_classes

    mask = torch.tensor([[[0, 2], [255, 2]], [[1, 1], [1, 1]]])
    assert true_classes(mask, 4).tolist() == [[True, False, True, False], [True, True, False, False]]
