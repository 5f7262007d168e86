"""A run's code version is the code it executes: the static import closure of the loop, its method, its data set
and the model, each module digested without docstrings, comments or layout; records keep the scheme they were
digested with, and certificates carry older versions forward."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reprokit import codeversion
from reprokit.codeversion import CodeVersions, code_version, code_version_at, config_key, normalised, record_version
from reprokit.methods import registry

METHODS = sorted(registry())


@pytest.fixture
def package(tmp_path):
    """A copy of the package's sources, to edit."""
    pkg = tmp_path / "repo" / "reprokit"
    shutil.copytree(codeversion.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    return pkg


def versions(pkg, dataset="digits"):
    return {m: code_version(pkg, m, dataset) for m in METHODS}


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{path} no longer holds {old!r}: pick another line to edit"
    path.write_text(text.replace(old, new, 1))


def test_the_normal_form_is_pinned():
    """Changing how modules are normalised changes every digest: this text is the scheme's definition."""
    source = b'"""doc"""\nimport a  # note\n\n\ndef f(x,  y=1):\n    """doc"""\n    return x+y\n'
    assert normalised(source) == (
        "Module(body=[Import(names=[alias(name='a')]),FunctionDef(name='f',args=arguments(args=[arg(arg='x'),"
        "arg(arg='y')],defaults=[Constant(value=1)]),body=[Return(value=BinOp(left=Name(id='x',ctx=Load()),"
        "op=Add(),right=Name(id='y',ctx=Load())))])])")


def test_docstrings_comments_and_layout_change_no_version(package):
    before = versions(package)
    edit(package / "engine" / "loop.py", '"""The training loop shared', '"""The one training loop shared')
    edit(package / "methods" / "stpg_equations.py", "\n\n\ndef ", "\n\n\n# a comment\ndef ")
    edit(package / "methods" / "cosa.py", "import torch\n", "import torch  # the tensors\n")
    edit(package / "models" / "deeplab.py", "from __future__ import annotations\n",
         "from __future__ import annotations\n\n\n")
    assert versions(package) == before


def test_an_edit_in_one_method_moves_that_method_only(package):
    before = versions(package)
    edit(package / "methods" / "cosa.py", "import torch\n", "import torch\nUNUSED = 1\n")
    after = versions(package)
    assert [m for m in METHODS if after[m] != before[m]] == ["cosa"]


def test_an_edit_in_the_loop_moves_every_method(package):
    before = versions(package)
    edit(package / "engine" / "loop.py", "import torch\n", "import torch\nUNUSED = 1\n")
    after = versions(package)
    assert all(after[m] != before[m] for m in METHODS)


@pytest.mark.parametrize("module", ["inspect/core.py", "engine/rundir.py", "engine/reeval.py", "data/check.py",
                                    "engine/train.py", "runs/results.py", "experiments/sweep.py", "viz/tables.py",
                                    "data/weak_label_stats.py", "methods/display.py"])
def test_code_that_only_runs_around_training_moves_no_version(package, module):
    before = versions(package)
    (package / module).write_text((package / module).read_text() + "\nUNUSED = 1\n")
    assert versions(package) == before


def test_a_data_set_module_moves_the_runs_on_it():
    files = codeversion.tree_files()
    edited = {**files, "data/voc.py": files["data/voc.py"] + b"\nUNUSED = 1\n"}
    assert codeversion.digest_of(edited, "stpg", "voc") != codeversion.digest_of(files, "stpg", "voc")


def test_the_static_closure_holds_every_module_training_imports():
    """What the loop and every method import when they run (the registry loads all method modules) is in the
    union of the closures: the static reading misses no import. And none of the code that inspects or records
    finished runs is imported by training."""
    probe = ("import sys; import reprokit.engine.loop, reprokit.methods as m; m.registry(); "
             "print('\\n'.join(sorted(k for k in sys.modules if k.startswith('reprokit'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    files = codeversion.tree_files()
    closure = set().union(*(codeversion.training_closure(files, m, "digits") for m in METHODS))
    modules = {codeversion._module_name(rel) for rel in closure}
    assert set(loaded) <= modules, set(loaded) - modules
    outside = {"reprokit.engine.rundir", "reprokit.engine.reeval", "reprokit.data.check", "reprokit.inspect.core",
               "reprokit.runs.results", "reprokit.configure", "reprokit.codeversion", "reprokit.data.weak_label_stats"}
    assert not outside & (modules | set(loaded))


def test_each_method_module_is_found_where_the_registry_finds_it():
    found = codeversion.method_modules(codeversion.tree_files())
    assert {name: f"methods/{entry.cls.__module__.rsplit('.', 1)[1]}.py" for name, entry in registry().items()} \
        == found


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                          cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_the_version_of_a_commit_equals_that_of_the_same_tree_on_disk(package):
    repo = package.parent
    git(repo, "init", "-q")
    git(repo, "add", "reprokit")
    git(repo, "commit", "-qm", "one")
    commit = git(repo, "rev-parse", "HEAD")
    on_disk = versions(package)
    assert {m: code_version_at(commit, package, m, "digits") for m in METHODS} == on_disk
    edit(package / "methods" / "stpg.py", "import torch\n", "import torch\nUNUSED = 1\n")  # uncommitted
    assert code_version_at(commit, package, "stpg", "digits") == on_disk["stpg"] != code_version(package, "stpg",
                                                                                                   "digits")
    assert code_version_at("0" * 40, package, "stpg", "digits") is None


def test_a_record_is_compared_in_the_scheme_it_was_digested_with(package, tmp_path):
    repo = package.parent
    git(repo, "init", "-q")
    git(repo, "add", "reprokit")
    git(repo, "commit", "-qm", "one")
    commit = git(repo, "rev-parse", "HEAD")
    now = code_version(package, "stpg", "digits")
    scheme1_now = codeversion.scheme1_version(codeversion.tree_files(package), "stpg")
    run = {"method": "stpg", "dataset": "digits"}
    assert record_version({**run, "code_version": "x", "code_version_scheme": 2}, package) == (2, "x")
    # an older record naming a clean commit: its scheme-2 version is recomputed from that commit
    assert record_version({**run, "code_version": "old1", "git": {"commit": commit, "dirty": False}}, package) \
        == (2, now)
    # a dirty tree's record keeps its own scheme-1 digest, compared with today's scheme-1 digest
    dirty = {**run, "code_version": scheme1_now, "git": {"commit": commit, "dirty": True}}
    assert record_version(dirty, package) == (1, scheme1_now)
    assert record_version({**run, "git": {"commit": commit, "dirty": True}}, package) is None
    current = CodeVersions(package, tmp_path / "no-certificates")
    assert current.is_current(dirty) and current.is_current({**run, "code_version_scheme": 2, "code_version": now})
    (package / "methods" / "stpg.py").write_text((package / "methods" / "stpg.py").read_text() + "\nUNUSED = 1\n")
    later = CodeVersions(package, tmp_path / "no-certificates")
    assert not later.is_current(dirty) and not later.is_current({**run, "code_version_scheme": 2,
                                                                  "code_version": now})


def test_certificates_carry_a_version_forward_along_a_chain(package, tmp_path):
    now = code_version(package, "stpg", "digits")
    certs = tmp_path / "certificates"
    certs.mkdir()
    (certs / "a.json").write_text(json.dumps({"versions": [{"method": "stpg", "dataset": "digits", "old": "v1",
                                                            "new": "v2"}]}))
    (certs / "b.json").write_text(json.dumps({"versions": [{"method": "stpg", "dataset": "digits", "old": "v2",
                                                            "new": now}]}))
    (certs / "a.json").write_text(json.dumps({"versions": [{"method": "stpg", "dataset": "digits", "old": "v1",
                                                            "old_scheme1": "s1", "new": "v2"}]}))
    versions_now = CodeVersions(package, certs)
    record = {"method": "stpg", "dataset": "digits", "code_version_scheme": 2}
    assert versions_now.is_current({**record, "code_version": "v1"})
    dirty = {"method": "stpg", "dataset": "digits", "code_version": "s1", "git": {"commit": "c", "dirty": True}}
    assert versions_now.standing(dirty) == "certified"  # a scheme-1 record of the old commit's code
    assert not versions_now.is_current({**record, "code_version": "v0"})
    assert not versions_now.is_current({**record, "method": "cosa", "code_version": "v1"})
    (certs / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match="c.json: not a code-version certificate"):
        CodeVersions(package, certs)


def test_a_config_key_leaves_out_only_what_names_a_run():
    """Certificates hold config keys: this value is the key's definition. Name, seeds and threads are set aside;
    every other entry counts, and an entry a record lacks (a field added later) is not filled in."""
    raw = {"name": "a", "method": {"name": "stpg", "tau": 0.5}, "data": {"split_seed": 1, "weak_seed": None,
                                                                        "crop_size": 48},
           "train": {"seed": 0, "threads": 1, "iters": 4000}}
    assert config_key(raw) == "153de36544c8"
    another_run = {**raw, "name": "b", "data": {**raw["data"], "split_seed": 2, "weak_seed": 7},
                   "train": {**raw["train"], "seed": 3, "threads": None}}
    assert config_key(another_run) == config_key(raw) and raw["train"]["seed"] == 0, "the mapping is not changed"
    for other in ({**raw, "train": {**raw["train"], "iters": 8000}}, {**raw, "method": {"name": "stpg"}},
                  {**raw, "method": {**raw["method"], "phi": 0.95}}, {**raw, "data": {**raw["data"], "root": "x"}}):
        assert config_key(other) != config_key(raw)


def _partial(package, tmp_path, kept: dict) -> Path:
    """A certificate folder: v0 -> v1 for every configuration, v1 (and scheme-1 s1) -> today's STPG digest for
    configuration ``kept`` only."""
    certs = tmp_path / "certificates"
    certs.mkdir()
    (certs / "a.json").write_text(json.dumps({"versions": [{"method": "stpg", "dataset": "digits", "old": "v0",
                                                            "new": "v1"}]}))
    (certs / "b.json").write_text(json.dumps({"versions": [{
        "method": "stpg", "dataset": "digits", "old": "v1", "old_scheme1": "s1",
        "new": code_version(package, "stpg", "digits"), "configs": [config_key(kept)],
        "config_names": ["digits-all"], "moved": [{"name": "digits-cons", "difference": "step 9: loss ..."}]}]}))
    return certs


def test_a_partial_certificate_holds_for_the_records_of_its_configurations(package, tmp_path):
    kept = {"name": "digits-all", "method": {"name": "stpg", "pixel_selection": ["cons", "hmis", "lmis"]},
            "train": {"seed": 0}}
    moved = {**kept, "method": {**kept["method"], "pixel_selection": ["cons"]}}
    certs = _partial(package, tmp_path, kept)
    versions = CodeVersions(package, certs)
    record = {"method": "stpg", "dataset": "digits", "code_version_scheme": 2, "code_version": "v1"}
    assert versions.standing(record, kept) == "certified"
    assert versions.standing(record, {**kept, "name": "digits-all-s4", "train": {"seed": 4}}) == "certified"
    assert versions.standing(record, moved) == "stale"
    assert versions.standing(record) == "stale", "no configuration: the partial step is not taken"
    older = {**record, "code_version": "v0"}  # a full certificate before it
    assert versions.is_current(older, kept) and not versions.is_current(older, moved)
    dirty = {"method": "stpg", "dataset": "digits", "code_version": "s1", "git": {"commit": "c", "dirty": True}}
    assert versions.standing(dirty, kept) == "certified" and versions.standing(dirty, moved) == "stale"
    # another certificate of the same step for every configuration: it holds for every configuration
    (certs / "c.json").write_text(json.dumps({"versions": [{"method": "stpg", "dataset": "digits", "old": "v1",
                                                            "new": code_version(package, "stpg", "digits")}]}))
    assert CodeVersions(package, certs).standing(record, moved) == "certified"
    (certs / "c.json").write_text(json.dumps({"versions": [{"method": "stpg", "dataset": "digits", "old": "v1",
                                                            "new": "v2", "configs": "abc"}]}))
    with pytest.raises(ValueError, match="c.json: a 'configs' of 'versions' must be a list of config keys"):
        CodeVersions(package, certs)


def test_results_and_sweeps_read_a_run_s_configuration_for_partial_certificates(package, tmp_path):
    """``reprokit results`` and the sweep's cell states pass the run's config.yaml to the standing."""
    import yaml

    from reprokit.experiments.sweep import Cell, _recorded_state, expand
    from reprokit.runs.results import load_run

    source = Path("docs/runs/benchmark/digits-table4-dm-s0")
    run = tmp_path / "runs" / source.name
    run.mkdir(parents=True)
    for name in ("config.yaml", "eval.json"):
        shutil.copy(source / name, run / name)
    meta = json.loads((source / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "code_version_scheme": 2, "code_version": "v1"}))
    config = yaml.safe_load((run / "config.yaml").read_text())
    versions = CodeVersions(package, _partial(package, tmp_path, config))
    [cell] = [c for c in expand("params/sweeps/ablations.yaml")[1] if c.cell_id == source.name]
    cell = Cell(cell.cell_id, cell.config, cell.overrides, run)
    record = {"param_hash": cell.param_hash(), "ok": True}
    assert load_run(run, versions)["standing"] == "certified" and _recorded_state(cell, record, versions) == "done"
    config["method"]["tau"] = 0.25  # a run of another configuration
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert load_run(run, versions)["standing"] == "stale" and _recorded_state(cell, record, versions) == "stale"


def test_no_module_imports_itself_back():
    """No import circle, not even one broken by an import inside a function: the layers import one way."""
    files = codeversion.tree_files()
    graph = {rel: codeversion.imports_of(rel, files) for rel in files}
    done, path = set(), []

    def visit(rel):
        if rel in path:
            pytest.fail("import circle: " + " -> ".join(path[path.index(rel):] + [rel]))
        if rel not in done:
            path.append(rel)
            for other in sorted(graph[rel]):
                visit(other)
            path.pop()
            done.add(rel)

    for rel in sorted(graph):
        visit(rel)


def test_a_run_s_closure_holds_its_own_data_set_only():
    files = codeversion.tree_files()
    voc = codeversion.training_closure(files, "stpg", "voc")
    digits = codeversion.training_closure(files, "stpg", "digits")
    assert "data/voc.py" in voc and not {"data/digits.py", "data/cityscapes.py"} & voc
    assert {"data/digits.py", "data/voc.py"} <= digits and "data/cityscapes.py" not in digits  # VOC's layout


def test_the_inspector_layers_a_method_declares_move_no_version(package):
    before = versions(package)
    edit(package / "methods" / "stpg.py", '"selection category"', '"pixel selection category"')
    edit(package / "methods" / "cosa.py", "from reprokit.methods.display import ",
         "from reprokit.methods.display import InspectorLayer, ")
    assert versions(package) == before


def test_the_display_module_holds_plain_records_only():
    """What is left out of every code version must be unable to compute: frozen dataclasses of annotated fields
    with constant defaults, no function, and the alias naming them."""
    import ast

    tree = ast.parse((codeversion.PACKAGE_DIR / codeversion.DISPLAY_MODULE).read_text())
    for node in tree.body[1:]:  # after the docstring
        if isinstance(node, ast.ClassDef):
            assert [ast.unparse(d) for d in node.decorator_list] == ["dataclass(frozen=True)"], node.name
            fields = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            assert all(isinstance(s, ast.AnnAssign) and (s.value is None or isinstance(s.value, ast.Constant))
                       for s in fields), node.name
        else:
            assert isinstance(node, (ast.ImportFrom, ast.Assign)), ast.unparse(node)


def test_training_never_reads_the_inspector_layers(tiny_cfg, tmp_path, monkeypatch):
    from reprokit.engine.train import train

    def unreadable(self):
        raise AssertionError("training read inspector_layers")

    for entry in registry().values():
        monkeypatch.setattr(entry.cls, "inspector_layers", property(unreadable))
    cfg = tiny_cfg(method={"name": "stpg", "contrastive_start": 0.0, "bank_start": 0.0}, train={"iters": 2})
    assert 0 <= train(cfg, tmp_path / "run")["miou"] <= 1


LAYERS = (("entry points", ("cli.py", "figures.py", "main.py", "__main__.py", "viz/", "inspect/")),
          ("experiments", ("experiments/",)), ("records of runs", ("runs/",)))


def _layer(rel: str) -> int:
    """3 entry points (and the figures and inspector they show), 2 experiments, 1 records of runs, 0 the rest:
    configuration, data, models, methods, engine."""
    return next((3 - i for i, (_, prefixes) in enumerate(LAYERS) if rel.startswith(prefixes)), 0)


def test_the_layers_import_downwards_only():
    files = codeversion.tree_files()
    upward = [f"{rel} -> {dep}" for rel in sorted(files) for dep in sorted(codeversion.imports_of(rel, files))
              if _layer(dep) > _layer(rel)]
    assert not upward
    assert {_layer(rel) for rel in files} == {0, 1, 2, 3}
