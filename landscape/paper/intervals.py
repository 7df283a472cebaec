"""Confidence intervals for the numbers a report quotes: one run over time, several seeds, two test accuracies.

Three estimators, each with its own identity and assumptions:

``stationary_bootstrap``
    A statistic of one run's time series (e.g. the median over steps of a probe quantity, or the median of a
    paired log-ratio of two series logged at the same steps). Consecutive steps of one run are dependent, so an
    i.i.d. bootstrap would treat n correlated steps as n independent ones and give too narrow an interval. The
    stationary bootstrap (Politis & Romano 1994) resamples blocks of consecutive steps whose lengths are geometric
    with mean ``block``; each resample starts at a uniform step, continues to the next step (wrapping from the last
    to the first) with probability 1 - 1/block and jumps to a new uniform step otherwise. Rows of 2-D data
    (paired columns, e.g. two series at the same step) are resampled together, so their pairing is kept. The
    interval is estimate +- t x (the standard deviation of the statistic over ``samples`` resamples), on
    n // block - 1 degrees of freedom, with blocks of mean 2 ceil(n ** (1/3)): the percentile interval with blocks
    of ceil(n ** (1/3)) (still available) covers too little on series of tens to hundreds of steps (measured below).

    Assumes the series is stationary and weakly dependent (autocorrelation decays well within a block). It
    describes the variability over steps *within one run*: the run's seed (initialisation, data order) is held
    fixed, so seed-to-seed variance is not included; the method label says so.

``t_interval``
    The mean of independent values, e.g. one statistic per seed, with a Student-t interval on n - 1 degrees of
    freedom. Assumes independence and roughly normal values (exact for normal values; with few seeds it is only
    as good as that assumption).

``binomial_difference``
    The difference of two accuracies measured on n_a and n_b test examples: a normal (Wald) interval with
    se = sqrt(p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b), which treats the two accuracies as independent. When
    both are measured on the *same* test images their errors are positively correlated and the variance of the
    difference is smaller than that, so the interval is conservative (wider than the paired, McNemar-type one).
    When se is 0 (both accuracies 0 or 1) the Agresti-Caffo adjustment (one success and one failure added to
    each) is used instead of a zero-width interval.

Where the intervals do NOT hold:

* Measured coverage of the nominal 95% on AR(1) series with coefficient 0.5 (true median 0): the default
  interval 0.96-0.98 at n = 30, 0.94 at n = 60, 0.90-0.93 at n = 200 (a little short); the percentile interval
  0.78-0.83, 0.87 and 0.89-0.915. Strong dependence (autocorrelation near 1, a slowly drifting series, or a
  trend, which is not stationary at all) defeats both: coefficient 0.9 at n = 200 gives 0.84 (default) and
  0.74 (percentile), and an i.i.d. bootstrap (block 1) 0.40 (see tests/test_intervals.py). A training run's
  measurements drift with training: its within-run interval says how well the run's own measurements pin the
  statistic down, not how another seed would come out.
* Any statistic that is not smooth in the data (extremes such as a max or min over steps) is badly served by any
  bootstrap.
* The t-interval needs independent values; steps of one run are not independent, use the bootstrap for those.
* The Wald interval is poor for accuracies near 0 or 1 on small test sets (it can reach outside [-1, 1]; it is
  clipped there), and it ignores the pairing of a shared test set (conservative, see above).

Reference: D. N. Politis and J. P. Romano (1994), "The Stationary Bootstrap", Journal of the American Statistical
Association 89(428), 1303-1313. A. Agresti and B. Caffo (2000), "Simple and effective confidence intervals for
proportions and differences of proportions result from adding two successes and two failures", The American
Statistician 54(4), 280-288.

Needs numpy and scipy only; never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A statistic and its confidence interval.

    Attributes:
        estimate: The statistic on the data itself.
        lo: Lower end of the interval (nan when it could not be computed).
        hi: Upper end of the interval (nan when it could not be computed).
        method: A short human label: the estimator, what it rests on, its level, and what it leaves out.
        n: The number of points (steps, seeds, or test examples) it rests on.
    """

    estimate: float
    lo: float
    hi: float
    method: str
    n: int

    @property
    def half_width(self) -> float:
        """Half the width of the interval, (hi - lo) / 2."""
        return (self.hi - self.lo) / 2


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def _percent(level: float) -> str:
    return f"{round(level * 100, 6):g}%"


def mean_block_length(n: int) -> int:
    """The default mean block length of the stationary bootstrap: ceil(n ** (1/3)), at least 1.

    Checked in integers, so that the rounding of a float cube root cannot move it across a perfect cube.

    Args:
        n: The length of the series.

    Returns:
        The smallest integer b >= 1 with b ** 3 >= n.
    """
    if n <= 1:
        return 1
    b = max(1, round(n ** (1 / 3)))
    while b**3 < n:
        b += 1
    while b > 1 and (b - 1) ** 3 >= n:
        b -= 1
    return b


