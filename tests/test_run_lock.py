"""One run directory, one writer: a second writer stops naming the first, a killed writer blocks nobody, two
sweeps of one file train each cell once, and a failed write (a full disk) is one line that names the file."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml

from reprokit.cli import main as cli_main
from reprokit.configure import from_dict
from reprokit.engine import rundir
from reprokit.engine.checkpoint import load_checkpoint
from reprokit.engine.rundir import RunDirLocked, RunWriteError, lock_holder, run_dir_lock
from reprokit.engine.train import train
from reprokit.runs.origin import CELL_RECORD
from tests.conftest import tiny_raw, tree_digest
from tests.test_sweep import write_sweep

ROOT = Path(__file__).resolve().parents[1]


def config_file(tmp_path, digits_root, **train):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(digits_root, train={**tiny_raw(digits_root)["train"], **train})))
    return path


def test_a_second_writer_stops_naming_the_holder_and_changes_nothing(tmp_path, digits_root, capsys):
    cfg = config_file(tmp_path, digits_root)
    run = tmp_path / "run"
    assert cli_main(["train", "--config", str(cfg), "--out", str(run), "--set", "train.iters=3"]) == 0
    before = tree_digest(run)
    with run_dir_lock(run, what="a test holding it"):
        held = tree_digest(run)
        assert cli_main(["train", "--config", str(cfg), "--out", str(run), "--set", "train.iters=6"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"is being written by process {os.getpid()} on " \
            f"{socket.gethostname()}" in err and "a test holding it" in err
        assert tree_digest(run) == held
        assert lock_holder(run)["pid"] == os.getpid()
    assert lock_holder(run) is None
    assert {k: v for k, v in tree_digest(run).items() if k != rundir.LOCK_FILE} == \
        {k: v for k, v in before.items() if k != rundir.LOCK_FILE}


def test_a_writer_killed_with_sigkill_blocks_nobody_and_the_rerun_resumes_bit_identically(tmp_path, digits_root):
    cfg = config_file(tmp_path, digits_root, iters=300, ckpt_every=3, log_every=1)
    env = {**os.environ, "REPROKIT_PROGRESS": "0", "REPROKIT_ALLOCATOR": "system"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "reprokit.cli", "train", "--config", str(cfg), "--out",
                             str(killed)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    assert lock_holder(killed)["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_holder(killed) is None, "the OS released the dead writer's lock"
    assert json.loads((killed / "meta.json").read_text())["status"] == "running"
    summary = train(from_dict(yaml.safe_load(cfg.read_text())), killed)
    straight = train(from_dict(yaml.safe_load(cfg.read_text())), tmp_path / "straight")
    assert summary == straight
    resumed, whole = (load_checkpoint(p / "checkpoint.pt")["method"] for p in (killed, tmp_path / "straight"))
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 301))


@pytest.mark.slow
def test_two_sweeps_of_one_file_started_together_train_each_cell_once(tmp_path, digits_root):
    sweep = write_sweep(tmp_path, digits_root, [{"seeds": [0, 1]}], common=("train.iters=40", "train.log_every=1"))
    env = {**os.environ, "REPROKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "reprokit.cli", "sweep", str(sweep), "--stagger", "0"],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(1.0)
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for cell in ("tiny-s0", "tiny-s1"):
        trained = [out for out in outputs if f"ok     {cell}" in out]
        assert len(trained) == 1, (cell, outputs)  # the other process skipped it or found it run elsewhere
        other = next(out for out in outputs if out is not trained[0])
        assert f"skip   {cell} (running" in other or f"elsewhere {cell}" in other or f"skip   {cell} (done" in other
        steps = [json.loads(line)["step"] for line in (tmp_path / "runs" / cell / "metrics.jsonl").read_text()
                 .splitlines()]
        assert steps == list(range(1, 41))
        assert json.loads((tmp_path / "runs" / cell / CELL_RECORD).read_text())["ok"]


def test_a_locked_cell_is_running_and_a_sweep_skips_it(tmp_path, digits_root):
    from reprokit.experiments.sweep import expand, run_sweep, status

    sweep = write_sweep(tmp_path, digits_root, [{"seeds": [0]}])
    cell = expand(sweep)[1][0]
    logs = []
    with run_dir_lock(cell.run_dir, what="another sweep"):
        assert status(cell) == "running"
        assert run_sweep(sweep, log=logs.append) == []
    assert "skip   tiny-s0 (running)" in logs
    assert status(cell) == "new"


def test_without_working_file_locks_the_named_holder_decides(tmp_path, monkeypatch):
    def no_locks(fh, how):
        raise OSError(37, "No locks available")  # ENOLCK, as some network filesystems answer

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    run = tmp_path / "run"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.mkdir()
        (run / rundir.LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid,
                                                        "since": "then"}))
        with pytest.raises(RunDirLocked, match=rf"process {other.pid} .* no working file locks"):
            with run_dir_lock(run):
                pass
        assert lock_holder(run)["pid"] == other.pid
    finally:
        other.kill()
        other.wait()
    with run_dir_lock(run):  # its holder is gone
        assert json.loads((run / rundir.LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_checkpoint(tmp_path, digits_root,
                                                                                   monkeypatch, capsys):
    """torch reports a full disk mid-checkpoint as 'enforce fail at inline_container.cc ... unexpected pos'."""
    import reprokit.engine.checkpoint as checkpoint

    saves, real_save = [], torch.save

    def filling_up(obj, fh, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            fh.write(b"partial bytes")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 58")
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", filling_up)
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(1, 1, 512))
    cfg = config_file(tmp_path, digits_root, iters=9, ckpt_every=3)
    run = tmp_path / "run"
    assert cli_main(["train", "--config", str(cfg), "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{run / 'checkpoint.pt'}: could not be written: no space left on the filesystem at " in err
    assert "0.0 MiB free, this write needs about" in err and "the previous checkpoint (step 3) is intact" in err
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    assert not list(run.glob(".checkpoint.pt.tmp*")), "nothing half-written is left behind"
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert cli_main(["train", "--config", str(cfg), "--out", str(run)]) == 0  # resumes from step 3
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 9


def test_a_failed_metrics_write_takes_its_partial_line_back(tmp_path, digits_root):
    record = rundir.RunRecord(tmp_path, from_dict(tiny_raw(digits_root)))
    record.resume_step = 6
    record.open_log(0)
    record.log({"step": 1, "loss": 0.5})

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def tell(self):
            return self.fh.tell()

        def truncate(self, size):
            return self.fh.truncate(size)

        def write(self, text):
            self.fh.write(text[:5])
            raise OSError(28, "No space left on device")

    real = record._metrics
    record._metrics = Full(real)
    with pytest.raises(RunWriteError, match=r"metrics.jsonl: could not be written: no space left .*\(step 6\)"):
        record.log({"step": 2, "loss": 0.4})
    record._metrics = real
    record.close_log()
    assert (tmp_path / "metrics.jsonl").read_text() == json.dumps({"step": 1, "loss": 0.5}) + "\n"
