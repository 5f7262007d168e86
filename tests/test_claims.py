"""The claims ledger: the verdict rule on constructed intervals, the parsing of claims.yaml, a ledger from
synthetic runs whose paired differences are known, and the committed ledger equal to one rebuilt from the
committed run records."""
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

from reprokit.runs.results import load_runs
from reprokit.viz import claims, registry
from reprokit.viz.presets import preset
from tests.test_tables import fake_run

ROOT = Path(__file__).resolve().parents[1]
NAN = math.nan


@pytest.mark.parametrize("low, high, expect, margin, verdict", [
    (0.2, 3.0, "greater", None, "holds"),
    (-0.1, 3.0, "greater", None, "not resolved"),
    (-3.0, -0.2, "greater", None, "contradicted"),
    (-3.0, -0.2, "less", None, "holds"),
    (0.2, 3.0, "less", None, "contradicted"),
    (-0.5, 0.5, "less", None, "not resolved"),
    (NAN, NAN, "greater", None, "not resolved"),  # one seed: no interval, nothing excluded
    (-0.4, 0.6, "equal", 1.0, "holds"),
    (-0.4, 1.6, "equal", 1.0, "not resolved"),  # straddles the margin
    (1.2, 2.0, "equal", 1.0, "contradicted"),
    (-3.0, -1.5, "equal", 1.0, "contradicted"),
    (NAN, NAN, "equal", 1.0, "not resolved"),
])
def test_verdict_rule_on_constructed_intervals(low, high, expect, margin, verdict):
    assert claims.verdict(low, high, expect, margin) == verdict


def test_packaged_claims_parse_and_every_paper_number_is_found():
    parsed = claims.load_claims()
    assert len({c.id for c in parsed}) == len(parsed) >= 30
    assert {c.paper for c in parsed} == {"STPG", "CW-BASS", "FARCLUSS", "CoSA", "AGMM-SASS"}
    from reprokit.viz.tables import paper_numbers

    numbers = {c.id: claims.paper_number(c, paper_numbers()) for c in parsed}
    assert numbers["stpg-vs-mean-teacher"] == "+3.04 (75.14 vs 72.10)"  # Table 4, Cityscapes
    assert numbers["stpg-vs-supervised"].startswith("+8.40")  # Table 1 at 1/8 only


@pytest.mark.parametrize("text, message", [
    ("- {id: x, paper: P, claim: c, where: w, a: e1, b: e2, expect: bigger}", "expect is 'bigger'"),
    ("- {id: x, paper: P, claim: c, where: w, a: e1, b: e2, expect: equal}", "a margin is required"),
    ("- {id: x, paper: P, claim: c, a: e1, b: e2, expect: greater}", "x: missing where"),
    ("- {id: x, paper: P, claim: c, where: w, a: e1, b: e2, expect: greater}\n"
     "- {id: x, paper: P, claim: c, where: w, a: e1, b: e2, expect: less}", "id x appears twice"),
])
def test_malformed_claims_are_refused_by_id(text, message):
    with pytest.raises(ValueError, match=message):
        claims.load_claims(text)


CLAIMS = """
- {id: up, paper: P, claim: A beats B, where: T1, a: exp-a, b: exp-b, expect: greater}
- {id: flat, paper: P, claim: N=64 like default, where: F8, a: {experiment: sweep, where: {bank_size: 64}},
   b: exp-b, expect: equal, margin: 1.0}
- {id: gone, paper: P, claim: C beats B, where: T2, a: exp-c, b: exp-b, expect: greater}
"""


def test_ledger_from_synthetic_runs(tmp_path, digits_root):
    """Three seeds of A and B with known per-seed gains: the ledger's mean and interval are the paired t's;
    a swept parameter picks its runs; a claim without runs says which side is missing, no verdict."""
    root = tmp_path / "runs"
    a, b = [0.60, 0.62, 0.65], [0.55, 0.58, 0.59]
    for seed in range(3):
        fake_run(root, f"a{seed}", "digits-exp-a", seed, a[seed])
        fake_run(root, f"b{seed}", "digits-exp-b", seed, b[seed])
    fake_run(root, "s64", "digits-sweep", 0, 0.553, bank_size=64)
    fake_run(root, "s512", "digits-sweep", 0, 0.40, bank_size=512)
    runs = load_runs(root).assign(stale=False)  # records without a code version read as stale; not the point here
    table, used = claims.ledger(runs, preset("digits"), claims.load_claims(CLAIMS))
    d = pd.Series(a) - pd.Series(b)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    row = table.iloc[0]
    assert row["measured [95 % CI]"] == f"{100 * d.mean():+.2f} [{100 * (d.mean() - half):+.2f}, " \
                                        f"{100 * (d.mean() + half):+.2f}]"
    assert row["verdict"] == claims.verdict(100 * (d.mean() - half), 100 * (d.mean() + half), "greater")
    assert row["seeds"] == 3
    flat = table.iloc[1]  # only the bank_size=64 run pairs with seed 0 of B: +0.3, one seed
    assert flat["measured [95 % CI]"] == "+0.30 (no interval)" and flat["verdict"] == "not resolved"
    assert table.iloc[2]["verdict"] == "runs missing: exp-c" and table.iloc[2]["seeds"] == 0
    assert set(used["run_id"]) == {"a0", "a1", "a2", "b0", "b1", "b2", "s64"}
    assert claims.verdict_counts(table)["no verdict"] == 1


def test_stale_runs_get_no_verdict(tmp_path, digits_root):
    root = tmp_path / "runs"
    for seed in range(2):
        fake_run(root, f"a{seed}", "digits-exp-a", seed, 0.6 + seed / 100)
        fake_run(root, f"b{seed}", "digits-exp-b", seed, 0.5)
    runs = load_runs(root).assign(stale=False)
    runs.loc[runs["run_id"] == "b1", "stale"] = True
    table, _ = claims.ledger(runs, preset("digits"), claims.load_claims(CLAIMS)[:1])
    assert table.iloc[0]["verdict"] == "stale runs: exp-b" and table.iloc[0]["measured [95 % CI]"] == "-"


def test_committed_ledger_equals_one_rebuilt_from_the_committed_records(tmp_path):
    """docs/benchmark-tables/claims.md is what `reprokit figures --only claims` writes from docs/runs/benchmark."""
    registry.build("claims", ROOT / "docs" / "runs" / "benchmark", tmp_path, "digits")
    committed = (ROOT / "docs" / "benchmark-tables" / "claims.md").read_text()
    assert (tmp_path / "claims.md").read_text() == committed
    assert "stale runs" not in committed
    # a claim may wait for its runs only where a committed sweep plans them
    planned = {block.get("name") for sweep in (ROOT / "params" / "sweeps").glob("*.yaml")
               for block in yaml.safe_load(sweep.read_text())["blocks"]}
    for missing in re.findall(r"runs missing: ([^|]+?) \|", committed):
        for name in missing.split(", "):
            assert f"digits-{name}" in planned, f"claims.md waits for {name}, which no sweep in params/sweeps runs"
