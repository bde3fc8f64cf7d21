"""Numeric gradient checking by central differences.

For an op y = f(x) and a random upstream gradient g, the scalar
L(x) = sum(f(x) * g) has dL/dx = backward(g).  Checking against a *random* g
(not all ones) exercises every output's contribution with a different weight,
so a gradient routed to the wrong place cannot cancel out.
"""
import numpy as np

from .backend import get_array_module, to_numpy


def numeric_grad(f, x, h=1e-6):
    """dL/dx of the scalar function ``f()`` of the array ``x`` (changed in place
    and restored), by (f(x + h e_i) - f(x - h e_i)) / 2h for every element i."""
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i].item()
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def rel_error(a, b, floor=1e-12):
    """max |a - b| / (max |a| + max |b|): the worst disagreement relative to the
    size of the gradient as a whole.  (An elementwise ratio would blow up on
    entries that are ~0 in both, where central differences carry only rounding
    noise of order eps * |L| / h.)"""
    a, b = np.asarray(to_numpy(a)), np.asarray(to_numpy(b))
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)) + np.max(np.abs(b)), floor)
    return float(np.max(np.abs(a - b)) / scale)
