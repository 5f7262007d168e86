"""`reprokit certify`: differential runs of two code versions; a refactor that moves no number is certified and
its records stay current, a changed constant is named where it first shows, a short schedule is refused; a
partial certificate holds for the configurations that stayed bit-identical, matched to records by config key,
and the old code is given a configuration without the settings it lacks."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reprokit import codeversion
from reprokit.experiments.certify import (Candidate, CertifyError, certify, check_schedule, old_side, phase_boundaries,
                                          shortest_schedule, sweep_candidates)
from reprokit.codeversion import CodeVersions, config_key
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


def test_a_partial_certificate_holds_for_the_identical_configurations_only(repo, digits_root, tmp_path):
    """A change that moves OHEM runs (a constant in its loss) and adds a setting (a loss weight, 1 by default):
    the plain configuration stays bit-identical, the OHEM one moves in training, and the one that sets the new
    weight cannot be given to the old code. Without --partial the first difference ends it, with no
    certificate; with it, the certificate holds for the plain configuration's records only."""
    from reprokit.configure import from_dict

    old = git(repo, "rev-parse", "HEAD")
    commit_edit(repo, "methods/losses.py", "return hard.mean() if", "return 2.0 * hard.mean() if")
    commit_edit(repo, "methods/losses.py", "    ohem_min_kept: int = ranged(COUNT, 50000)  # per image\n",
                "    ohem_min_kept: int = ranged(COUNT, 50000)  # per image\n    sup_weight: float = 1.0\n")
    new = commit_edit(repo, "methods/supervised.py", '{"sup": supervised_loss(', '{"sup": self.params.sup_weight * supervised_loss(')
    plain = Candidate("plain", tiny_raw(digits_root, method={"name": "supervised", "sup_weight": 1.0}))
    ohem = Candidate("ohem", tiny_raw(digits_root, method={"name": "supervised", "ohem": True}))
    weighted = Candidate("weighted", tiny_raw(digits_root, method={"name": "supervised", "sup_weight": 2.0}))

    report = certify(old, new, [weighted, plain], steps=6, repo=repo, out=tmp_path / "certs", log=lambda line: None)
    assert not report["identical"] and "certificate" not in report and not (tmp_path / "certs").exists()
    assert [(c["name"], c["difference"]) for c in report["configs"]] == [
        ("weighted", "the old code has no method.sup_weight (set to 2.0)")], "stopped at the first, untrained"

    lines = []
    report = certify(old, new, [plain, ohem, weighted], steps=6, repo=repo, out=tmp_path / "certs", partial=True,
                     log=lines.append)
    moved = {m["name"]: m["difference"] for m in report["moved"]}
    assert sorted(moved) == ["ohem", "weighted"] and moved["ohem"].startswith("step 1: loss ")
    assert any(line.startswith("  ohem (supervised): step 1: loss ") for line in lines), "the log lists the moved"
    cert = json.loads(Path(report["certificate"]).read_text())
    assert Path(report["certificate"]).name == f"{old[:7]}-{new[:7]}.json"
    [pair] = cert["versions"]
    plain_record = from_dict(tiny_raw(digits_root)).to_dict()  # as the old code (today's) writes the plain run
    assert pair["configs"] == [config_key(plain_record)] == [report["configs"][0]["config_key"]]
    assert pair["config_names"] == ["plain"] and [m["name"] for m in pair["moved"]] == ["ohem", "weighted"]
    assert report["configs"][0]["difference"] is None and report["configs"][0]["logged_steps"] == 6

    versions = CodeVersions(repo / "reprokit", tmp_path / "certs")
    meta = {"method": "supervised", "dataset": "digits", "code_version_scheme": 2, "code_version": pair["old"]}
    another_seed = {**plain_record, "name": "plain-s3", "train": {**plain_record["train"], "seed": 3}}
    assert versions.standing(meta, plain_record) == versions.standing(meta, another_seed) == "certified"
    assert versions.standing(meta, from_dict(ohem.raw).to_dict()) == "stale"
    assert versions.standing(meta) == "stale", "a record whose configuration is not known is not certified"

    # all compared configurations identical: the partial certificate still names them, and only them
    report = certify(old, new, [plain], steps=6, repo=repo, out=tmp_path / "all", partial=True, log=lines.append)
    [pair] = json.loads(Path(report["certificate"]).read_text())["versions"]
    assert report["identical"] and pair["configs"] == [config_key(plain_record)] and pair["moved"] == []
    versions = CodeVersions(repo / "reprokit", tmp_path / "all")
    assert versions.standing(meta, from_dict(ohem.raw).to_dict()) == "stale", "not compared: not certified"


