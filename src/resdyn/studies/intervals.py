"""Intervals on the claims' numbers, and the three verdicts they give.

A claim's number is a statistic over units of evidence (images or sequences, units of a
network, trained networks). :func:`bootstrap` resamples those units with replacement
(seeded) and recomputes the statistic on every resample, vectorised: the claim hands it one
row per unit of evidence, taken from the study's tables (no task runs again), and a function
of a stack of resampled rows. The interval is the percentile interval of the resamples.

Why percentile and not BCa: the demo judges claims on 2-5 images, where BCa's acceleration
(a jackknife over 2-5 leave-one-out values) and its bias correction (the share of resamples
below the estimate, from the 3-35 distinct resamples such a sample has) are degenerate or
unstable, while the percentile interval is defined for any n ≥ 2 and follows any monotone
transformation of the number. For n this small no bootstrap interval reaches its nominal
coverage (with n = 2 the percentile interval of a mean or median is the range of the two
values): the intervals say how far the number moves with other images of the same kind, not
more. The ends are order statistics of the resamples (the lower one at 2.5 %, the higher at
97.5 %, never interpolated between them). A number over one unit of evidence has no interval
(both ends NaN): its claim is undecided.

A :class:`Test` puts one number with its interval against a threshold fixed before any run,
on the claim's side ("above" or "below"). Its verdict: held (True) when the whole interval
lies strictly on that side, not held (False) when it lies strictly on the other side,
undecided (None) when it straddles or touches the threshold: a number exactly on its
threshold is undecided. A claim of several tests combines them by a stated rule
(:func:`combine`): "all" (every test must hold: held if every test holds, not held if any
test does not, undecided otherwise) or "any" (held if any test holds, not held if none
does and every one is decided, undecided otherwise).

Numbers that have no sampling distribution (the ODE examples' exact dynamics, a quantity the
study measures once by design) carry an ``exact`` interval: the point itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95       # the intervals' coverage
RESAMPLES = 2000   # bootstrap resamples per interval
SEED = 0           # every interval's resamples come from this seed

#: Most resampled rows × entries held at once (the resamples are drawn in chunks).
_CHUNK = 4_000_000

SIDES = ("above", "below")


@dataclass(frozen=True)
class Interval:
    """A number with its 95 % interval.

    Attributes:
        value: the number itself (the statistic on the sample as drawn).
        low, high: the interval's ends (NaN where there is none: one unit of evidence, or
            too many resamples where the statistic is undefined).
        method: "bootstrap" (percentile, over ``n`` units of evidence), "regression" (the
            t interval of a fit over ``n`` points), "fisher" (Fisher's z interval of a
            correlation over ``n`` pairs), "exact" (no sampling: the point) or
            "single" (one unit of evidence by the study's design: the point).
        n: units of evidence (0 for an exact number).
        unit: what they are ("images", "sequences", "units", "networks", "depths").
        undefined: the share of resamples on which the number is undefined (NaN).

    Example:
        >>> Interval(0.62, 0.55, 0.70, "bootstrap", 5, "images").text()
        '0.62 [0.55, 0.7]'
        >>> Interval(0.62, math.nan, math.nan, "bootstrap", 1, "images").text()
        '0.62 [no interval: 1 image]'
    """

    value: float
    low: float
    high: float
    method: str = "bootstrap"
    n: int = 0
    unit: str = "images"
    undefined: float = 0.0

    @classmethod
    def exact(cls, value: float) -> Interval:
        """A number with no sampling distribution: its interval is the point."""
        return cls(float(value), float(value), float(value), "exact", 0, "")

    @classmethod
    def single(cls, value: float, unit: str = "image") -> Interval:
        """A number the study measures on one unit of evidence by its design (e.g. skip
        scaling on the first image): nothing to resample, its interval is the point."""
        return cls(float(value), float(value), float(value), "single", 1, unit)

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self, digits: int = 3) -> str:
        """'value [low, high]' (``digits`` significant digits)."""
        v = _g(self.value, digits)
        if self.method == "exact":
            return f"{v} (exact)"
        if self.method == "single":
            return f"{v} (one {self.unit})"
        if not self.defined:
            if self.method == "fisher":
                return f"{v} [no interval: {self.n} {self.unit}, Fisher's z needs 4]"
            if self.n < 2:
                return f"{v} [no interval: {self.n} {self.unit.rstrip('s')}]"
            return (f"{v} [no interval: undefined on {self.undefined:.0%} of the resamples of "
                    f"{self.n} {self.unit}]")
        return f"{v} [{_g(self.low, digits)}, {_g(self.high, digits)}]"

    def source(self) -> str:
        """How the interval was made, in words."""
        if self.method == "bootstrap":
            return f"{LEVEL:.0%} percentile bootstrap over {self.n} {self.unit}"
        if self.method == "regression":
            return f"{LEVEL:.0%} t interval of the fit over {self.n} {self.unit}"
        if self.method == "fisher":
            return (f"{LEVEL:.0%} Fisher z interval of a correlation over {self.n} {self.unit} "
                    "(Bonferroni over the correlations tested)")
        if self.method == "single":
            return f"one {self.unit}, by the study's design: the point"
        return "exact"


def evidence_unit(ctx) -> str:
    """What a study's inputs are, in the intervals' words: "sequences" for a language model's
    context ((T, d) inputs), else "images"."""
    data = getattr(ctx, "data", None)
    return "sequences" if data is not None and len(data.input_shape) == 2 else "images"


def _g(x: float, digits: int) -> str:
    return "nan" if x is None or math.isnan(x) else f"{x:.{digits}g}"


@dataclass(frozen=True)
class Test:
    """One number of a claim, with its interval, against a fixed threshold.

    ``side``: where the number must lie for the claim, "above" or "below" ``threshold``.

    Example:
        >>> t = Test("median plateau share", Interval(0.6, 0.52, 0.7, n=5), 0.5, "above")
        >>> t.held, t.text()
        (True, 'median plateau share 0.6 [0.52, 0.7] > 0.5')
        >>> Test("x", Interval.exact(0.5), 0.5, "above").held is None  # on its threshold
        True
    """

    __test__ = False  # a statistical test, not one for pytest to collect

    what: str
    interval: Interval
    threshold: float
    side: str

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}; got {self.side!r}")

    @property
    def held(self) -> bool | None:
        """True: the whole interval strictly on the claim's side of the threshold; False:
        strictly on the other side; None (undecided): it straddles or touches it, or there is
        no interval."""
        iv, t = self.interval, self.threshold
        if not iv.defined or math.isnan(t):
            return None
        sign = 1.0 if self.side == "above" else -1.0
        lo, hi = sorted((sign * (iv.low - t), sign * (iv.high - t)))
        if lo > 0:
            return True
        if hi < 0:
            return False
        return None

    @property
    def margin(self) -> float:
        """How far the interval's nearer end lies on the claim's side (negative: across)."""
        iv = self.interval
        if self.side == "above":
            return iv.low - self.threshold
        return self.threshold - iv.high

    def text(self) -> str:
        """'what value [low, high] > threshold'."""
        return (f"{self.what} {self.interval.text()} {'>' if self.side == 'above' else '<'} "
                f"{_g(self.threshold, 3)}")

    def record(self) -> dict:
        """The test as plain data (summary.json)."""
        iv = self.interval
        return {"what": self.what, "value": iv.value, "low": iv.low, "high": iv.high,
                "threshold": self.threshold, "side": self.side, "method": iv.method,
                "n": iv.n, "unit": iv.unit, "verdict": verdict_word(self.held, True)}


RULES = ("all", "any")


def combine(tests: Sequence[Test], rule: str = "all") -> bool | None:
    """The claim's verdict from its tests: True held, False not held, None undecided.

    "all": held if every test holds, not held if any test does not, else undecided.
    "any": held if any test holds, not held if every test does not, else undecided.

    Example:
        >>> yes, no = Interval.exact(1.0), Interval.exact(-1.0)
        >>> maybe = Interval(0.0, -1.0, 1.0, n=3)
        >>> tests = [Test("a", yes, 0, "above"), Test("b", maybe, 0, "above")]
        >>> combine(tests, "all"), combine(tests, "any")
        (None, True)
        >>> combine([Test("a", yes, 0, "above"), Test("c", no, 0, "above")], "all")
        False
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    if not tests:
        raise ValueError("a claim judged by its tests needs at least one")
    verdicts = [t.held for t in tests]
    if rule == "all":
        return False if False in verdicts else True if all(v is True for v in verdicts) else None
    return True if True in verdicts else False if all(v is False for v in verdicts) else None


def deciding(tests: Sequence[Test], held: bool | None) -> Test:
    """The test that decided a claim's verdict ``held``: one with that verdict, the nearest
    to its threshold where several have it."""
    same = [t for t in tests if t.held is held] or list(tests)
    return min(same, key=lambda t: abs(t.margin) if np.isfinite(t.margin) else math.inf)


def verdict_word(held: bool | None, judged: bool) -> str:
    """"yes", "no", "undecided" (judged, the interval straddles) or "not judged"."""
    if held is None:
        return "undecided" if judged else "not judged"
    return "yes" if held else "no"


# ---------------------------------------------------------------- the bootstrap

def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) indices of n units drawn with replacement, seeded."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap(samples, statistic: Callable[[np.ndarray], np.ndarray], *, unit: str = "images",
              resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL,
              ) -> list[Interval]:
    """Percentile bootstrap intervals of one or more statistics over units of evidence.

    Args:
        samples: (n, ...) one row per unit of evidence (e.g. an image's per-unit values).
        statistic: maps a stack of samples (r, n, ...) to (r,) or (r, m): the statistic(s) of
            each, vectorised. It is applied to ``samples`` itself for the values and to the
            resampled stacks for the intervals, so the values are the claim's own numbers.
        unit: what a row is ("images", "sequences", "units"), for the interval's words.
        resamples: the bootstrap's size.
        seed: of its resamples.
        level: its coverage.

    Returns:
        one :class:`Interval` per statistic (m of them; one when it returns (r,)). A resample
        where a statistic is NaN is left out; where more than 1 − ``level`` of them are NaN,
        or with fewer than two units, the interval is NaN at both ends.

    Example:
        >>> x = np.random.default_rng(1).normal(3.0, 1.0, size=200)
        >>> iv, = bootstrap(x, lambda s: s.mean(axis=1))
        >>> round(iv.value, 3), round(iv.low, 2), round(iv.high, 2)
        (2.926, 2.8, 3.05)
    """
    x = np.asarray(samples, dtype=float)
    n = x.shape[0]
    value = np.atleast_1d(np.asarray(statistic(x[None]), dtype=float)[0])
    nan = np.full(value.shape, np.nan)
    low, high, undefined = nan, nan, np.zeros(value.shape)
    if n >= 2:
        idx = resample_indices(n, resamples, seed)
        per = max(1, _CHUNK // max(1, x.size))
        stats = np.concatenate([np.asarray(statistic(x[idx[i:i + per]]), dtype=float)
                                .reshape(len(idx[i:i + per]), -1)
                                for i in range(0, resamples, per)])
        ok = ~np.isnan(stats)  # ±inf is a value (e.g. a ratio over 0), NaN is undefined
        undefined = 1 - ok.mean(axis=0)
        enough = ok.mean(axis=0) >= level
        tail = (1 - level) / 2
        if ok.any():
            with np.errstate(all="ignore"):  # order statistics: never between ±inf and a value
                lo_q = np.nanquantile(stats, tail, axis=0, method="lower")
                hi_q = np.nanquantile(stats, 1 - tail, axis=0, method="higher")
        else:
            lo_q = hi_q = np.full(stats.shape[1], np.nan)
        low, high = np.where(enough, lo_q, np.nan), np.where(enough, hi_q, np.nan)
    return [Interval(float(v), float(lo), float(hi), "bootstrap", n, unit, float(u))
            for v, lo, hi, u in zip(value, low, high, undefined, strict=True)]


def correlation_interval(r: float, n: int, *, tests: int = 1, unit: str = "images",
                         level: float = LEVEL) -> Interval:
    """Fisher's z interval of a Pearson correlation ``r`` over ``n`` pairs: tanh(atanh r ±
    q/√(n − 3)), q the normal quantile of the level, Bonferroni-corrected for ``tests``
    correlations judged together (a claim that any of them holds).

    The percentile bootstrap of r is far too narrow on a handful of pairs (five sequences gave
    |r| = 0.89 "[0.23, 1]" where the adjusted p was 0.55); Fisher's z is the interval of r under
    bivariate normality, and needs n ≥ 4 (NaN ends below).

    Example:
        >>> correlation_interval(0.5, 28).text(4)
        '0.5 [0.156, 0.7358]'
    """
    from scipy.stats import norm

    if n < 4 or not np.isfinite(r):
        return Interval(float(r), math.nan, math.nan, "fisher", n, unit)
    z, half = math.atanh(min(max(r, -1 + 1e-15), 1 - 1e-15)), 1.0 / math.sqrt(n - 3)
    q = float(norm.ppf(1 - (1 - level) / (2 * tests)))
    return Interval(float(r), math.tanh(z - q * half), math.tanh(z + q * half), "fisher", n, unit)


def distance_from(iv: Interval, target: float) -> Interval:
    """The interval of |x − target| given the interval of x (for a claim "x = target", judged
    as |x − target| below a tolerance).

    Example:
        >>> distance_from(Interval(0.63, 0.26, 1.01, "regression", 3, "depths"), 1.0).text()
        '0.37 [0, 0.74]'
    """
    a, b = iv.low - target, iv.high - target
    lo = 0.0 if a <= 0 <= b else min(abs(a), abs(b))
    return Interval(abs(iv.value - target), lo, max(abs(a), abs(b)), iv.method, iv.n, iv.unit,
                    iv.undefined)


def by_unit(table, unit: str, columns: Sequence[str] | str, values: str) -> tuple[np.ndarray, list]:
    """A long table as (units of evidence, columns) rows for :func:`bootstrap`: one row per
    value of ``unit`` (e.g. "image", in sorted order), one column per value of ``columns``
    (in order of appearance), the entries from ``values`` (the mean where a pair repeats; NaN where absent).

    Returns:
        (array (n, m), the column keys).
    """
    import pandas as pd

    t = pd.DataFrame(table)
    wide = t.pivot_table(index=unit, columns=columns, values=values, aggfunc="mean",
                         sort=True, dropna=False)
    keys = list(dict.fromkeys(t[columns].itertuples(index=False, name=None))
                if not isinstance(columns, str) else dict.fromkeys(t[columns]))
    wide = wide.reindex(columns=keys)
    return wide.to_numpy(dtype=float), keys
