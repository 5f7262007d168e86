"""Paired seed-by-seed differences and their t-intervals, checked against hand computations."""
import math

import pandas as pd
import pytest
from scipy import stats as st

from reprokit.runs.stats import format_difference, format_seed_differences, mean_interval, paired_difference


def test_paired_interval_matches_the_hand_computation():
    values = pd.Series([11.0, 12.0, 13.0], index=[0, 1, 2])
    reference = pd.Series([10.0, 10.0, 10.0], index=[0, 1, 2])
    diff = paired_difference(values, reference)  # differences 1, 2, 3: mean 2, sd 1
    half = st.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert diff["mean"] == pytest.approx(2.0) and diff["n"] == 3
    assert diff["half_width"] == pytest.approx(half)
    assert (diff["low"], diff["high"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert list(diff["differences"]) == [1.0, 2.0, 3.0]


def test_seeds_without_a_partner_are_dropped():
    values = pd.Series([0.5, 0.6, 0.7, 0.9], index=[0, 1, 2, 5])
    reference = pd.Series([0.4, 0.4, 0.4, 0.1], index=[2, 1, 0, 7])
    diff = paired_difference(values, reference)
    assert diff["n"] == 3 and list(diff["differences"].index) == [0, 1, 2]
    assert diff["mean"] == pytest.approx(0.2)


def test_repeated_seeds_count_once():
    diff = paired_difference(pd.Series([0.5, 0.7], index=[0, 0]), pd.Series([0.5], index=[0]))
    assert diff["n"] == 1 and diff["mean"] == pytest.approx(0.1)


def test_one_seed_has_no_interval_and_no_seed_no_difference():
    one = paired_difference(pd.Series([0.55], index=[3]), pd.Series([0.50], index=[3]))
    assert one["n"] == 1 and math.isnan(one["low"]) and math.isnan(one["high"])
    assert format_difference(one) == "+5.00 (1)"
    none = paired_difference(pd.Series([0.5], index=[0]), pd.Series([0.4], index=[1]))
    assert none["n"] == 0 and format_difference(none) == "-" and format_seed_differences(none) == "-"


def test_format_in_percent_points():
    diff = {"mean": 0.0421, "half_width": 0.0319, "low": 0.0102, "high": 0.0740, "n": 5}
    assert format_difference(diff) == "+4.21 [+1.02, +7.40] (5)"
    assert format_difference(diff, count=False) == "+4.21 [+1.02, +7.40]"
    d = paired_difference(pd.Series([0.512, 0.43], index=[0, 1]), pd.Series([0.5, 0.464], index=[0, 1]))
    assert format_seed_differences(d) == "s0 +1.20, s1 -3.40"


def test_mean_interval_of_a_sample():
    v = pd.Series([2.0, 4.0, 6.0, 8.0])
    out = mean_interval(v, confidence=0.9)
    assert out["mean"] == 5.0 and out["n"] == 4
    assert out["half_width"] == pytest.approx(st.t.ppf(0.95, 3) * v.std() / 2)
    assert math.isnan(mean_interval(pd.Series([], dtype=float))["mean"])
