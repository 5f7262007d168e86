"""What an installation gets: the wheel carries every module and data file of the package, each folder is a
regular package, and ``python -m reprokit`` is the ``reprokit`` command."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = ["reprokit/viz/paper_numbers.csv", "reprokit/viz/paper_cells.csv", "reprokit/viz/claims.yaml"]


def test_wheel_holds_every_module_and_data_file(tmp_path):
    # built from a copy, so the build leaves nothing (build/, egg-info) in the working tree
    src = tmp_path / "src"
    shutil.copytree(ROOT / "reprokit", src / "reprokit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True)
    (wheel,) = (tmp_path / "dist").glob("reprokit-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "reprokit").rglob("*.py")
                if "__pycache__" not in p.parts} | set(DATA_FILES)
    assert expected - in_wheel == set()
    packages = {str(Path(f).parent) for f in in_wheel if f.startswith("reprokit/") and f.endswith(".py")}
    assert {p for p in packages if f"{p}/__init__.py" not in in_wheel} == set(), "namespace packages"


def test_python_m_reprokit_is_the_reprokit_command(tmp_path):
    script = Path(sys.executable).with_name("reprokit")  # the console script pip wrote
    codes = []
    for args in (["results", str(tmp_path)], ["no-such-command"]):
        as_module, as_script = (subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT)
                                for command in ([sys.executable, "-m", "reprokit"], [str(script)]))
        assert (as_module.returncode, as_module.stdout, as_module.stderr) == \
            (as_script.returncode, as_script.stdout, as_script.stderr), args
        codes.append(as_module.returncode)
    assert codes == [1, 2]  # a command's own failure (no runs to summarise); argparse's usage error