def stationary_bootstrap_indices(
    n: int, *, samples: int = BOOTSTRAP_SAMPLES, block: int | None = None, rng: np.random.Generator
) -> np.ndarray:
    """Index matrix of Politis & Romano's stationary bootstrap.

    Each resample starts at a uniform index; at each next position it starts a new block at a uniform index with
    probability 1/block, and otherwise continues with the previous index + 1, wrapping from n - 1 to 0. Block
    lengths are therefore geometric with mean ``block`` and every position of a resample is uniform on 0..n-1.
    With ``block=1`` every position is a new uniform draw: the ordinary i.i.d. bootstrap.

    Args:
        n: The length of the series, at least 1.
        samples: The number of resamples, at least 1.
        block: The mean block length (>= 1); None for ``mean_block_length(n)``.
        rng: The random generator the draws come from.

    Returns:
        An integer array of shape (samples, n); row s indexes the s-th resample.

    Raises:
        ValueError: For n < 1, samples < 1 or block < 1.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    block = mean_block_length(n) if block is None else block
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    if block == 1:  # every position starts a new block: the i.i.d. bootstrap
        return rng.integers(0, n, size=(samples, n))
    # Work on the resamples laid end to end: a block starts at each resample's first position and, after that,
    # at each position with probability 1/block; its positions take start, start + 1, ... (mod n).
    new = rng.random(samples * n) < 1 / block
    new[::n] = True
    began = np.flatnonzero(new)
    starts = rng.integers(0, n, size=began.size)
    lengths = np.diff(began, append=samples * n)
    # start + offset within the block: both below n, so one subtraction of n is the wrap.
    indices = np.repeat(starts - began, lengths) + np.arange(samples * n)
    indices[indices >= n] -= n
    return indices.reshape(samples, n)


def stationary_bootstrap(
    data: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    level: float = LEVEL,
    seed: int = 0,
    note: str = "within run: seed variance not included",
    block: int | None = None,
    kind: str = "t",
) -> Interval:
    """Interval of a statistic of one time series by the stationary bootstrap (Politis & Romano 1994).

    Two intervals from the same resamples:

    * ``kind="t"`` (the default): estimate +- t_{(1+level)/2, df} * s, s the standard deviation of the bootstrap
      statistics, with blocks of mean length ``2 * mean_block_length(n)`` and df = n // block - 1, the number of
      blocks the series holds less one. Measured on AR(1) series (phi = 0.5, true median 0, 400 series each,
      95% nominal): n = 30: 0.96, n = 60: 0.94, n = 200: 0.93; independent steps: 0.955.
    * ``kind="percentile"``: the percentile interval with blocks of mean ``mean_block_length(n)``. Measured on
      the same series: n = 30: 0.78, n = 60: 0.87, n = 200: 0.90-0.915: a percentile interval of a median from a
      few dozen blocks is too narrow, and longer blocks do not mend it (block 10: 0.899 at n = 200). Kept for
      comparison.

    The resamples are drawn from ``numpy.random.default_rng(seed)``, so the same data, statistic and arguments
    give byte-identical intervals. The resamples are held in memory at once: samples * n (* k) floats, 3.2 MB
    for the default B and 200 steps.

    Args:
        data: Shape (n,), or (n, k) for k paired columns; rows are time steps and a row's columns are resampled
            together.
        statistic: Vectorized along axis 0: takes an array of shape (samples, n) (or (samples, n, k)) and returns
            shape (samples,). The estimate is ``statistic(data[None])[0]``.
        samples: The number of bootstrap resamples.
        level: The confidence level.
        seed: Seed of the resampling generator.
        note: What the interval leaves out, appended to the method label.
        block: The mean block length; None for the kind's default. 1 is the i.i.d. bootstrap, which is wrong
            for dependent steps (kept for comparison).
        kind: ``"t"`` or ``"percentile"``.

    Returns:
        The estimate and the interval; lo and hi are nan if any bootstrap statistic is not finite (they are not
        dropped, which would bias the interval).

    Raises:
        ValueError: For data that is not 1-D or 2-D, fewer than 2 steps, a level outside (0, 1), an unknown
            kind, or a statistic that does not return one value per resample.
    """
    _check_level(level)
    if kind not in ("t", "percentile"):
        raise ValueError(f"kind must be 't' or 'percentile', not {kind!r}")
    data = np.asarray(data, dtype=float)
    if data.ndim not in (1, 2):
        raise ValueError(f"data must have shape (n,) or (n, k), got {data.shape}")
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"the stationary bootstrap needs at least 2 steps, got {n}")
    if block is None:
        block = mean_block_length(n) * (2 if kind == "t" else 1)
    estimate = np.asarray(statistic(data[None]), dtype=float)
    if estimate.shape != (1,):
        raise ValueError(f"statistic must return shape (1,) for data[None], got {estimate.shape}")
    indices = stationary_bootstrap_indices(n, samples=samples, block=block, rng=np.random.default_rng(seed))
    # np.take, not data[indices]: the same array, and an order of magnitude faster for rows of 2-D data.
    values = np.asarray(statistic(np.take(data, indices, axis=0)), dtype=float)
    if values.shape != (samples,):
        raise ValueError(f"statistic must return shape ({samples},) for {samples} resamples, got {values.shape}")
    df = max(1, n // block - 1)
    if not np.all(np.isfinite(values)):
        lo = hi = math.nan
    elif kind == "t":
        half = float(stats.t.ppf((1 + level) / 2, df) * np.std(values, ddof=1))
        lo, hi = float(estimate[0]) - half, float(estimate[0]) + half
    else:
        alpha = 1 - level
        lo, hi = (float(q) for q in np.quantile(values, [alpha / 2, 1 - alpha / 2]))
    how = (
        f"estimate +- t({df} df) x bootstrap s.e., {_percent(level)}"
        if kind == "t"
        else f"{_percent(level)} percentile"
    )
    method = f"stationary bootstrap over {n} steps (mean block {block}, B={samples}, {how})" + (
        f"; {note}" if note else ""
    )
    return Interval(float(estimate[0]), lo, hi, method, n)


def t_interval(values: Sequence[float], *, level: float = LEVEL, note: str = "over seeds") -> Interval:
    """Mean and Student-t interval of independent values, e.g. one statistic per seed.

    The interval is mean +- t_{(1+level)/2, n-1} * s / sqrt(n), s the sample standard deviation (ddof 1).

    Args:
        values: Independent values, at least 2.
        level: The confidence level.
        note: What the values range over, for the method label. A note "over <things>" gets the count put in
            ("over seeds" with 3 values reads "t-interval over 3 seeds (2 df, 95%)"); any other note is appended
            after the count ("t-interval over 3 values (2 df, 95%); <note>").

    Returns:
        The mean and its t-interval (nan if any value is not finite).

    Raises:
        ValueError: For fewer than 2 values, values that are not 1-D, or a level outside (0, 1).
    """
    _check_level(level)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    mean = float(np.mean(x))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * float(np.std(x, ddof=1)) / math.sqrt(n)
    suffix = f"({n - 1} df, {_percent(level)})"
    if note.startswith("over ") and note[5:].strip():
        method = f"t-interval over {n} {note[5:].strip()} {suffix}"
    else:
        method = f"t-interval over {n} values {suffix}" + (f"; {note}" if note else "")
    return Interval(mean, mean - half, mean + half, method, n)


def binomial_difference(p_a: float, n_a: int, p_b: float, n_b: int, *, level: float = LEVEL) -> Interval:
    """Difference p_a - p_b of two accuracies, with a normal (Wald) interval that treats them as independent.

    se = sqrt(p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b). On the same test images the two models' errors are
    positively correlated, so the true variance of the difference is smaller and this interval is conservative
    (wider than the paired one). If se is 0 (both accuracies 0 or 1) the interval is the Agresti-Caffo one
    (Agresti & Caffo 2000): one success and one failure are added to each, p~ = (p n + 1) / (n + 2), and the
    interval is p~_a - p~_b +- z se~ with se~ from p~ and n + 2, so it has positive width. The estimate stays
    p_a - p_b. Ends are clipped to [-1, 1].

    Args:
        p_a: Accuracy of A, in [0, 1].
        n_a: Number of test examples A was measured on, at least 1.
        p_b: Accuracy of B, in [0, 1].
        n_b: Number of test examples B was measured on, at least 1.
        level: The confidence level.

    Returns:
        The difference and its interval; n is n_a + n_b, the number of measurements (each image counts twice
        when both are measured on one test set).

    Raises:
        ValueError: For an accuracy outside [0, 1], a count below 1, or a level outside (0, 1).
    """
    _check_level(level)
    for name, p in (("p_a", p_a), ("p_b", p_b)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must lie in [0, 1], got {p}")
    for name, m in (("n_a", n_a), ("n_b", n_b)):
        if m < 1:
            raise ValueError(f"{name} must be at least 1, got {m}")
    z = float(stats.norm.ppf((1 + level) / 2))
    estimate = float(p_a - p_b)
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    label = f"test examples treated as independent: conservative on shared test images, {_percent(level)}"
    if se > 0:
        centre = estimate
        method = f"Wald interval of an accuracy difference over {n_a} and {n_b} {label}"
    else:
        ta, tb = (p_a * n_a + 1) / (n_a + 2), (p_b * n_b + 1) / (n_b + 2)
        centre = ta - tb
        se = math.sqrt(ta * (1 - ta) / (n_a + 2) + tb * (1 - tb) / (n_b + 2))
        method = f"Agresti-Caffo interval (accuracies 0 or 1) of an accuracy difference over {n_a} and {n_b} {label}"
    return Interval(estimate, max(-1.0, centre - z * se), min(1.0, centre + z * se), method, n_a + n_b)
