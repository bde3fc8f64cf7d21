"""How sure a difference is: standard errors, the paired t statistic over View 2's
folds, and a paired bootstrap over test pairs.  NumPy only."""
import math

import numpy as np

# two-sided 5 % critical values of Student's t by degrees of freedom (9: View 2's ten folds)
T_CRITICAL_5PCT = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
                   10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 20: 2.086, 30: 2.042}


def t_critical(df):
    """The two-sided 5 % critical value for ``df`` degrees of freedom (df >= 1): the table's value, or
    the next smaller df's that it holds (a larger, so conservative, value) between its entries."""
    if df < 1:
        raise ValueError(f"t_critical: needs at least 1 degree of freedom, got {df}")
    return T_CRITICAL_5PCT[max(k for k in T_CRITICAL_5PCT if k <= df)]


def sample_sd(values):
    """The sample standard deviation (n - 1); NaN for one value."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std(ddof=1)) if v.size > 1 else float("nan")


def mean_se(values):
    """(mean, standard error of the mean): the sample SD (n - 1) over sqrt(n),
    as LFW asks for its 10 folds.  The SE of one value is NaN."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_se: no values")
    se = sample_sd(v) / math.sqrt(v.size)
    return float(v.mean()), se


def binomial_se(p, n):
    """The standard error of a proportion ``p`` of ``n`` independent trials: sqrt(p (1 - p) / n)."""
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def auc_se(auc, n_pos, n_neg):
    """The standard error of an ROC AUC over ``n_pos`` positive and ``n_neg`` negative scores, by Hanley &
    McNeil (1982): q1 = A / (2 - A), q2 = 2 A^2 / (1 + A),
    SE^2 = (A (1 - A) + (n_pos - 1)(q1 - A^2) + (n_neg - 1)(q2 - A^2)) / (n_pos n_neg)."""
    if not (n_pos and n_neg):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def paired_t(a, b):
    """Paired comparison of two scores measured on the same units (folds):
    {"diff": mean of a - b, "se": its standard error, "t": diff / se,
    "df": n - 1, "better": units where a > b, "n": n}.  t is NaN when every
    difference is the same (se 0) or n < 2."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_t: expected two equal-length score lists, got shapes {a.shape} and {b.shape}")
    diff, se = mean_se(a - b)
    t = diff / se if se > 0 else float("nan")
    return {"diff": diff, "se": se, "t": t, "df": a.size - 1, "better": int(np.sum(a > b)), "n": int(a.size)}


def bootstrap_diff(score_a, score_b, rounds=10000, seed=0, level=0.95):
    """Percentile bootstrap interval for mean(score_a) - mean(score_b), resampling
    the units (test pairs) with replacement and keeping them paired.
    Returns (difference, low, high)."""
    a, b = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"bootstrap_diff: expected two equal-length, non-empty score lists, got {a.shape}, {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    for r in range(0, rounds, 1000):                     # 1000 resamples at a time bounds the memory
        k = min(1000, rounds - r)
        means[r:r + k] = d[rng.integers(d.size, size=(k, d.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(low), float(high)
