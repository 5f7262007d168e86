"""Certify that a change of training code moves no number, by differential runs.

Two code versions (an older commit, checked out in a temporary git worktree, and a newer commit or the working
tree) train the same configurations on the same machine with a short schedule, each in its own process that
imports its own copy of the package. Every logged value at every step, every tensor of the final checkpoint's
method state and every entry of the evaluation must be equal, bit for bit. Only configurations whose code version
differs between the two are trained (the others ran the same code), and a schedule is refused unless it crosses
every phase boundary of the configuration (:func:`phase_boundaries`): a change that only acts after the burn-in
must have been run after the burn-in.

When every configuration agrees, a certificate (a small JSON file in ``docs/certificates``) says that the older
digest of each method and data set compared stands for the newer one, and :class:`reprokit.codeversion.CodeVersions`
counts the records of the older digest as current. One difference and no certificate is written: the report
names the configuration, the step and the first value that differs.

A change meant to move some configurations of a method and not others is certified with ``partial``: every
configuration is compared, and each method's version pair holds only for the configurations that agreed, named by
their :func:`reprokit.codeversion.config_key`, even when all of them did; the moved ones are listed. A partial
certificate thus never speaks for a configuration it did not run, which matters when a short run cannot reach
the changed path: a change that acts only on confident teacher pixels shows nothing in 40 steps from an
untrained head, so such a configuration is left out of the sweeps compared (or run with more ``steps``) and
re-measured.

Both codes train one configuration. The old code is given it without the settings its code does not have (a
field the change added): when such a setting holds the new code's default the comparison is faithful, otherwise
the configuration cannot be run by the old code and counts as moved (:func:`old_side`).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from reprokit import codeversion

# metrics that time the run rather than compute it
TIMING_METRICS = ("sec_per_iter",)
# method settings that start a phase at a fraction of training (``Method.phase``)
PHASE_STARTS = ("unsup_start", "bank_start", "contrastive_start", "proximity_start", "matching_freeze", "cls_only",
                "stage1")
DEFAULT_STEPS = 40


class CertifyError(RuntimeError):
    """A certification cannot be run as asked (a schedule that misses a phase, a commit git does not know)."""


@dataclass
class Candidate:
    """One configuration to train on both codes: its name and resolved config mapping."""

    name: str
    raw: dict

    @property
    def method(self) -> str:
        return self.raw["method"]["name"]

    @property
    def dataset(self) -> str:
        return self.raw["data"]["dataset"]


def phase_boundaries(raw: dict, steps: int) -> dict[str, int]:
    """The steps at which a run of ``raw`` with ``steps`` training steps changes phase: each phase start given
    as a fraction (``PHASE_STARTS``; 0 and 1 start no phase within the run), the end of the unsupervised weight's
    ramp, the end of the learning-rate warm-up, and the step at which CoSA's threshold queue first wraps."""
    method, found = raw.get("method", {}), {}
    for key in PHASE_STARTS:
        fraction = method.get(key)
        if isinstance(fraction, (int, float)) and 0 < fraction < 1:
            found[key] = math.floor(fraction * steps)
    ramp = method.get("unsup_ramp") or 0
    if ramp > 0:
        start = math.floor((method.get("unsup_start") or 0) * steps)
        found["unsup_ramp end"] = start + math.ceil(ramp * steps) - 1
    warmup = (raw.get("optim") or {}).get("warmup_iters") or 0
    if warmup:
        found["optim.warmup_iters"] = warmup
    if method.get("threshold_search") and method.get("search_images"):
        batch = (raw.get("data") or {}).get("batch_size") or 1
        found["threshold queue wraps"] = found.get("cls_only", 0) + math.ceil(method["search_images"] / batch)
    return found


def check_schedule(raw: dict, steps: int, name: str) -> dict[str, int]:
    """The phase boundaries of ``raw`` at ``steps`` steps; an error naming every one the schedule misses (a
    boundary at step 0 has no step before it, one at or after ``steps`` none after it)."""
    boundaries = phase_boundaries(raw, steps)
    missed = {k: b for k, b in boundaries.items() if not 0 < b < steps}
    if missed:
        raise CertifyError(f"{name}: a schedule of {steps} steps misses the phase boundaries "
                           f"{', '.join(f'{k} (step {b})' for k, b in missed.items())}; every boundary must fall "
                           f"strictly inside the schedule: choose more steps (--steps)")
    return boundaries


