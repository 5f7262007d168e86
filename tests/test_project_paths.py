"""Notebook paths resolve against the project root wherever the kernel starts (reprokit.experiments.project), and the
defaults of the notebooks that load networks point at demo runs (reprokit.experiments.demo)."""
import json
from pathlib import Path

import papermill as pm
import pytest

from reprokit.experiments import demo
from reprokit.experiments.project import Project, ProjectPathError, enter_project, find_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("REPROKIT_PROJECT", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_root_is_found_from_the_notebook_then_the_working_directory_then_the_package(tmp_path, clean_env):
    other = tmp_path / "elsewhere"
    (other / "notebooks").mkdir(parents=True)
    (other / "params").mkdir()
    # JupyterLab tells its kernels the notebook's path; the kernel itself runs in the notebook's folder
    clean_env.setenv("JPY_SESSION_NAME", str(other / "notebooks" / "x.ipynb"))
    found = find_project(cwd=ROOT / "notebooks")
    assert found.root == other and "notebook's location" in found.found_from
    clean_env.delenv("JPY_SESSION_NAME")
    found = find_project(cwd=other / "notebooks")
    assert found.root == other and "working directory" in found.found_from
    found = find_project(cwd=tmp_path)  # papermill --cwd /tmp: the package's own checkout
    assert found.root == ROOT and "package" in found.found_from


def test_explicit_root_must_be_a_project(tmp_path, clean_env):
    clean_env.setenv("REPROKIT_PROJECT", str(tmp_path))
    with pytest.raises(ProjectPathError, match=r"\$REPROKIT_PROJECT = .* holds no notebooks and params"):
        find_project()


def test_paths_resolve_against_the_root_and_errors_say_where(tmp_path):
    project = Project(ROOT, "the working directory (x)")
    assert project.path("config", "params/notebook/short.yaml", expect="file") == Path("params/notebook/short.yaml")
    assert project.path("out", tmp_path / "o") == tmp_path / "o"  # outside the root: stays absolute
    with pytest.raises(ProjectPathError) as err:
        project.path("config", "params/digits/nope.yaml", expect="file")
    message = str(err.value)
    assert f"resolved to {ROOT / 'params/digits/nope.yaml'}, which does not exist" in message
    assert f"against the project root {ROOT}, found from the working directory" in message
    with pytest.raises(ProjectPathError, match="which is a folder, not a file"):
        project.path("config", "params", expect="file")


def test_enter_project_makes_the_root_the_working_directory(clean_env):
    clean_env.chdir(ROOT / "notebooks")
    assert enter_project().root == ROOT
    assert Path.cwd() == ROOT


def test_inspector_needs_a_checkpoint_and_says_where_records_lack_one():
    project = Project(ROOT, "test")
    with pytest.raises(ProjectPathError, match="holds no checkpoint.pt.*docs/runs have none"):
        demo.run_directory(project, "run_dir", "docs/runs/benchmark/digits-table4-stpg-s0")


def test_demo_folder_builds_only_the_runs_a_notebook_reads(tmp_path, monkeypatch):
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    project, built = Project(tmp_path, "test"), []
    monkeypatch.setattr(demo, "ensure", lambda p, names, log=print: built.append(tuple(names)))
    assert demo.runs_folder(project, "runs", "runs/demo", "fig7") == Path("runs/demo")
    assert built == [("digits-table4-ls", "digits-table4-stpg")]
    demo.runs_folder(project, "runs", str(tmp_path / "runs"), "fig7")  # another folder: nothing is built
    assert built == [("digits-table4-ls", "digits-table4-stpg")]


def test_unknown_demo_runs_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="no demo run digits-x; demo runs are digits-table4-ls"):
        demo.ensure(Project(tmp_path, "test"), ["digits-x"])


@pytest.mark.parametrize("cwd", ["notebooks", "/"])
def test_a_notebook_runs_from_its_defaults_in_any_working_directory(tmp_path, cwd, clean_env):
    """The evaluate notebook's default is a committed record: under papermill from the notebooks folder (as
    JupyterLab starts kernels) or from / it shows the same table."""
    out = tmp_path / "evaluate.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "evaluate.ipynb"), str(out), kernel_name="python3",
                        progress_bar=False, cwd=str(ROOT / cwd))
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert any("digit 9" in "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_a_bad_path_parameter_fails_naming_the_resolved_path(tmp_path, clean_env):
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(ROOT / "notebooks" / "train.ipynb"), str(tmp_path / "t.ipynb"),
                            parameters={"config": "params/digits/missing.yaml"}, kernel_name="python3",
                            progress_bar=False, cwd=str(tmp_path))
    assert err.value.ename == "ProjectPathError"
    assert f"resolved to {ROOT / 'params/digits/missing.yaml'}, which does not exist" in err.value.evalue
