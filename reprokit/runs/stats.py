"""Confidence intervals over seeds, so a table says whether a difference between methods is resolved.

With three to five seeds a mean ± std cannot tell a real gain from seed noise. Runs of different methods
with the same seed share the labeled split and the initial weights, so comparing them seed by seed
(a paired t-interval) removes the split-to-split variance that dominates small semi-supervised splits.
"""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats


def mean_interval(values: pd.Series, confidence: float = 0.95) -> dict:
    """Mean and Student-t confidence interval of the mean (n-1 degrees of freedom).

    Returns ``mean``, ``half_width``, ``low``, ``high`` and ``n``; the interval is NaN below two values
    (one seed says nothing about the spread)."""
    v = pd.Series(values, dtype=float).dropna()
    n = len(v)
    mean = v.mean() if n else math.nan
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "half_width": half, "low": mean - half, "high": mean + half, "n": n}


def paired_difference(values: pd.Series, reference: pd.Series, confidence: float = 0.95) -> dict:
    """Mean of ``values - reference`` over the seeds both have, with its paired t-interval.

    Both series are indexed by seed; seeds present in only one are dropped, since an unpaired run would
    bring back the split-to-split variance pairing removes. Several runs of one seed are averaged first so
    each seed counts once. Returns :func:`mean_interval`'s keys plus ``differences`` (per seed)."""
    values = pd.Series(values, dtype=float).groupby(level=0).mean()
    reference = pd.Series(reference, dtype=float).groupby(level=0).mean()
    seeds = values.index.intersection(reference.index).sort_values()
    differences = values.loc[seeds] - reference.loc[seeds]
    return {**mean_interval(differences, confidence), "differences": differences}


def format_difference(diff: dict, count: bool = True) -> str:
    """``+4.21 [+1.02, +7.40] (5)``: a :func:`paired_difference` of fractions (as in eval.json) in percent
    points, with the interval when there is one and the number of paired seeds; ``-`` when none pair."""
    if not diff["n"]:
        return "-"
    text = f"{100 * diff['mean']:+.2f}"
    if not math.isnan(diff["half_width"]):
        text += f" [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}]"
    return f"{text} ({diff['n']})" if count else text


def format_seed_differences(diff: dict) -> str:
    """``s0 +1.20, s1 +3.40``: the per-seed differences of a :func:`paired_difference` in percent points."""
    return ", ".join(f"s{seed} {100 * d:+.2f}" for seed, d in diff["differences"].items()) or "-"
