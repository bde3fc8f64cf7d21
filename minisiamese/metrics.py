"""Verification metrics, computed exactly (no sampling, no interpolation)."""
import numpy as np


def _check(y, p):
    y, p = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"metrics: {y.size} labels but {p.size} scores")
    return y, p


def confusion(y, p, threshold=0.5):
    """(tp, fp, tn, fn) predicting 'same' when p >= threshold."""
    y, p = _check(y, p)
    pred = p >= threshold
    pos = y == 1
    return (int(np.sum(pred & pos)), int(np.sum(pred & ~pos)), int(np.sum(~pred & ~pos)), int(np.sum(~pred & pos)))


def binary_metrics(y, p, threshold=0.5):
    """accuracy, precision, recall at ``threshold`` (precision is 0 when nothing is predicted positive)."""
    tp, fp, tn, fn = confusion(y, p, threshold)
    n = tp + fp + tn + fn
    return {"accuracy": (tp + tn) / n if n else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "threshold": float(threshold)}


def roc_auc(y, p):
    """Area under the ROC curve = P(score of a random positive > score of a random
    negative) + 0.5 P(tie): the Mann-Whitney statistic from midranks."""
    y, p = _check(y, p)
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc: needs at least one positive and one negative")
    order = np.argsort(p, kind="mergesort")
    sp = p[order]
    ranks = np.empty(len(p))
    i = 0
    while i < len(sp):                                  # midranks for tied scores
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(y, p):
    """(fpr, tpr, thresholds) at every distinct score, from (0, 0) to (1, 1)."""
    y, p = _check(y, p)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]  # last index of each distinct score
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0, tps / max(1, ys.sum())]
    fpr = np.r_[0, fps / max(1, len(ys) - ys.sum())]
    return fpr, tpr, np.r_[np.inf, ps[last]]


def best_threshold(y, p):
    """The threshold with the highest accuracy on (y, p) (midpoints between
    distinct scores; ties go to the one closest to 0.5)."""
    y, p = _check(y, p)
    s = np.unique(p)
    candidates = np.r_[0.5, (s[:-1] + s[1:]) / 2, s[0] - 1e-6, s[-1] + 1e-6]
    accs = np.array([np.mean((p >= t) == (y == 1)) for t in candidates])
    best = np.flatnonzero(accs == accs.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def is_constant(p, tol=1e-6):
    """True when the scores hardly vary: a collapsed model."""
    p = np.asarray(p, dtype=np.float64)
    return bool(p.size and (p.max() - p.min()) <= tol)
