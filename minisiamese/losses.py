"""Losses and the weight penalty.  Each returns ``(loss, cache)`` and has a
backward that returns the gradient of that (scalar) loss."""
from .backend import get_array_module
from .ops import sigmoid

# Keras clips probabilities to [eps, 1 - eps] before taking logs.
BCE_EPSILON = 1e-7


def _check_targets(z, y, name):
    if z.shape != y.shape or z.ndim != 1:
        raise ValueError(f"{name}: predictions {tuple(z.shape)} and targets {tuple(y.shape)} "
                         "must both be (N,)")


def bce_with_logits_forward(z, y):
    """Mean binary cross-entropy of sigmoid(z) against y in {0, 1}, fused.

    L = mean_n [ max(z, 0) - z y + log(1 + e^-|z|) ]

    which equals -[y log s + (1 - y) log(1 - s)] with s = sigmoid(z), but never
    forms log(0) or exp(+large): finite and exact for |z| up to 1e4 and beyond.
    cache = (z, y).  Returns the loss as a 0-d array.
    """
    _check_targets(z, y, "bce_with_logits")
    xp = get_array_module(z)
    per = xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
    return per.mean(), (z, y)


def bce_with_logits_backward(cache):
    """dL/dz = (sigmoid(z) - y) / N."""
    z, y = cache
    return (sigmoid(z) - y) / z.shape[0]


def bce_forward(p, y, eps=BCE_EPSILON):
    """Mean BCE on probabilities, as Keras computes it: p clipped to [eps, 1-eps].
    cache = (p, y, eps)."""
    _check_targets(p, y, "bce")
    xp = get_array_module(p)
    pc = xp.clip(p, eps, 1 - eps)
    return -(y * xp.log(pc) + (1 - y) * xp.log(1 - pc)).mean(), (p, y, eps)


def bce_backward(cache):
    """dL/dp = (p - y) / (p (1 - p)) / N inside the clip range and 0 outside it
    (the clip is flat there)."""
    p, y, eps = cache
    xp = get_array_module(p)
    inside = (p >= eps) & (p <= 1 - eps)
    pc = xp.clip(p, eps, 1 - eps)
    return xp.where(inside, (pc - y) / (pc * (1 - pc)), 0) / p.shape[0]


def l2_penalty(w, lam):
    """Keras's kernel_regularizer l2(lam): lam * sum(w^2); its gradient is 2 lam w."""
    xp = get_array_module(w)
    return lam * xp.sum(w * w), 2 * lam * w
