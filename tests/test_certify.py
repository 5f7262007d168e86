"""`reprokit certify`: differential runs of two code versions; a refactor that moves no number is certified and
its records stay current, a changed constant is named where it first shows, a short schedule is refused."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reprokit import codeversion
from reprokit.experiments.certify import (Candidate, CertifyError, certify, check_schedule, phase_boundaries, shortest_schedule,
                              sweep_candidates)
from reprokit.codeversion import CodeVersions
from tests.conftest import tiny_raw


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                          cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository holding a copy of the package, committed once."""
    root = tmp_path / "repo"
    shutil.copytree(codeversion.PACKAGE_DIR, root / "reprokit", ignore=shutil.ignore_patterns("__pycache__"))
    git(root, "init", "-q")
    git(root, "add", "reprokit")
    git(root, "commit", "-qm", "old")
    return root


def commit_edit(repo, rel, old, new):
    path = repo / "reprokit" / rel
    text = path.read_text()
    assert old in text, f"{rel} no longer holds {old!r}: pick another line to edit"
    path.write_text(text.replace(old, new))
    git(repo, "commit", "-qam", "edit")
    return git(repo, "rev-parse", "HEAD")


def test_phase_boundaries_follow_the_configuration():
    raw = {"method": {"name": "stpg", "unsup_start": 0.2, "unsup_ramp": 0.1, "bank_start": 0.15,
                      "contrastive_start": 0.3, "proximity_start": 0.45, "matching_freeze": 1.0},
           "optim": {"warmup_iters": 0}, "data": {"batch_size": 4}}
    assert phase_boundaries(raw, 40) == {"unsup_start": 8, "bank_start": 6, "contrastive_start": 12,
                                         "proximity_start": 18, "unsup_ramp end": 11}
    cosa = {"method": {"name": "cosa", "cls_only": 0.25, "threshold_search": True, "search_images": 20},
            "data": {"batch_size": 4}, "optim": {"warmup_iters": 3}}
    assert phase_boundaries(cosa, 40) == {"cls_only": 10, "threshold queue wraps": 15, "optim.warmup_iters": 3}
    with pytest.raises(CertifyError, match=r"misses the phase boundaries unsup_start \(step 0\)"):
        check_schedule(raw, 4, "stpg-cell")
    with pytest.raises(CertifyError, match=r"threshold queue wraps \(step 6\)"):
        check_schedule(cosa, 6, "cosa-cell")
    assert shortest_schedule(cosa, at_least=4) == 7


def test_the_benchmark_sweeps_resolve_to_distinct_digits_configurations():
    found = sweep_candidates(["params/sweeps/benchmark.yaml"])
    assert found and all(c.dataset == "digits" for c in found)
    assert len({json.dumps(c.raw, sort_keys=True) for c in found}) == len(found)
    assert len({c.name for c in found}) == len(found), "seeds of one configuration are one candidate"


def test_a_rename_is_certified_and_carries_its_records_forward(repo, digits_root, tmp_path):
    old = git(repo, "rev-parse", "HEAD")
    new = commit_edit(repo, "methods/supervised.py", "logits", "scores")
    cand = Candidate("tiny", tiny_raw(digits_root))
    before = codeversion.code_version_at(old, repo / "reprokit", "supervised", "digits")
    assert before != codeversion.code_version_at(new, repo / "reprokit", "supervised", "digits")
    report = certify(old, new, [cand], steps=6, repo=repo, out=tmp_path / "certs", log=lambda line: None)
    assert report["identical"] and [c["difference"] for c in report["configs"]] == [None]
    cert = json.loads((tmp_path / "certs" / f"{old[:7]}-{new[:7]}.json").read_text())
    assert cert["versions"][0]["old"] == before and cert["configs"][0]["logged_steps"] == 6
    record = {"method": "supervised", "dataset": "digits", "code_version_scheme": 2, "code_version": before}
    assert CodeVersions(repo / "reprokit", tmp_path / "certs").is_current(record)
    assert not CodeVersions(repo / "reprokit", tmp_path / "none").is_current(record)


def test_a_changed_constant_is_not_certified_and_is_named(repo, digits_root, tmp_path):
    old = git(repo, "rev-parse", "HEAD")
    new = commit_edit(repo, "methods/supervised.py", '{"sup": supervised_loss(', '{"sup": 2.0 * supervised_loss(')
    report = certify(old, new, [Candidate("tiny", tiny_raw(digits_root))], steps=6, repo=repo,
                     out=tmp_path / "certs", log=lambda line: None)
    assert not report["identical"] and "certificate" not in report and not (tmp_path / "certs").exists()
    assert report["configs"][0]["difference"].startswith("step 1: loss ")


def test_a_schedule_that_misses_a_phase_is_refused_before_training(repo, digits_root, tmp_path):
    old = git(repo, "rev-parse", "HEAD")
    new = commit_edit(repo, "methods/mean_teacher.py", "import torch\n", "import torch\nUNUSED = 1\n")
    raw = tiny_raw(digits_root, method={"name": "mean_teacher", "unsup_start": 0.2, "unsup_ramp": 0.25})
    with pytest.raises(CertifyError, match=r"tiny: a schedule of 3 steps misses the phase boundaries unsup_start "
                                           r"\(step 0\)"):
        certify(old, new, [Candidate("tiny", raw)], steps=3, repo=repo, out=tmp_path / "certs")
    assert git(repo, "worktree", "list").count("\n") == 0, "no worktree is left behind"


def test_a_terminated_certification_removes_its_worktrees(repo, digits_root, tmp_path):
    import signal
    import sys
    import time

    old = git(repo, "rev-parse", "HEAD")
    new = commit_edit(repo, "methods/supervised.py", "logits", "scores")
    script = (f"import sys; sys.path.insert(0, {str(repo)!r}); from tests.conftest import tiny_raw; "
              "from reprokit.experiments.certify import Candidate, certify; from pathlib import Path; "
              f"certify({old!r}, {new!r}, [Candidate('tiny', tiny_raw(Path({str(digits_root)!r}), train="
              "{'iters': 20000, 'ckpt_every': 20000, 'log_every': 1, 'threads': 1}))], steps=20000, "
              f"repo=Path({str(repo)!r}), out=Path({str(tmp_path / 'certs')!r}))")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while git(repo, "worktree", "list").count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert git(repo, "worktree", "list").count("\n") == 2, "both worktrees were made"
    old_tree = Path(git(repo, "worktree", "list").splitlines()[1].split()[0])
    while not (old_tree.parent / "000-tiny" / "old").is_dir() and time.monotonic() < deadline:
        time.sleep(0.1)  # the trainings have started: terminating must stop them too
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM  # not after the 20000 steps
    assert git(repo, "worktree", "list").count("\n") == 0 and not (tmp_path / "certs").exists()
