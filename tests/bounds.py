"""Rounding-error bounds that the tests' float tolerances come from.

``u`` is the unit roundoff: 2**-24 ~ 6e-8 for float32 (half its machine
epsilon ``np.finfo(np.float32).eps`` = 2**-23), 2**-53 for float64.  A sum of n
terms computed in any order (sequential, pairwise, or a BLAS dot product in
any blocking, with or without FMA) is within ``gamma(n) * sum|terms|`` of the
exact sum, gamma(n) = n u / (1 - n u) (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., sec. 3.1 and eq. 4.4).  Two results of the same
sum in different orders are each that close to the exact sum, so within twice
that of each other.  A float32 result that depends on which BLAS kernel runs
(which depends on the CPU and on the batch's shape) may differ that much
between machines or batchings; a test comparing two such results allows the
bound computed from its own data, never a constant found on one machine.
"""
import numpy as np

from minisiamese import ops
from minisiamese.backend import to_numpy
from minisiamese.im2col import im2col_conv2d_forward

EXP_ULPS = 4        # NumPy's exp is within 4 ulp, i.e. 8 u (its float32 SIMD exp: < 2.6 ulp)


def unit_roundoff(dtype):
    return float(np.finfo(dtype).eps) / 2


def gamma(n, dtype):
    """gamma_n = n u / (1 - n u): the relative error bound of n roundings."""
    nu = n * unit_roundoff(dtype)
    assert nu < 0.5, (n, dtype)
    return nu / (1 - nu)


def assert_within(actual, desired, bound, what="values"):
    """|actual - desired| <= bound elementwise (bound broadcasts); NaN fails."""
    actual, desired = np.asarray(to_numpy(actual), np.float64), np.asarray(to_numpy(desired), np.float64)
    assert actual.shape == desired.shape, f"{what}: shapes {actual.shape} and {desired.shape}"
    bound = np.broadcast_to(np.asarray(bound, np.float64), actual.shape)
    err = np.abs(actual - desired)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, np.nan_to_num(err - bound, nan=np.inf), -np.inf)), err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} differ by more than their rounding bound; "
                             f"worst at {tuple(int(k) for k in i)}: {actual[i]!r} vs {desired[i]!r}, "
                             f"|difference| {err[i]:.3g} > bound {bound[i]:.3g}")


# ----------------------------------------------------------------------------- a whole network
# Forward error analysis of SiameseNet's inference, elementwise and to first
# order in u: each layer carries A, a bound on |value| (the network run on |x|
# with |weights|), and E, a bound on |computed - exact|, where "exact" is the
# same network evaluated without rounding on the same float weights and
# inputs.  A GEMM of K terms adds gamma(K) |W| (A + E); a bias add, BN's
# four elementwise operations or an average add u per operation; ReLU and
# max-pooling pass E on (|max a - max b| <= max |a - b|); the sigmoid scales it
# by 1/4 and adds its own (2 EXP_ULPS + 3) u.  Two inferences of the same images
# that differ only in the order of their sums (the batch's composition) are
# each within E of the exact one, so within 2 E of each other.

def _conv(a, w):
    return im2col_conv2d_forward(a, w)[0]


def _linear(a, e, apply, k, dtype):
    """A and E after a linear map ``apply`` (on |weights|) whose sums have k terms."""
    return apply(a), apply(e) + gamma(k, dtype) * apply(a + e)


def _affine(net, a, e, name, bias_name, p):
    """Bias add (Koch) or inference batch norm (out = gamma (x - mean) inv_std + beta)."""
    u = unit_roundoff(net.dtype)
    if not net.config.batch_norm:
        a = a + p[bias_name]
        return a, e + u * (a + e)
    mean = to_numpy(net.buffers[f"{name}.mean"]).astype(net.dtype)
    var = to_numpy(net.buffers[f"{name}.var"]).astype(net.dtype)
    inv_std = (1 / np.sqrt(var + 1e-5)).astype(net.dtype).astype(np.float64)   # as ops.batchnorm_forward
    s = p[f"{name}.gamma"] * inv_std
    a = s * (a + np.abs(mean.astype(np.float64))) + p[f"{name}.beta"]
    return a, s * e + 4 * u * (a + e)


