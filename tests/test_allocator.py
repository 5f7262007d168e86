"""The allocator a sweep's training kernels start with (reprokit.allocator)."""
import os

import nbformat
import pytest

from reprokit import allocator
from reprokit.allocator import ENV_SWITCH, allocator_name, tcmalloc_library, with_allocator
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


def test_an_unknown_choice_stops_a_sweep_before_any_cell_and_names_the_variable(tmp_path, monkeypatch):
    from reprokit.sweep import run_sweep

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
    from reprokit.kernels import execute_logged

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