def test_the_old_code_is_given_a_configuration_without_the_settings_it_lacks(repo, tmp_path):
    """Settings the new code added (a method's, a section's) are dropped at their defaults and refuse the
    comparison otherwise; a configuration the old code rejects for another reason is not compared either."""
    from reprokit.configure import from_dict  # the old code: the repository's first commit is today's package

    old = git(repo, "rev-parse", "HEAD")
    git(repo, "worktree", "add", "--detach", "-q", str(tmp_path / "old"), old)
    commit_edit(repo, "methods/losses.py", "    ohem_min_kept: int = ranged(COUNT, 50000)  # per image\n",
                "    ohem_min_kept: int = ranged(COUNT, 50000)  # per image\n    sup_weight: float = 1.0\n")
    threads = "    threads: Optional[int] = ranged(COUNT)  # torch CPU threads; None keeps torch's default\n"
    commit_edit(repo, "config.py", threads, threads + "    grad_clip: float = 0.0\n")
    raw = tiny_raw(tmp_path, train={"iters": 6, "grad_clip": 0.0})
    default, other, unknown = old_side(tmp_path / "old", repo, [
        {**raw, "method": {"name": "supervised", "sup_weight": 1}},
        {**raw, "method": {"name": "supervised", "sup_weight": 0.5}},
        {**raw, "method": {"name": "no_such_method"}}], tmp_path / "work")
    assert default.dropped == ("method.sup_weight", "train.grad_clip") and default.refused is None
    as_old = {**raw, "method": {"name": "supervised"}, "train": {k: v for k, v in raw["train"].items()
                                                                  if k != "grad_clip"}}
    assert default.key == config_key(from_dict(as_old).to_dict()), "the key of the old code's resolution"
    assert other.key is None and other.refused == "the old code has no method.sup_weight (set to 0.5)"
    assert unknown.refused.startswith("the old code refuses the configuration: ConfigError: ")
    assert "no_such_method" in unknown.refused


def test_committed_records_key_as_the_certification_of_their_configuration(tmp_path):
    """The key of a record's config.yaml equals the key a certification from the record's commit gives the same
    cell of the sweep files (resolved by today's code, the settings added since dropped at their defaults); a
    grid cell keys apart from its neighbours."""
    import yaml

    cell = {"digits-table4-dm-s0": ("digits-table4-dm", 256), "digits-table4-dm-s1": ("digits-table4-dm", 256),
            "digits-table4-dm-s2": ("digits-table4-dm", 256),
            **{f"digits-fig8-bank-s0-bank_size{n}": ("digits-fig8-bank", n) for n in (64, 128)}}
    records = {run: Path("docs/runs/benchmark", run) for run in cell}
    by_commit = {}
    for run, path in records.items():
        by_commit.setdefault(json.loads((path / "meta.json").read_text())["git"]["commit"], []).append(run)
    if any(subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"]).returncode for commit in by_commit):
        pytest.skip("the records' commits are not in this clone")
    cands = [c for c in sweep_candidates(["params/sweeps/ablations.yaml", "params/sweeps/fig8.yaml"])
             if (c.name, c.raw["method"].get("bank_size")) in cell.values()]
    keys = {}
    for i, (commit, runs) in enumerate(sorted(by_commit.items())):  # each record against its own commit's code
        old = tmp_path / f"old{i}"
        old.mkdir()
        subprocess.run(f"git archive {commit} reprokit | tar -x -C {old}", shell=True, check=True)
        wanted = [c for c in cands if (c.name, c.raw["method"].get("bank_size")) in {cell[run] for run in runs}]
        sides = old_side(old, codeversion.PACKAGE_DIR.parent, [c.raw for c in wanted], tmp_path / f"work{i}")
        for c, side in zip(wanted, sides):
            keys[commit, c.name, c.raw["method"].get("bank_size")] = side.key
        for run in runs:
            assert config_key(yaml.safe_load((records[run] / "config.yaml").read_text())) == keys[(commit, *cell[run])]
    bank = {n: k for (_, name, n), k in keys.items() if name == "digits-fig8-bank"}
    assert bank[64] != bank[128]