def _sigmoid(e, dtype):
    return e / 4 + (2 * EXP_ULPS + 3) * unit_roundoff(dtype)    # exp, 1 + e, the division, <= 1


def _tower(net, x, p):
    cfg, dtype = net.config, net.dtype
    u = unit_roundoff(dtype)
    S = cfg.input_size
    a = np.abs(np.asarray(x, dtype=dtype).astype(np.float64)).reshape(len(x), S, S, 1)
    e = np.zeros_like(a)
    for k in range(1, net.n_conv + 1):
        w = p[f"conv{k}.w"]
        a, e = _linear(a, e, lambda v: _conv(v, w), int(np.prod(w.shape[1:])), dtype)
        if k < net.n_conv:
            a, e = (ops.maxpool2d_forward(v, cfg.pool, need_grad=False)[0] for v in (a, e))
        a, e = _affine(net, a, e, f"bn{k}", f"conv{k}.b", p)
    a, e = a.reshape(len(a), -1), e.reshape(len(e), -1)
    a, e = _linear(a, e, lambda v: v @ p["dense.w"], a.shape[1], dtype)
    a, e = _affine(net, a, e, "bn_dense", "dense.b", p)
    if cfg.embedding_activation == "sigmoid":
        a, e = np.ones_like(a), _sigmoid(e, dtype)
    return a, e


def embed_error_bound(net, x):
    """(N, U) bound on |net.embed(x) - exact| for images x (N, 1, S, S), for any
    batching.  The net must compute every conv by im2col (a GEMM): the FFT's
    rounding is not bounded elementwise like this."""
    algos = net.conv_algos or net.config.conv_algo
    assert all(a == "im2col" for a in algos), f"embed_error_bound: conv algorithms {algos}, not im2col"
    p = {k: np.abs(to_numpy(v)).astype(np.float64) for k, v in net.params.items()}
    a, e = _tower(net, x, p)
    if net.config.flip_average:
        a2, e2 = _tower(net, np.asarray(x)[:, :, :, ::-1], p)
        a, e = (a + a2) / 2, (e + e2) / 2
        e = e + unit_roundoff(net.dtype) * (a + e)
    return e


def proba_error_bound(net, x1, x2):
    """(N,) bound on |p - exact| for net.predict_proba(x1, x2), net.logits
    through a sigmoid, or net.score of their embeddings, in any batching (im2col
    convs only; heads "abs", "sq" and "prod")."""
    dtype, u = net.dtype, unit_roundoff(net.dtype)
    h1, h2 = (to_numpy(net.embed(x)).astype(np.float64) for x in (x1, x2))
    e1, e2 = embed_error_bound(net, x1), embed_error_bound(net, x2)
    cols = []
    for f in net.config.head:
        diff = np.abs(h1 - h2) + e1 + e2                         # bounds |h1 - h2|, computed or exact
        if f == "abs":
            cols.append((diff, e1 + e2 + u * diff))
        elif f == "sq":
            cols.append((diff ** 2, 2 * diff * (e1 + e2) + 3 * u * diff ** 2))
        elif f == "prod":
            m1, m2 = np.abs(h1) + e1, np.abs(h2) + e2
            cols.append((m1 * m2, m1 * e2 + m2 * e1 + u * m1 * m2))
        else:
            raise NotImplementedError(f"proba_error_bound: head feature {f!r}")
    a, e = (np.concatenate(c, axis=1) for c in zip(*cols))
    w, b = (np.abs(to_numpy(net.params[k])).astype(np.float64) for k in ("out.w", "out.b"))
    a, e = _linear(a, e, lambda v: v @ w, a.shape[1], dtype)
    a = a + b
    e = e + u * (a + e)
    return _sigmoid(e, dtype)[:, 0]
