"""The tracked documentation: no words about how the project was built, quoted tables equal to the generated
files, links that resolve, a README a newcomer reads in minutes, and the adding-a-method example runs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# how the project was built is not what it is: these words belong in commit messages, not in its text
PROCESS_WORDS = re.compile(r"(?<![./])\bsessions?\b|\bissues? #?\d+|(?<![\w&/])#\d+\b|\bleft alone\b", re.I)
TEXT = (".md", ".cff", ".py", ".yaml", ".yml", ".toml", ".txt", ".sh")


def tracked_text() -> list[Path]:
    """Tracked source and documentation files, not the run records or executed notebooks' logs."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / f for f in files if f.endswith(TEXT) and not f.startswith("docs/runs/") and "/notebooks/" not in f
            and f != "tests/test_docs.py"]  # this file names the words it looks for


def process_words(text: str) -> list[str]:
    return PROCESS_WORDS.findall(text.replace('scope="session"', ""))  # pytest's fixture scope is not one


def test_process_words_are_found():
    assert process_words("as session 13 measured") == ["session"]
    assert process_words("see #11 and issue 14") == ["#11", "issue 14"]
    assert process_words("the weights were left alone") == ["left alone"]
    assert process_words('@pytest.fixture(scope="session") # colour #fff, sm_80, seeds 0-4') == []
    assert process_words("panel.sessionContext.session, GET /api/sessions") == []  # JupyterLab's API


def test_tracked_text_has_no_process_words():
    found = {str(p.relative_to(ROOT)): words for p in tracked_text() if (words := process_words(p.read_text()))}
    assert not found


def test_quoted_tables_equal_the_generated_files():
    proc = subprocess.run([sys.executable, "scripts/embed_tables.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "<!-- begin docs/benchmark-tables/summary.md -->" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("page", ["README.md", "docs/README.md"])
def test_links_of_the_readmes_resolve(page):
    path = ROOT / page
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text())
    missing = [t for t in targets if not t.startswith("http") and not (path.parent / t).exists()]
    assert targets and not missing


def test_readme_is_short_and_says_what_is_not_run():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "not yet run any VOC or Cityscapes cell on a GPU" in text


def test_adding_a_method_example_trains_one_step(digits_root):
    """The page's example is code that works with the package, not a sketch."""
    from reprokit.configure import from_dict
    from tests.conftest import tiny_raw

    page = (ROOT / "docs" / "adding-a-method.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "adding-a-method.md", "exec"), namespace)
    cfg = from_dict(tiny_raw(digits_root))
    method = namespace["EntropyMin"](cfg, namespace["EntropyMinParams"](), cfg.data.num_classes)
    x = torch.randn(2, 3, cfg.data.crop_size, cfg.data.crop_size)
    y = torch.randint(0, cfg.data.num_classes, (2, cfg.data.crop_size, cfg.data.crop_size))
    out = method.training_step({"image": x, "mask": y}, {"image": x}, 0)
    sum(out.losses.values()).backward()
    assert set(out.losses) == {"sup", "entropy"} and all(torch.isfinite(v) for v in out.losses.values())
    assert namespace["METHOD"].cls is namespace["EntropyMin"]


def test_readme_and_measurements_quote_the_ledger_counts():
    """The verdict counts the README and measurements.md state are those of the committed ledger."""
    import pandas as pd

    from reprokit.viz.claims import verdict_counts

    lines = [line for line in (ROOT / "docs/benchmark-tables/claims.md").read_text().splitlines()
             if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert all(len(r) == len(header) for r in rows)  # no cell holds a '|' that would break the table
    table = pd.DataFrame(rows, columns=header)
    n = verdict_counts(table)
    assert f"{len(table)} claims of the five papers" in (ROOT / "README.md").read_text()
    assert (f"{n['holds']} hold, {n['not resolved']} are not resolved and {n['contradicted']} are contradicted"
            in (ROOT / "README.md").read_text())
    assert (f"{len(table)} claims, {n['holds']} hold, {n['not resolved']} not resolved, {n['contradicted']} "
            "contradicted" in (ROOT / "docs/measurements.md").read_text())
    if n["no verdict"]:  # claims whose runs are missing or stale are counted too, not passed over
        assert f"{n['no verdict']} have no verdict until their runs are measured" in (ROOT / "README.md").read_text()
        assert (f"{n['no verdict']} without a verdict until their runs are measured"
                in (ROOT / "docs/measurements.md").read_text())
