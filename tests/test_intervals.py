"""The claims' intervals and verdicts: bootstrap coverage, the three verdicts and their rules."""

import math

import numpy as np
import pandas as pd
import pytest

from resdyn.studies.base import Claim
from resdyn.studies.intervals import (
    Interval,
    Test,
    bootstrap,
    by_unit,
    combine,
    distance_from,
    resample_indices,
)


def test_bootstrap_interval_of_a_mean_covers_it_about_95_percent_of_the_time():
    # 400 seeded samples of 40 normal draws: the mean's percentile interval should hold the
    # true mean about 95 % of the time (a bootstrap of n = 40 reaches 93-95 %)
    rng = np.random.default_rng(12)
    draws = rng.normal(2.0, 3.0, size=(400, 40))
    idx = resample_indices(40, 1000, seed=3)
    means = draws[:, idx].mean(axis=2)  # (samples, resamples), all at once
    low, high = np.quantile(means, 0.025, axis=1), np.quantile(means, 0.975, axis=1)
    coverage = float(((low < 2.0) & (2.0 < high)).mean())
    assert 0.91 <= coverage <= 0.98, coverage
    # the helper itself gives the same interval on one of them (order statistics, 2000 draws)
    iv, = bootstrap(draws[0], lambda s: s.mean(axis=1), resamples=1000, seed=3)
    assert iv.value == pytest.approx(draws[0].mean())
    assert iv.low == pytest.approx(low[0], abs=0.02) and iv.high == pytest.approx(high[0], abs=0.02)
    assert (iv.method, iv.n, iv.unit) == ("bootstrap", 40, "images")


def test_bootstrap_is_seeded_and_has_no_interval_on_one_unit():
    x = np.arange(10.0)
    a, = bootstrap(x, lambda s: s.mean(axis=1))
    b, = bootstrap(x, lambda s: s.mean(axis=1))
    assert (a.low, a.high) == (b.low, b.high) and a.low < 4.5 < a.high
    one, = bootstrap(x[:1], lambda s: s.mean(axis=1))
    assert one.value == 0.0 and math.isnan(one.low) and math.isnan(one.high)
    assert Test("mean", one, -1.0, "above").held is None  # no interval: undecided
    # two statistics at once; identical images give the point
    flat = np.tile([[1.0, 3.0]], (4, 1))
    mean, spread = bootstrap(flat, lambda s: np.stack([s.mean(axis=(1, 2)), s.std(axis=(1, 2))],
                                                      axis=1))
    assert (mean.value, mean.low, mean.high) == (2.0, 2.0, 2.0)
    assert (spread.value, spread.low, spread.high) == (1.0, 1.0, 1.0)


def test_mostly_undefined_resamples_give_no_interval_and_infinity_is_a_value():
    def ratio(s):
        with np.errstate(all="ignore"):
            return s.sum(axis=1) / s.sum(axis=1)

    def inverse_min(s):
        with np.errstate(all="ignore"):
            return 1.0 / s.min(axis=1)

    iv, = bootstrap(np.array([0.0, 0.0, 0.0, 1.0]), ratio)  # all zeros (32 % of resamples): 0/0
    assert iv.value == 1.0 and math.isnan(iv.low) and math.isnan(iv.high)
    # 1/min is 1 without the zero (34 % of resamples), inf with it (66 %): both ends are values
    iv, = bootstrap(np.array([0.0] + [1.0] * 7), inverse_min)
    assert (iv.value, iv.low, iv.high) == (np.inf, 1.0, np.inf)


def test_the_three_verdicts_of_a_test_and_a_number_on_its_threshold():
    above = Test("x", Interval(0.7, 0.6, 0.8, n=5), 0.5, "above")
    below = Test("x", Interval(0.3, 0.2, 0.4, n=5), 0.5, "above")
    across = Test("x", Interval(0.55, 0.4, 0.8, n=5), 0.5, "above")
    touching = Test("x", Interval(0.6, 0.5, 0.8, n=5), 0.5, "above")
    assert [t.held for t in (above, below, across, touching)] == [True, False, None, None]
    assert Test("x", Interval(0.3, 0.2, 0.4, n=5), 0.5, "below").held is True
    on = Claim.judged("a number exactly on its threshold", [Test("x", Interval.exact(0.5), 0.5,
                                                                  "above")])
    assert (on.held, on.verdict) == (None, "undecided")
    assert Claim(None, "no data").verdict == "not judged"
    assert Claim(True, "a claim of no numbers").verdict == "yes"
    with pytest.raises(ValueError, match="Claim.judged"):
        Claim(True, "held against its tests", (below,))
    with pytest.raises(ValueError, match="side"):
        Test("x", Interval.exact(1.0), 0.5, "beyond")


