"""The claims ledger: each quantitative claim of the seed papers (``claims.yaml``) measured on one preset's runs
and given a verdict by one written rule, so a reader sees at a glance which claims hold on the benchmark.

The claims are data: a method adds its claims to ``claims.yaml`` and no code changes. A measurement is the
difference ``a - b`` paired by seed (:func:`reprokit.runs.stats.paired_difference`), in percent points, with its
95 % t-interval. The verdict rule (:func:`verdict`):

- ``greater`` / ``less`` claims: **holds** when the interval excludes 0 on the claimed side, **contradicted**
  when it excludes 0 on the other side, **not resolved** when it contains 0 (or there is no interval: one seed);
- ``equal`` claims (``a`` within ``margin`` points of ``b``): **holds** when the whole interval lies inside
  (-margin, +margin), **contradicted** when it lies wholly outside [-margin, +margin], **not resolved** otherwise.

A claim whose runs are missing, or stale (run by other code than the current package's, as ``load_runs`` says),
gets no verdict: the ledger says which runs are missing or stale instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import pandas as pd
import yaml

from reprokit.runs.stats import paired_difference
from reprokit.viz.presets import Preset

HOLDS, NOT_RESOLVED, CONTRADICTED = "holds", "not resolved", "contradicted"
VERDICTS = (HOLDS, NOT_RESOLVED, CONTRADICTED)
EXPECTATIONS = ("greater", "less", "equal")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: an experiment's runs (optionally those with given method parameters), read
    through one metric."""

    experiment: str
    metric: str = "miou"
    where: tuple[tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, spec, metric: str) -> "Side":
        if isinstance(spec, str):
            return cls(spec, metric)
        return cls(spec["experiment"], spec.get("metric", metric), tuple(sorted((spec.get("where") or {}).items())))

    def label(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.where)
        metric = "" if self.metric == "miou" else f" {self.metric}"
        return f"{self.experiment}{f' [{where}]' if where else ''}{metric}"


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    claim: str
    where: str
    a: Side
    b: Side
    expect: str
    margin: float | None = None
    paper_difference: dict | None = None
    paper_text: str | None = None


def parse_claims(entries: list[dict]) -> list[Claim]:
    """Claims from the YAML entries; a malformed entry is refused naming its id and what was expected."""
    claims, seen = [], set()
    for i, e in enumerate(entries):
        cid = e.get("id", f"entry {i + 1}")
        missing = [k for k in ("id", "paper", "claim", "where", "a", "b", "expect") if k not in e]
        if missing:
            raise ValueError(f"claims.yaml, {cid}: missing {', '.join(missing)}")
        if e["expect"] not in EXPECTATIONS:
            raise ValueError(f"claims.yaml, {cid}: expect is {e['expect']!r}; expected one of {EXPECTATIONS}")
        if (e["expect"] == "equal") != ("margin" in e):
            raise ValueError(f"claims.yaml, {cid}: a margin is required with expect: equal, and only then")
        if cid in seen:
            raise ValueError(f"claims.yaml: id {cid} appears twice")
        seen.add(cid)
        metric = e.get("metric", "miou")
        claims.append(Claim(cid, e["paper"], e["claim"], e["where"], Side.parse(e["a"], metric),
                            Side.parse(e["b"], metric), e["expect"], e.get("margin"), e.get("paper_difference"),
                            e.get("paper_text")))
    return claims


def load_claims(text: str | None = None) -> list[Claim]:
    """The claims of the packaged ``claims.yaml`` (or of ``text``)."""
    if text is None:
        text = resources.files("reprokit.viz").joinpath("claims.yaml").read_text()
    return parse_claims(yaml.safe_load(text) or [])


def verdict(low: float, high: float, expect: str, margin: float | None = None) -> str:
    """The verdict of an interval [low, high] (percent points) on a claim of kind ``expect`` (the module's rule)."""
    if math.isnan(low) or math.isnan(high):
        return NOT_RESOLVED
    if expect == "equal":
        if -margin < low and high < margin:
            return HOLDS
        return CONTRADICTED if low > margin or high < -margin else NOT_RESOLVED
    sign = 1 if expect == "greater" else -1
    low, high = sorted((sign * low, sign * high))
    return HOLDS if low > 0 else CONTRADICTED if high < 0 else NOT_RESOLVED


def side_runs(runs: pd.DataFrame, side: Side, preset: Preset) -> pd.DataFrame:
    """The runs of ``side`` on ``preset``: its config name and, where given, its method parameters."""
    if not len(runs):
        return runs
    sel = runs[runs["name"] == preset.config(side.experiment)]
    for key, value in side.where:
        column = f"method.{key}"
        sel = sel[sel[column].astype(float) == float(value)] if column in sel else sel.iloc[:0]
    return sel


