"""Calibrated probabilities: Platt scaling of the verifier's logit, fitted on
validation pairs, and the figures that say how well a probability means what
it says (expected calibration error, Brier score, reliability bins).

The network's output is p = sigmoid(z), z = d w + b the logit of the head.
Trained with batch norm, weight decay and a stop rule on validation AUC, p
ranks pairs well but is no probability: bn512w says p(same) ~ 0.36 on true
matches.  Platt scaling keeps the ranking (AUC, one-shot choices) and maps

    q = sigmoid(a z + c),      a > 0,

with (a, c) minimising the cross-entropy on the validation pairs (a temperature
is a = 1/T with c = 0; the offset c is what moves the decision point to where
the validation pairs put it).  Targets are Platt's (1999) smoothed labels,
t = (N+ + 1) / (N+ + 2) for a same-person pair and 1 / (N- + 2) for a
different-person pair, which keep the optimum finite when the validation
scores separate the classes.  The loss is convex in (a, c), so Newton's method
with a step-halving line search finds it in a few steps; the walkthrough
(docs/walkthrough.md, "Calibration") derives the gradient and Hessian and
checks them numerically.

A fitted calibration is the array [a, c] (float64), stored in the model file as
``extra/calibration``; :func:`check_platt` is the one check of that array.
"""
import numpy as np

ECE_BINS = 15          # equal-width bins of p(same) over [0, 1]


def sigmoid(z):
    """Logistic function in float64, stable for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def platt_targets(y):
    """Platt's smoothed targets for labels y (1 same, 0 different)."""
    y = np.asarray(y).reshape(-1)
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    return np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


def logistic_loss(w, X, t):
    """Mean cross-entropy of q = sigmoid(X w) against targets t, for features
    X (n, k) and weights w (k,); its gradient (k,) and Hessian (k, k):

        L = mean[ softplus(s) - t s ],  s = X w
        dL/dw = mean[(q - t) x],  H = mean[q (1 - q) x x^T]
    """
    s = X @ np.asarray(w, dtype=np.float64)                      # (n,)
    q = sigmoid(s)
    loss = float(np.mean(np.logaddexp(0.0, s) - t * s))
    grad = X.T @ (q - t) / len(t)                               # (k,)
    hess = (X * (q * (1 - q))[:, None]).T @ X / len(t)          # (k, k)
    return loss, grad, hess


def platt_features(z):
    """The features of Platt's map, s = a z + c: the columns [z, 1] (n, 2)."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    return np.stack([z, np.ones_like(z)], axis=1)


def platt_loss(ac, z, t):
    """:func:`logistic_loss` of Platt's map q = sigmoid(a z + c) at ``ac`` = (a, c):

        dL/da = mean[(q - t) z],  dL/dc = mean[q - t]
        H = mean[q (1 - q) [[z^2, z], [z, 1]]]
    """
    return logistic_loss(ac, platt_features(z), t)


def fit_logistic(X, y, start, max_steps=100, tol=1e-10):
    """Weights w minimising :func:`logistic_loss` of features X (n, k) against
    Platt's targets for labels y.  Newton's method from ``start``, each step
    halved until the loss does not rise; stops when the gradient's norm is
    below ``tol`` (the loss is convex in w)."""
    t = platt_targets(y)
    w = np.asarray(start, dtype=np.float64)
    loss, grad, hess = logistic_loss(w, X, t)
    for _ in range(max_steps):
        if np.linalg.norm(grad) < tol:
            break
        hess = hess + 1e-12 * np.eye(len(w))      # a constant feature column makes H singular
        step = np.linalg.solve(hess, grad)
        for _ in range(60):
            new = w - step
            new_loss, new_grad, new_hess = logistic_loss(new, X, t)
            if new_loss <= loss + 1e-15:
                break
            step = step / 2
        else:
            break                                   # no step lowers the loss: at the optimum to rounding
        w, loss, grad, hess = new, new_loss, new_grad, new_hess
    return w


def fit_platt(z, y, max_steps=100, tol=1e-10):
    """[a, c] minimising :func:`platt_loss` on logits z and labels y (both
    classes needed), by :func:`fit_logistic` from the identity (a, c) = (1, 0).
    A ValueError for data it cannot fit."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    y = np.asarray(y).reshape(-1)
    if z.shape != y.shape or not np.all(np.isfinite(z)):
        raise ValueError(f"fit_platt: needs as many finite logits as labels, got {z.size} logits and {y.size} labels")
    if not (np.any(y == 1) and np.any(y == 0)):
        raise ValueError("fit_platt: needs same-person and different-person pairs")
    ac = fit_logistic(platt_features(z), y, [1.0, 0.0], max_steps, tol)
    if ac[0] <= 0:                                  # the logits rank different people higher: keep the model's order
        raise ValueError(f"fit_platt: the fitted slope {ac[0]:.3g} is not positive (the scores are inverted or "
                         "carry no information)")
    return ac


