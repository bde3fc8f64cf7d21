"""Plain nested-loop references for the fast ops.

Slow on purpose: each output element is written by the loop that defines it, so
a reader can check the fast paths against these line by line.  The tests and the
walkthrough compare the vectorised code with them.  All take NumPy arrays in the
channels-last layout used throughout the library:

    x    (N, H, W, C)        images / feature maps
    w    (F, C, KH, KW)      conv filters, as stored in the state dict
    cols (N*OH*OW, KH*KW*C)  row = (n, oh, ow), column = (i, j, c)
    h    (N, D)              embeddings, for the comparison head
"""
import math

import numpy as np

from .shapes import conv_output_size


def _pad(x, pad):
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def conv2d_ref(x, w, b, stride=1, pad=0):
    """out[n, oh, ow, f] = b[f] + sum_{c,i,j} xpad[n, oh*s+i, ow*s+j, c] * w[f, c, i, j]."""
    N, H, W, C = x.shape
    F, _, KH, KW = w.shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    xp = _pad(x, pad)
    out = np.zeros((N, OH, OW, F), dtype=np.result_type(x, w))
    for n in range(N):
        for f in range(F):
            for oh in range(OH):
                for ow in range(OW):
                    acc = b[f]
                    for c in range(C):
                        for i in range(KH):
                            for j in range(KW):
                                acc += xp[n, oh * stride + i, ow * stride + j, c] * w[f, c, i, j]
                    out[n, oh, ow, f] = acc
    return out


def im2col_ref(x, KH, KW, stride=1, pad=0):
    """cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = xpad[n, oh*s + i, ow*s + j, c]."""
    N, H, W, C = x.shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    xp = _pad(x, pad)
    cols = np.zeros((N * OH * OW, KH * KW * C), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                for i in range(KH):
                    for j in range(KW):
                        for c in range(C):
                            cols[(n * OH + oh) * OW + ow, (i * KW + j) * C + c] = \
                                xp[n, oh * stride + i, ow * stride + j, c]
    return cols


def col2im_ref(cols, x_shape, KH, KW, stride=1, pad=0):
    """The adjoint of :func:`im2col_ref`: every column entry is added back to the
    input pixel it was copied from (pixels read by several windows sum)."""
    N, H, W, C = x_shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    xp = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=cols.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                for i in range(KH):
                    for j in range(KW):
                        for c in range(C):
                            xp[n, oh * stride + i, ow * stride + j, c] += \
                                cols[(n * OH + oh) * OW + ow, (i * KW + j) * C + c]
    return xp[:, pad:pad + H, pad:pad + W, :]


def maxpool_ref(x, pool, stride):
    """out[n, oh, ow, c] = max over the window; also returns the gradient routing:
    ``dx_of(dout)`` sends each dout to the *first* maximum of its window in
    row-major order (ties go to the top-left-most maximum), accumulating where
    windows overlap."""
    N, H, W, C = x.shape
    OH = (H - pool) // stride + 1
    OW = (W - pool) // stride + 1
    out = np.zeros((N, OH, OW, C), dtype=x.dtype)
    where = np.zeros((N, OH, OW, C, 2), dtype=np.int64)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(C):
                    best, bi, bj = None, 0, 0
                    for i in range(pool):
                        for j in range(pool):
                            v = x[n, oh * stride + i, ow * stride + j, c]
                            if best is None or v > best:
                                best, bi, bj = v, i, j
                    out[n, oh, ow, c] = best
                    where[n, oh, ow, c] = (oh * stride + bi, ow * stride + bj)

    def dx_of(dout):
        dx = np.zeros_like(x, dtype=dout.dtype)
        for n in range(N):
            for oh in range(OH):
                for ow in range(OW):
                    for c in range(C):
                        h, w_ = where[n, oh, ow, c]
                        dx[n, h, w_, c] += dout[n, oh, ow, c]
        return dx

    return out, dx_of


def batchnorm_ref(x, gamma, beta, mean=None, var=None, eps=1e-5):
    """out[..., c] = gamma[c] * (x[..., c] - mean[c]) / sqrt(var[c] + eps) + beta[c],
    in float64, over every axis but the last.  With mean and var None they are the
    batch's: the average of the M values of channel c, and the biased variance
    sum (x - mean)^2 / M.  Otherwise both are given (the running statistics)."""
    if (mean is None) != (var is None):
        raise ValueError("batchnorm_ref: give both mean and var, or neither")
    x = np.asarray(x, dtype=np.float64)
    C = x.shape[-1]
    positions = list(np.ndindex(*x.shape[:-1]))
    M = len(positions)
    out = np.zeros(x.shape)
    for c in range(C):
        if mean is None:
            mu = 0.0
            for p in positions:
                mu += x[p + (c,)]
            mu /= M
            v = 0.0
            for p in positions:
                v += (x[p + (c,)] - mu) ** 2
            v /= M
        else:
            mu, v = float(mean[c]), float(var[c])
        inv_std = 1.0 / math.sqrt(v + eps)
        for p in positions:
            out[p + (c,)] = float(gamma[c]) * (x[p + (c,)] - mu) * inv_std + float(beta[c])
    return out


def head_features_ref(h1, h2, features):
    """Row n of the head's input: for each name of ``features`` in order, its
    columns -- "abs" |h1[n,k] - h2[n,k]|, "sq" (h1[n,k] - h2[n,k])^2, "prod"
    h1[n,k] h2[n,k] (k = 0..D-1), "cos" sum_k h1[n,k] h2[n,k] / (|h1[n]| |h2[n]| + 1e-8)
    (the eps of ops.COS_EPS) -- in float64."""
    N, D = h1.shape
    rows = []
    for n in range(N):
        row = []
        for f in features:
            if f == "cos":
                dot = n1 = n2 = 0.0
                for k in range(D):
                    a, b = float(h1[n, k]), float(h2[n, k])
                    dot += a * b
                    n1 += a * a
                    n2 += b * b
                row.append(dot / (math.sqrt(n1) * math.sqrt(n2) + 1e-8))
                continue
            for k in range(D):
                a, b = float(h1[n, k]), float(h2[n, k])
                if f == "abs":
                    row.append(abs(a - b))
                elif f == "sq":
                    row.append((a - b) ** 2)
                elif f == "prod":
                    row.append(a * b)
                else:
                    raise ValueError(f"head_features_ref: unknown feature {f!r}")
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(N, -1)
