"""The allocator a sweep's training kernels start with (reprokit.experiments.allocator)."""
import os

import nbformat
import pytest

from reprokit.experiments import allocator
from reprokit.experiments.allocator import ENV_SWITCH, allocator_name, tcmalloc_library, with_allocator
from reprokit.config import ConfigError
from tests.test_notebooks import ROOT

needs_tcmalloc = pytest.mark.skipif(tcmalloc_library() is None and not os.environ.get("REPROKIT_REQUIRE_E2E"),
                                    reason="no tcmalloc on this machine (scripts/bootstrap.sh installs it as root)")


def test_tcmalloc_goes_first_and_keeps_an_existing_preload(monkeypatch):
    monkeypatch.setattr(allocator, "tcmalloc_library", lambda: "libtcmalloc_minimal.so.4")
    env = with_allocator({"LD_PRELOAD": "/opt/libfoo.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4 /opt/libfoo.so" and env["PATH"] == "/bin"
    assert with_allocator(env) == env, "preloaded once, not twice"
    assert with_allocator({"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"})["LD_PRELOAD"] == \
        "/usr/lib/libtcmalloc_minimal.so.4"


def test_the_system_allocator_on_request_or_without_tcmalloc(monkeypatch):
    monkeypatch.setattr(allocator, "tcmalloc_library", lambda: "libtcmalloc_minimal.so.4")
    assert "LD_PRELOAD" not in with_allocator({ENV_SWITCH: "system"})
    monkeypatch.setattr(allocator, "tcmalloc_library", lambda: None)
    assert "LD_PRELOAD" not in with_allocator({})


def test_no_preload_off_linux(monkeypatch):
    """macOS's loader ignores LD_PRELOAD: a preload there would only restart commands for nothing and
    name an allocator the process does not have."""
    monkeypatch.setattr("sys.platform", "darwin")
    assert tcmalloc_library() is None and "LD_PRELOAD" not in with_allocator({})


def test_an_unknown_choice_stops_a_sweep_before_any_cell_and_names_the_variable(tmp_path, monkeypatch):
    from reprokit.experiments.sweep import run_sweep

    with pytest.raises(ConfigError, match=rf"{ENV_SWITCH}='jemalloc'.*'tcmalloc', 'system'"):
        with_allocator({ENV_SWITCH: "jemalloc"})
    (tmp_path / "s.yaml").write_text(f"name: s\nruns: {tmp_path / 'runs'}\nblocks:\n"
                                     "  - configs: [params/digits/table4/ls.yaml]\n    seeds: [0]\n")
    monkeypatch.setenv(ENV_SWITCH, "jemalloc")
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=ENV_SWITCH):
        run_sweep(tmp_path / "s.yaml", log=lambda line: None)
    assert not (tmp_path / "runs").exists(), "no cell started"


@needs_tcmalloc
@pytest.mark.parametrize("choice, loaded", [("tcmalloc", True), ("system", False)])
def test_a_sweep_kernel_runs_with_the_chosen_allocator(tmp_path, monkeypatch, choice, loaded):
    from reprokit.experiments.kernels import execute_logged

    monkeypatch.setenv(ENV_SWITCH, choice)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("maps = open('/proc/self/maps').read()\n"
                                          "open('maps.txt', 'w').write(maps)")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    execute_logged(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, tmp_path / "kernel.log", cwd=str(tmp_path))
    assert ("libtcmalloc" in (tmp_path / "maps.txt").read_text()) is loaded


def test_the_allocator_is_named_from_the_preload():
    assert allocator_name({"LD_PRELOAD": "libfoo.so /usr/lib/libtcmalloc_minimal.so.4"}) == "tcmalloc"
    assert allocator_name({"LD_PRELOAD": "libfoo.so"}) == allocator_name({}) == "system"


def test_a_training_command_line_restarts_itself_with_tcmalloc_and_a_call_from_python_does_not(monkeypatch):
    from reprokit import cli

    started = []
    monkeypatch.setattr(allocator, "tcmalloc_library", lambda: "libtcmalloc_minimal.so.4")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    monkeypatch.setattr(os, "execve", lambda path, args, env: started.append((path, args, env["LD_PRELOAD"])))
    started_as = ["/venv/bin/python", "-u", "/venv/bin/reprokit", "train", "--config", "missing.yaml"]
    monkeypatch.setattr("sys.orig_argv", started_as)
    monkeypatch.setattr("sys.argv", started_as[2:])
    assert cli.main() == 2  # execve is a stand-in that returns, so the command goes on and finds no config
    assert started == [(cli.sys.executable, started_as, "libtcmalloc_minimal.so.4")], "restarted as started"
    assert cli.main(["train", "--config", "missing.yaml"]) == 2 and len(started) == 1, "no restart from Python"
    monkeypatch.setattr("sys.argv", ["reprokit", "results", "missing"])
    cli.main()
    monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4")
    monkeypatch.setattr("sys.argv", ["reprokit", "pretrain", "--config", "missing.yaml"])
    assert cli.main() == 2 and len(started) == 1, "results does not train; a preloaded process goes on"
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setenv(ENV_SWITCH, "jemalloc")
    assert cli.main() == 2 and len(started) == 1, "a bad choice is an input error, not a restart"


@needs_tcmalloc
@pytest.mark.parametrize("command, restarts", [("pretrain", True), ("results", False)])
def test_the_restarted_command_keeps_its_process_and_has_tcmalloc_mapped(tmp_path, command, restarts):
    """Every interpreter start runs a sitecustomize that records its process id, whether tcmalloc is
    mapped and whether it was started with ``-u``: a training command starts twice in one process, the second
    time with tcmalloc and with the interpreter options of the first (``-u``)."""
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\nwith open(os.environ['STARTS'], 'a') as f:\n"
        "    f.write(f\"{os.getpid()} {'libtcmalloc' in open('/proc/self/maps').read()} {'-u' in sys.orig_argv}\\n\")\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ENV_SWITCH)}
    env.update(PYTHONPATH=str(tmp_path), STARTS=str(tmp_path / "starts.txt"))
    args = {"pretrain": ["--config", str(tmp_path / "missing.yaml")], "results": [str(tmp_path)]}[command]
    subprocess.run([sys.executable, "-u", "-m", "reprokit", command, *args], env=env, cwd=ROOT, capture_output=True,
                   timeout=120)
    starts = [line.split() for line in (tmp_path / "starts.txt").read_text().splitlines()]
    assert [loaded for _, loaded, _ in starts] == (["False", "True"] if restarts else ["False"])
    assert len({pid for pid, _, _ in starts}) == 1 and {unbuffered for _, _, unbuffered in starts} == {"True"}