def shortest_schedule(raw: dict, at_least: int = DEFAULT_STEPS, at_most: int = 100_000) -> int:
    """The fewest steps, at least ``at_least``, whose schedule crosses every phase boundary of ``raw``."""
    for steps in range(at_least, at_most):
        if all(0 < b < steps for b in phase_boundaries(raw, steps).values()):
            return steps
    raise CertifyError(f"{raw.get('name')}: no schedule of up to {at_most} steps crosses every phase boundary")


def sweep_candidates(sweep_files, dataset: str | None = "digits") -> list[Candidate]:
    """The distinct configurations of the sweep files' cells on ``dataset`` (None: all; names, seeds and threads
    set aside, :func:`reprokit.codeversion.config_key`: the same code runs for every seed), resolved by this
    package, in sweep order."""
    from reprokit.configure import load_config
    from reprokit.experiments.sweep import expand

    found, seen = [], set()
    for sweep in sweep_files:
        for cell in expand(sweep)[1]:
            raw = load_config(cell.config, cell.overrides).to_dict()
            if dataset is not None and raw["data"]["dataset"] != dataset:
                continue
            key = codeversion.config_key(raw)
            if key not in seen:
                seen.add(key)
                found.append(Candidate(raw["name"], raw))
    return found


def _certification_config(raw: dict, steps: int, threads: int) -> dict:
    """``raw`` with the short schedule: every step logged, one checkpoint at the end, ``threads`` threads."""
    train = {**raw["train"], "iters": steps, "epochs": None, "log_every": 1, "ckpt_every": steps,
             "snapshot_every": 0, "threads": threads}
    return {**raw, "train": train}


_TRAIN = ("import sys, yaml; from reprokit.configure import from_dict; from reprokit.engine.train import train; "
          "train(from_dict(yaml.safe_load(open(sys.argv[1])), sys.argv[1]), sys.argv[2])")