def test_rules_combine_parts_and_the_deciding_test():
    yes, no = (Test(w, Interval.exact(v), 0.0, "above") for w, v in (("yes", 1.0), ("no", -1.0)))
    maybe = Test("maybe", Interval(0.0, -1.0, 1.0, n=3), 0.0, "above")
    closer = Test("closer", Interval(0.2, 0.1, 0.3, n=3), 0.0, "above")
    assert [combine(ts, "all") for ts in ([yes, closer], [yes, maybe], [maybe, no])] == [
        True, None, False]
    assert [combine(ts, "any") for ts in ([no, yes], [no, maybe], [no, no])] == [True, None, False]
    c = Claim.judged("", [yes, closer])
    assert c.deciding is closer  # held: the part nearest its threshold
    assert Claim.judged("", [yes, maybe, no]).deciding is no
    assert Claim.judged("", [no, maybe], rule="any").numbers().startswith("any of: no -1 (exact)")
    record = Claim.judged("", [yes, maybe]).record()
    assert (record["verdict"], record["value"], record["low"], record["high"],
            record["threshold"], record["side"]) == ("undecided", 0.0, -1.0, 1.0, 0.0, "above")
    assert [t["verdict"] for t in record["tests"]] == ["yes", "undecided"]


def test_distance_from_a_target():
    d = distance_from(Interval(0.63, 0.26, 1.01, "regression", 3, "depths"), 1.0)
    assert (d.low, d.value) == (0.0, pytest.approx(0.37)) and d.high == pytest.approx(0.74)
    d = distance_from(Interval(1.5, 1.3, 1.7, n=4), 1.0)
    assert (d.low, d.high) == (pytest.approx(0.3), pytest.approx(0.7))
    d = distance_from(Interval(-0.5, -0.7, -0.2, n=4), 0.0)  # a negative r: |r| in [0.2, 0.7]
    assert (d.low, d.value, d.high) == (pytest.approx(0.2), 0.5, pytest.approx(0.7))


def test_by_unit_rows_per_image_columns_in_order():
    t = pd.DataFrame({"image": [5, 5, 2, 2, 2], "unit": ["b", "a", "b", "a", "a"],
                      "v": [1.0, 2.0, 3.0, 4.0, 6.0]})
    x, keys = by_unit(t, "image", "unit", "v")
    assert keys == ["b", "a"]
    np.testing.assert_array_equal(x, [[3.0, 5.0], [1.0, 2.0]])  # images sorted; a repeat: mean


@pytest.mark.parametrize("n, tests", [(5, 1), (12, 4), (40, 3)])
def test_correlation_interval_is_fishers_z_with_bonferroni(n, tests):
    """scipy's pearsonr gives Fisher's z interval; ours at level 1 − 0.05/tests is the same."""
    from scipy.stats import pearsonr

    from resdyn.studies.intervals import correlation_interval

    x = np.random.default_rng(n).normal(size=(n, 2))
    x[:, 1] += 0.5 * x[:, 0]
    res = pearsonr(x[:, 0], x[:, 1])
    want = res.confidence_interval(1 - 0.05 / tests)
    iv = correlation_interval(res.statistic, n, tests=tests)
    assert (iv.low, iv.high) == pytest.approx((want.low, want.high), rel=1e-12, abs=1e-15)
    assert iv.method == "fisher" and iv.n == n


def test_correlation_interval_needs_four_pairs():
    from resdyn.studies.intervals import correlation_interval

    iv = correlation_interval(0.9, 3)
    assert not iv.defined and iv.text() == "0.9 [no interval: 3 images, Fisher's z needs 4]"
    assert correlation_interval(0.9, 4).defined