def side_values(sel: pd.DataFrame, side: Side, preset: Preset) -> pd.Series:
    """The metric of each run of ``sel`` in percent, indexed by seed."""
    if not len(sel):
        return pd.Series([], dtype=float)
    if side.metric == "miou":
        values = sel["miou"].astype(float)
    elif side.metric == "tail_miou":
        values = sel[[f"iou/{c}" for c in preset.tail]].astype(float).mean(axis=1)
    elif side.metric.startswith("accuracy/"):
        from reprokit.runs.results import selection_summary

        values = selection_summary(sel["path"])[f"acc/{side.metric.split('/', 1)[1]}"].astype(float)
    else:
        raise ValueError(f"claims: unknown metric {side.metric!r}; metrics are miou, tail_miou, accuracy/<category>")
    return pd.Series(100 * values.to_numpy(), index=sel["seed"].to_numpy())


def paper_number(claim: Claim, paper: pd.DataFrame) -> str:
    """The paper's difference for the claim, from paper_numbers.csv, or its text where it prints no number."""
    ref = claim.paper_difference
    if not ref:
        return claim.paper_text or "-"
    rows = paper[(paper["source"] == ref["source"]) & (paper["dataset"] == ref["dataset"])]
    if "split" in ref:
        rows = rows[rows["split"] == str(ref["split"])]
    values = {}
    for key in ("a", "b"):
        found = rows[rows["method"] == ref[key]]["miou"]
        if len(found) != 1:
            raise ValueError(f"claims.yaml, {claim.id}: paper_numbers.csv has {len(found)} rows for "
                             f"{ref['source']} / {ref['dataset']} / {ref[key]!r} (split {ref.get('split', 'any')}); "
                             "expected one")
        values[key] = float(found.iloc[0])
    return f"{values['a'] - values['b']:+.2f} ({values['a']:.2f} vs {values['b']:.2f})"


def measure(claim: Claim, runs: pd.DataFrame, preset: Preset) -> dict:
    """One ledger row's measurement: the paired difference and its verdict, or why there is none."""
    sel = {k: side_runs(runs, getattr(claim, k), preset) for k in ("a", "b")}
    missing = [getattr(claim, k).label() for k in ("a", "b") if not len(sel[k])]
    if missing:
        return {"verdict": f"runs missing: {', '.join(missing)}", "seeds": 0, "used": sel}
    stale = [getattr(claim, k).label() for k in ("a", "b") if sel[k]["stale"].any()]
    if stale:
        return {"verdict": f"stale runs: {', '.join(stale)}", "seeds": 0, "used": sel}
    diff = paired_difference(side_values(sel["a"], claim.a, preset), side_values(sel["b"], claim.b, preset))
    if not diff["n"]:
        return {"verdict": "runs missing: no seed has both sides", "seeds": 0, "used": sel}
    return {"verdict": verdict(diff["low"], diff["high"], claim.expect, claim.margin), "seeds": diff["n"],
            "mean": diff["mean"], "low": diff["low"], "high": diff["high"], "used": sel}


def format_measured(m: dict) -> str:
    if "mean" not in m:
        return "-"
    if math.isnan(m["low"]):
        return f"{m['mean']:+.2f} (no interval)"
    return f"{m['mean']:+.2f} [{m['low']:+.2f}, {m['high']:+.2f}]"


def ledger(runs: pd.DataFrame, preset: Preset, claims: list[Claim] | None = None,
           paper: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the ledger table, the run-table rows it used)."""
    from reprokit.viz.tables import paper_numbers

    claims = load_claims() if claims is None else claims
    paper = paper_numbers() if paper is None else paper
    rows, used = [], []
    for claim in claims:
        m = measure(claim, runs, preset)
        used += [m["used"]["a"], m["used"]["b"]]
        expected = {"greater": "a > b", "less": "a < b"}.get(claim.expect, f"a within ±{claim.margin} of b")
        rows.append({"paper": claim.paper, "claim": claim.claim, "where": claim.where,
                     "paper's number": paper_number(claim, paper),
                     "a − b (percent points)": f"{claim.a.label()} − {claim.b.label()}", "expected": expected,
                     "measured [95 % CI]": format_measured(m), "seeds": m["seeds"], "verdict": m["verdict"]})
    used = [u for u in used if len(u)]
    used_runs = pd.concat(used).drop_duplicates("path") if used else runs.iloc[:0]
    return pd.DataFrame(rows), used_runs


def config_names(preset: Preset, claims: list[Claim] | None = None) -> dict[str, str]:
    """{side label: config name} of every side the claims read on ``preset`` (what the artefact needs)."""
    claims = load_claims() if claims is None else claims
    return {side.label(): preset.config(side.experiment) for c in claims for side in (c.a, c.b)}


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims hold, are not resolved, are contradicted, and have no verdict (missing or stale runs)."""
    counts = {v: int((table["verdict"] == v).sum()) for v in VERDICTS}
    counts["no verdict"] = len(table) - sum(counts.values())
    return counts