def train_on(tree: Path, config_file: Path, run_dir: Path, cwd: Path) -> None:
    """Train ``config_file`` into ``run_dir`` with the package of ``tree`` (its root, holding ``reprokit/``),
    relative paths of the configuration (data, pretrained weights) read from ``cwd``, as a user's run reads them.
    ``-P`` keeps ``cwd`` off the import path, so the package imported is ``tree``'s."""
    env = {**os.environ, "PYTHONPATH": str(tree), "REPROKIT_PROGRESS": "0"}
    with subprocess.Popen([sys.executable, "-P", "-c", _TRAIN, str(config_file), str(run_dir)], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        _TRAINING.add(proc)
        try:
            _, err = proc.communicate()
        finally:
            _TRAINING.discard(proc)
    if proc.returncode:
        raise CertifyError(f"training {config_file} with the code of {tree} failed:\n{err[-2000:]}")


_TRAINING: set = set()  # the training processes running now, which a terminated certification stops

# Run by a tree's own package (``python -P``, like the trainings): "known" drops from each configuration the
# settings the tree's config classes lack and resolves the rest as its training would write them (or says why it
# refuses it); "defaults" gives the defaults of dotted settings of a method's configuration.
_TREE_QUERY = r"""
import dataclasses, json, sys, typing
from reprokit.config import Config
from reprokit.methods import method_class

def section(cls, key, method):
    if cls is Config and key == "method":
        return method_class(method).Params
    hint = typing.get_type_hints(cls).get(key)
    return hint if dataclasses.is_dataclass(hint) else None

def known(cls, raw, prefix, method, dropped):
    names, out = {f.name for f in dataclasses.fields(cls)}, {}
    for key, value in raw.items():
        if key not in names:
            dropped[prefix + key] = value
            continue
        inner = section(cls, key, method) if isinstance(value, dict) else None
        out[key] = known(inner, value, f"{prefix}{key}.", method, dropped) if inner else value
    return out

def default(dotted, method):
    cls, *path, last = [Config, *dotted.split(".")]
    for key in path:
        cls = section(cls, key, method)
        if cls is None:
            return None
    field = {f.name: f for f in dataclasses.fields(cls)}.get(last)
    if field is None or (field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING):
        return None
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    return [dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value]

mode, todo = sys.argv[1], json.load(open(sys.argv[2]))
if mode == "known":
    from reprokit.configure import from_dict
    out = []
    for raw in todo:
        dropped = {}
        try:
            kept = known(Config, raw, "", raw["method"]["name"], dropped)
            out.append({"dropped": dropped, "resolved": from_dict(kept, "the configuration").to_dict()})
        except Exception as exc:
            out.append({"dropped": dropped, "error": f"{type(exc).__name__}: {exc}"})
else:
    out = [default(dotted, method) for method, dotted in todo]
json.dump(out, open(sys.argv[3], "w"))
"""


def _ask_tree(tree: Path, mode: str, todo: list, work: Path) -> list:
    """``_TREE_QUERY`` in ``mode`` over ``todo``, answered by the package of ``tree``."""
    work.mkdir(parents=True, exist_ok=True)
    question, answer = work / f"{mode}-question.json", work / f"{mode}-answer.json"
    question.write_text(json.dumps(todo))
    env = {**os.environ, "PYTHONPATH": str(tree), "REPROKIT_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-P", "-c", _TREE_QUERY, mode, str(question), str(answer)], cwd=work,
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise CertifyError(f"asking the code of {tree} for its configuration settings failed:\n{done.stderr[-2000:]}")
    return json.loads(answer.read_text())


@dataclass
class OldSide:
    """How the old code is given a configuration: without the settings it lacks (``dropped``, each at the new
    code's default), and ``key``, the :func:`~reprokit.codeversion.config_key` of the old code's resolution of
    it (that code's records of it have this key, not the key of the new code's resolution, which holds the
    dropped settings); or, when the old code cannot run it, ``refused`` says why."""

    dropped: tuple[str, ...] = ()
    key: str | None = None
    refused: str | None = None


def _equal(a, b) -> bool:
    """Equal values of a setting (an int and a float of one value are; a bool and a number are not)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def old_side(old_tree: Path, new_tree: Path, raws: list[dict], work: Path) -> list[OldSide]:
    """How the code of ``old_tree`` is given each of ``raws`` (resolved by the new code): the settings its
    configuration classes lack are dropped when they hold the default of ``new_tree``'s code (then the new code
    runs what the old one could, and the comparison is faithful); one holding another value makes the
    configuration impossible to compare (``refused``: the old code has no such setting), as does a configuration
    the old code rejects (an unknown method, a choice it lacks). ``work``: a scratch folder."""
    answers = _ask_tree(old_tree, "known", raws, work)
    asked = sorted({(raw["method"]["name"], dotted) for raw, ans in zip(raws, answers) for dotted in ans["dropped"]})
    defaults = dict(zip(asked, _ask_tree(new_tree, "defaults", asked, work))) if asked else {}
    sides = []
    for raw, ans in zip(raws, answers):
        method = raw["method"]["name"]
        other = [dotted for dotted, value in ans["dropped"].items()
                 if defaults[(method, dotted)] is None or not _equal(value, defaults[(method, dotted)][0])]
        if other:
            sides.append(OldSide(refused=f"the old code has no {', '.join(other)} "
                                         f"(set to {ans['dropped'][other[0]]!r})"))
        elif "error" in ans:
            sides.append(OldSide(refused=f"the old code refuses the configuration: {ans['error']}"))
        else:
            sides.append(OldSide(tuple(ans["dropped"]), codeversion.config_key(ans["resolved"])))
    return sides


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def first_difference(old_run: Path, new_run: Path) -> str | None:
    """Where two runs of one configuration first differ: a logged value (step and key), a tensor of the final
    method state, or an entry of the evaluation; None when they are bit-identical."""
    import torch

    old_log, new_log = ([json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
                        for run in (old_run, new_run))
    for old, new in zip(old_log, new_log):
        for key in sorted((set(old) | set(new)) - set(TIMING_METRICS)):
            if not _same(old.get(key), new.get(key)):
                return f"step {old.get('step')}: {key} {old.get(key)!r} (old) != {new.get(key)!r} (new)"
    if len(old_log) != len(new_log):
        return f"metrics.jsonl: {len(old_log)} logged steps (old) != {len(new_log)} (new)"
    old_state, new_state = (torch.load(run / "checkpoint.pt", weights_only=True)["method"] for run in (old_run, new_run))
    if set(old_state) != set(new_state):
        return f"final state: tensors {sorted(set(old_state) ^ set(new_state))[:5]} are in one run only"
    for key in sorted(old_state):
        a, b = old_state[key], new_state[key]
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            return f"final state: {key} differs"
    old_eval, new_eval = (json.loads((run / "eval.json").read_text()) for run in (old_run, new_run))
    for key in sorted(set(old_eval) | set(new_eval)):
        if json.dumps(old_eval.get(key)) != json.dumps(new_eval.get(key)):
            return f"eval.json: {key} {old_eval.get(key)!r:.200} (old) != {new_eval.get(key)!r:.200} (new)"
    return None


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if done.returncode:
        raise CertifyError(f"git {' '.join(args)} in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


def certify(old: str, new: str | None, candidates: list[Candidate], *, steps: int | None = None,
            threads: int = 1, jobs: int = 2, repo: Path | None = None, out: Path | None = None,
            partial: bool = False, log=print) -> dict:
    """Train every candidate whose code version differs between commit ``old`` and ``new`` (None: the working
    tree) on both codes and compare them (:func:`first_difference`). ``steps`` None takes each configuration's
    shortest schedule of at least ``DEFAULT_STEPS`` steps that crosses all its phase boundaries; a given ``steps``
    that misses one is refused before anything trains. Returns the report; when every run agrees, also writes the
    certificate into ``out`` (default ``docs/certificates`` of ``repo``) and names it under ``certificate``.

    ``partial``: compare every configuration, not stopping at a difference, and write a certificate whose
    version pairs hold for the identical configurations only (their config keys), whether or not some moved; a pair none of
    whose configurations is identical is left out, and no certificate is written when none is left. The report
    lists the moved configurations under ``moved``."""
    from reprokit.machine import machine_description

    repo = Path(repo or codeversion.PACKAGE_DIR.parent)
    old_sha = _git(repo, "rev-parse", "--verify", f"{old}^{{commit}}")
    new_sha = _git(repo, "rev-parse", "--verify", f"{new}^{{commit}}") if new else _git(repo, "rev-parse", "HEAD")
    new_dirty = new is None and bool(_git(repo, "status", "--porcelain", "--untracked-files=no", "--", "reprokit"))
    old_files = codeversion.commit_files(old_sha, repo / "reprokit")
    new_files = codeversion.commit_files(new_sha, repo / "reprokit") if new else codeversion.tree_files(repo / "reprokit")
    plan = []
    for cand in candidates:
        before = codeversion.digest_of(old_files, cand.method, cand.dataset)
        after = codeversion.digest_of(new_files, cand.method, cand.dataset)
        if before != after:
            n = steps if steps is not None else shortest_schedule(cand.raw)
            plan.append((cand, n, check_schedule(cand.raw, n, cand.name), before, after))
    log(f"certify {old_sha[:7]} -> {new_sha[:7] if new else 'working tree'}: {len(plan)} of {len(candidates)} "
        f"configurations run changed code")
    report = {"old_commit": old_sha, "new_commit": new_sha, "new_dirty": new_dirty, "configs": [], "identical": True}
    main_thread = threading.current_thread() is threading.main_thread()  # where Python handles signals
    previous = signal.signal(signal.SIGTERM, _stop) if main_thread else None  # terminated: worktrees removed
    try:
        _git(repo, "worktree", "prune")  # those of a certification killed outright (SIGKILL)
        with tempfile.TemporaryDirectory(prefix="certify-") as tmp:
            _compare(repo, Path(tmp), old_sha, new_sha if new else None, plan, threads, jobs, report, log, partial)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    report["moved"] = [{"name": c["name"], "method": c["method"], "dataset": c["dataset"],
                        "difference": c["difference"]} for c in report["configs"] if c["difference"] is not None]
    if partial and report["moved"]:
        log(f"moved: {len(report['moved'])} of {len(report['configs'])} configurations")
        for moved in report["moved"]:
            log(f"  {moved['name']} ({moved['method']}): {moved['difference']}")
    if plan and (report["identical"] or (partial and any(c["difference"] is None for c in report["configs"]))):
        report["certificate"] = str(_write_certificate(report, old_files, out or codeversion.certificate_dir(
            repo / "reprokit"), machine_description(), partial))
    return report


def _stop(signum, frame):
    """SIGTERM: stop the trainings (their threads then return) and unwind, so the worktrees are removed."""
    for proc in list(_TRAINING):
        proc.kill()
    raise SystemExit(128 + signum)


def _compare(repo: Path, tmp: Path, old_sha: str, new_sha: str | None, plan: list, threads: int, jobs: int,
             report: dict, log, partial: bool = False) -> None:
    """Train each planned configuration on both codes (worktrees under ``tmp``; the working tree when
    ``new_sha`` is None), the old code given it as :func:`old_side` makes it, and record the first difference of
    each in ``report``, stopping at the first unless ``partial``."""
    _git(repo, "worktree", "add", "--detach", "-q", str(tmp / "old"), old_sha)
    try:
        if new_sha:
            _git(repo, "worktree", "add", "--detach", "-q", str(tmp / "new"), new_sha)
        trees = {"old": tmp / "old", "new": tmp / "new" if new_sha else repo}
        sides = old_side(trees["old"], trees["new"], [cand.raw for cand, *_ in plan], tmp / "settings") \
            if plan else []
        for i, ((cand, n, boundaries, before, after), side) in enumerate(zip(plan, sides)):
            entry = {"name": cand.name, "method": cand.method, "dataset": cand.dataset, "config_key": side.key,
                     "steps": n, "boundaries": boundaries, "logged_steps": None, "old": before, "new": after}
            if side.refused:
                entry["difference"] = side.refused
                log(f"  {cand.name} ({cand.method}): not compared: {side.refused}")
            else:
                entry["difference"], entry["logged_steps"] = _train_both(
                    trees, tmp / f"{i:03d}-{cand.name}", cand.raw, side, n, threads, jobs, repo)
                log(f"  {cand.name} ({cand.method}, {n} steps): "
                    + ("bit-identical" if entry["difference"] is None else f"DIFFERENT at {entry['difference']}"))
            report["configs"].append(entry)
            if entry["difference"] is not None:
                report["identical"] = False
                if not partial:
                    break
    finally:
        for side in ("old", "new"):
            if (tmp / side).exists():
                _git(repo, "worktree", "remove", "--force", str(tmp / side))


def _train_both(trees: dict, cell: Path, raw: dict, side: OldSide, steps: int, threads: int, jobs: int,
                repo: Path) -> tuple[str | None, int]:
    """Train ``raw`` with the short schedule on the new code and, less the settings ``side`` drops, on the old
    one, side by side in ``cell``; their first difference and the logged steps."""
    cell.mkdir()
    config = _certification_config(raw, steps, threads)
    files = {"new": cell / "config.yaml", "old": cell / "config-old.yaml"}
    files["new"].write_text(yaml.safe_dump(config, sort_keys=False))
    files["old"].write_text(yaml.safe_dump(codeversion.without_entries(config, side.dropped), sort_keys=False))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda which: train_on(trees[which], files[which], cell / which, repo), ("old", "new")))
    logged = sum(1 for line in (cell / "new" / "metrics.jsonl").read_text().splitlines() if line)
    return first_difference(cell / "old", cell / "new"), logged


def _write_certificate(report: dict, old_files: dict, out: Path, machine: dict, partial: bool = False) -> Path:
    """The certificate: per method and data set compared, the old digest (and the old commit's scheme-1 digest,
    so that records written before scheme 2 from a tree with uncommitted changes compare too) and the new one.
    A pair of a partial certification holds for its identical configurations only: ``configs`` their config
    keys, ``config_names`` their names, ``moved`` the others with their first difference; a pair with none
    identical is left out."""
    versions, groups = {}, {}
    for cfg in report["configs"]:
        groups.setdefault((cfg["method"], cfg["dataset"]), []).append(cfg)
    for (method, dataset), group in groups.items():
        same = [c for c in group if c["difference"] is None]
        if not same:
            continue
        pair = versions[(method, dataset)] = {
            "method": method, "dataset": dataset, "old": group[0]["old"], "new": group[0]["new"],
            "old_scheme1": codeversion.scheme1_version(old_files, method)}
        if partial:
            pair["configs"] = sorted({c["config_key"] for c in same})
            pair["config_names"] = [c["name"] for c in same]
            pair["moved"] = [{"name": c["name"], "difference": c["difference"]} for c in group
                             if c["difference"] is not None]
    cert = {"scheme": codeversion.SCHEME, "old_commit": report["old_commit"], "new_commit": report["new_commit"],
            "new_dirty": report["new_dirty"], "versions": list(versions.values()),
            "configs": [{k: c[k] for k in ("name", "method", "dataset", "config_key", "steps", "boundaries",
                                           "logged_steps", "difference")} for c in report["configs"]],
            "machine": machine, "date": dt.date.today().isoformat()}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{report['old_commit'][:7]}-{report['new_commit'][:7]}{'-dirty' if report['new_dirty'] else ''}.json"
    path.write_text(json.dumps(cert, indent=1) + "\n")
    return path
