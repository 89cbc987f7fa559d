"""The statistics of a campaign's holdout: the difference between two groups' means with a
Welch t confidence interval.

Pure and in the core so that it can be checked by hand and reused (the report, and anything
that compares a control group with a treated one later). Floats are fine here: these are
estimates, not money; callers round them to decimals for printing.

Why Welch and not a bootstrap: the report must print the same interval every time it is run
on the same ledger (a bootstrap is random unless seeded, and then depends on the seed and
the order of rows), it needs only each group's count, mean and variance (one pass, no
resampling of millions of users), and a holdout's groups are of very different sizes (10%
against 90%) with different spreads, which is the case Welch's interval is made for (the
pooled Student interval is not). With the hundreds of users a campaign has, the means are
close to normal even when the spend per user is skewed.

The t quantile is computed, not approximated by a formula: the Student t distribution
function through the regularized incomplete beta function (Lentz's continued fraction, as in
Numerical Recipes), inverted by bisection to 1e-12. That keeps scipy out of the dependencies
and is exact enough for any degrees of freedom, fractional ones included (Welch's are).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Interval:
    """`difference` = mean(treatment) - mean(control); `low`/`high` its confidence interval,
    None when either group has fewer than 2 values (no variance to estimate). `df` the
    Welch-Satterthwaite degrees of freedom (None when there is no interval or it has width 0)."""
    difference: float
    low: float | None
    high: float | None
    df: float | None


def mean_and_variance(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample variance (divided by n - 1; 0.0 for a single value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.fsum((v - mean) ** 2 for v in values) / (n - 1)


def welch_interval(treatment: Sequence[float], control: Sequence[float],
                   confidence: float = 0.95) -> Interval:
    """Welch's t interval for mean(treatment) - mean(control). Both groups must be non-empty.

    se = sqrt(s_t^2/n_t + s_c^2/n_c); df = se^4 / ((s_t^2/n_t)^2/(n_t-1) + (s_c^2/n_c)^2/(n_c-1));
    the interval is difference -/+ t(1 - (1 - confidence)/2, df) x se. When both variances
    are 0 the interval is the difference itself."""
    mean_t, var_t = mean_and_variance(treatment)
    mean_c, var_c = mean_and_variance(control)
    difference = mean_t - mean_c
    n_t, n_c = len(treatment), len(control)
    if n_t < 2 or n_c < 2:
        return Interval(difference, None, None, None)
    a, b = var_t / n_t, var_c / n_c
    se2 = a + b
    if se2 == 0.0:
        return Interval(difference, difference, difference, None)
    df = se2 * se2 / (a * a / (n_t - 1) + b * b / (n_c - 1))
    half = t_quantile(1 - (1 - confidence) / 2, df) * math.sqrt(se2)
    return Interval(difference, difference - half, difference + half, df)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (> 0) degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, for 0.5 <= p < 1, by bisection to 1e-12."""
    if not 0.5 <= p < 1 or df <= 0:
        raise ValueError("t_quantile needs 0.5 <= p < 1 and df > 0")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2
    while high - low > 1e-12 * max(1.0, high):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use
    # the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return h