def apply_platt(z, ac):
    """Calibrated probabilities sigmoid(a z + c) (float64); ``ac`` None: sigmoid(z)."""
    z = np.asarray(z, dtype=np.float64)
    return sigmoid(z if ac is None else ac[0] * z + ac[1])


def map_threshold(threshold, ac):
    """The probability threshold on calibrated scores that makes the same
    decisions as ``threshold`` on the raw sigmoid (calibration is monotone)."""
    t = float(threshold)
    if ac is None or not 0 < t < 1:        # at or beyond 0 or 1 (best_threshold can put it there) every pair is
        return t                           # decided alike, as it stays on calibrated scores
    return float(apply_platt(np.log(t) - np.log1p(-t), ac))


def check_platt(value, source):
    """A stored calibration as [a, c] floats (a > 0, both finite), else a
    ValueError naming ``source``."""
    v = np.asarray(value)
    if v.shape != (2,) or v.dtype.kind != "f" or not np.all(np.isfinite(v)) or not v[0] > 0:
        raise ValueError(f"{source}: its calibration must be two finite numbers [a, c] with a > 0, "
                         f"got {str(v.tolist())[:80]}")
    return v.astype(np.float64)


def brier(y, p):
    """Mean squared difference between p(same) and the label."""
    y, p = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(p, dtype=np.float64).reshape(-1)
    return float(np.mean((p - y) ** 2))


def reliability(y, p, bins=ECE_BINS):
    """Per equal-width bin of p over [0, 1] (the last bin closed): (count,
    mean p, fraction of same-person pairs), as three (bins,) arrays; empty
    bins have NaN means."""
    y, p = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(p, dtype=np.float64).reshape(-1)
    k = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(k, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(k, weights=p, minlength=bins) / count
        freq = np.bincount(k, weights=y, minlength=bins) / count
    return count, mean_p, freq


def ece(y, p, bins=ECE_BINS):
    """Expected calibration error of p(same): sum over the bins of
    (pairs in the bin / all pairs) * |mean p - fraction same|."""
    count, mean_p, freq = reliability(y, p, bins)
    used = count > 0
    return float(np.sum(count[used] / count.sum() * np.abs(mean_p[used] - freq[used])))


def ece_floor(p, n=None, draws=1000, seed=0):
    """What ECE a *perfectly calibrated* model would show on a finite sample: labels drawn y ~ Bernoulli(p) for
    the probabilities ``p`` (resampled with replacement to ``n`` pairs when given), ``draws`` times; returns the
    mean and the 5th and 95th percentiles of their ECE.  Binning a finite sample makes ECE positive even then
    (about 0.037 for 1,000 pairs of bn512w's p), so an observed ECE near this floor is as calibrated as the
    sample can tell."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    values = []
    for _ in range(draws):
        q = p if n is None else rng.choice(p, size=n)
        values.append(ece((rng.random(q.size) < q).astype(np.float64), q))
    lo, hi = np.percentile(values, [5, 95])
    return float(np.mean(values)), float(lo), float(hi)


def summary(y, p):
    """The calibration figures of probabilities p on labels y."""
    return {"ece": ece(y, p), "brier": brier(y, p)}
