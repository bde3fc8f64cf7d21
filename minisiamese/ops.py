"""The layers, each a ``*_forward`` / ``*_backward`` pair.

Conventions (cs231n / llm.c style):

* ``forward(x, ...) -> (out, cache)``; ``backward(dout, cache) -> dx`` or
  ``(dx, dw, db)``.  The cache holds exactly what the backward pass reads; each
  function's docstring lists it.
* Images and feature maps are channels-last, ``(N, H, W, C)``; conv filters are
  stored as ``(F, C, KH, KW)``; dense weights as ``(D_in, D_out)``.
* Every op takes ``xp`` (NumPy or CuPy) from its input and keeps its dtype, so
  float32 training and float64 gradient checks run the same code.
* Bad shapes raise ``ValueError`` naming them.
"""
import numpy as np

from . import convplan
from .backend import get_array_module
from .fftconv import FFTConvCache, conv2d_fft_backward, conv2d_fft_forward
from .im2col import im2col_conv2d_backward, im2col_conv2d_forward
from .parallel import over_batch
from .shapes import check_conv_args, check_pool_args

# ----------------------------------------------------------------------------- conv
def conv2d_forward(x, w, b=None, stride=1, pad=0, algo="im2col"):
    """Convolution (cross-correlation, as every framework computes it).

    x (N, H, W, C), w (F, C, KH, KW), b (F,) or None -> out (N, OH, OW, F) with
    out[n, oh, ow, f] = b[f] + sum_{i, j, c} xpad[n, oh*s+i, ow*s+j, c] w[f, c, i, j].

    The dispatcher over two sibling algorithms that compute the same function:
    ``algo`` "im2col" (:func:`minisiamese.im2col.im2col_conv2d_forward`), "fft"
    (:func:`minisiamese.fftconv.conv2d_fft_forward`, stride 1 only) or "auto"
    (chosen per layer shape by :func:`minisiamese.convplan.resolve`).  The cache
    is the chosen algorithm's; :func:`conv2d_backward` tells them apart.
    ``b=None`` leaves the bias to a later op (the model adds it after pooling,
    with the ReLU: see :func:`bias_relu_forward`).
    """
    xp = get_array_module(x)
    check_conv_args(x.shape, w.shape, None if b is None else b.shape, stride, pad)
    if convplan.resolve(algo, x.shape, w.shape, stride, pad, x.dtype, xp) == "fft":
        return conv2d_fft_forward(x, w, b, stride, pad)
    return im2col_conv2d_forward(x, w, b, stride, pad)


def conv2d_backward(dout, cache, need_dx=True):
    """dout (N, OH, OW, F) -> dx (N, H, W, C) or None, dw (F, C, KH, KW), db (F,) or None,
    by the algorithm that produced ``cache``.  ``need_dx=False`` skips dx (the
    first layer's input is the image)."""
    if isinstance(cache, FFTConvCache):
        return conv2d_fft_backward(dout, cache, need_dx)
    return im2col_conv2d_backward(dout, cache, need_dx)


# ----------------------------------------------------------------------------- max-pool
def maxpool2d_forward(x, pool=2, stride=None, need_grad=True):
    """Max over pool x pool windows moved by ``stride`` (default: ``pool``, i.e.
    non-overlapping).  x (N, H, W, C) -> out (N, OH, OW, C); trailing rows/columns
    that do not fill a window are dropped (Keras 'valid').  ``need_grad=False``
    (inference) computes the maxima alone and returns cache None.

    Loops over the pool*pool offsets of the window, keeping a running maximum and
    the offset ``idx`` (uint8) where it was first reached.  A later offset wins
    only if strictly greater, so **ties route the gradient to the first maximum
    of the window in row-major order** (top-left first), as the loop reference
    does.  cache = (idx (N, OH, OW, C) uint8, x.shape, pool, stride).
    """
    stride = pool if stride is None else stride
    xp = get_array_module(x)
    OH, OW = check_pool_args(x.shape, pool, stride)
    if pool * pool > 256:
        raise ValueError(f"maxpool2d: window {pool}x{pool} has more offsets than a uint8 index holds")
    if xp is not np:                                    # CuPy: kernels/maxpool.cu, same tie rule
        from .gpu import maxpool_forward_gpu
        out, idx = maxpool_forward_gpu(x, pool, stride, OH, OW)
        return out, (idx, x.shape, pool, stride) if need_grad else None
    N = x.shape[0]
    hspan, wspan = stride * (OH - 1) + 1, stride * (OW - 1) + 1
    out = xp.empty((N, OH, OW, x.shape[3]), dtype=x.dtype)               # (N, OH, OW, C)
    idx = xp.zeros(out.shape, dtype=xp.uint8) if need_grad else None

    def run(n0, n1):
        o, k = out[n0:n1], idx[n0:n1]
        o[...] = x[n0:n1, 0:hspan:stride, 0:wspan:stride, :]
        for t in range(1, pool * pool):
            i, j = divmod(t, pool)
            v = x[n0:n1, i:i + hspan:stride, j:j + wspan:stride, :]
            better = v > o
            xp.copyto(k, t, where=better)
            xp.copyto(o, v, where=better)

    def run_2x2(n0, n1):
        # Fast path for the network's 2x2/2 pooling: a tournament of the window's
        # four values a b / c d.  Strict ">" at every match keeps the first
        # maximum in row-major order, the same rule as the loop above.
        a, b, c, d = (x[n0:n1, i:i + hspan:2, j:j + wspan:2, :] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
        right_top, right_bottom = b > a, d > c
        top, bottom = xp.maximum(a, b), xp.maximum(c, d)
        lower = bottom > top
        xp.maximum(top, bottom, out=out[n0:n1])
        k = idx[n0:n1]
        k[...] = xp.where(lower, right_bottom, right_top)
        k += 2 * lower.astype(xp.uint8)

    def run_values(n0, n1):                             # inference: no argmax to keep
        o = out[n0:n1]
        o[...] = x[n0:n1, 0:hspan:stride, 0:wspan:stride, :]
        for t in range(1, pool * pool):
            i, j = divmod(t, pool)
            xp.maximum(o, x[n0:n1, i:i + hspan:stride, j:j + wspan:stride, :], out=o)

    if not need_grad:
        over_batch(run_values, N, x.nbytes, xp)
        return out, None
    over_batch(run_2x2 if pool == 2 and stride == 2 else run, N, x.nbytes, xp)
    return out, (idx, x.shape, pool, stride)


def maxpool2d_backward(dout, cache):
    """dout (N, OH, OW, C) -> dx (N, H, W, C): each dout goes to its window's argmax.

    Non-overlapping windows (stride >= pool), the fast path, write each offset's
    slab once, straight into dx; overlapping windows accumulate, since one pixel
    can be the maximum of several windows.
    """
    idx, x_shape, pool, stride = cache
    xp = get_array_module(dout)
    if xp is not np:                                    # CuPy: a gather kernel, no atomics
        from .gpu import maxpool_backward_gpu
        return maxpool_backward_gpu(dout, idx, x_shape, pool, stride)
    N, OH, OW, _ = dout.shape
    H, W = x_shape[1:3]
    hspan, wspan = stride * (OH - 1) + 1, stride * (OW - 1) + 1
    overlapping = stride < pool
    covered = stride == pool and OH * pool == H and OW * pool == W   # every pixel in one window
    dx = xp.empty(x_shape, dtype=dout.dtype) if covered else xp.zeros(x_shape, dtype=dout.dtype)

    def run(n0, n1):
        d, k, g = dx[n0:n1], idx[n0:n1], dout[n0:n1]
        for t in range(pool * pool):
            i, j = divmod(t, pool)
            target = d[:, i:i + hspan:stride, j:j + wspan:stride, :]
            if overlapping:
                target += g * (k == t)
            else:
                xp.multiply(g, k == t, out=target)

    over_batch(run, N, dx.nbytes, xp)
    return dx


# ----------------------------------------------------------------------------- dense & shape
def dense_forward(x, w, b):
    """x (N, D), w (D, U), b (U,) -> out (N, U) = x w + b.  cache = (x, w)."""
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0] or b.shape != (w.shape[1],):
        raise ValueError(f"dense: x {tuple(x.shape)}, w {tuple(w.shape)}, b {tuple(b.shape)} "
                         "do not fit x (N, D) @ w (D, U) + b (U,)")
    xp = get_array_module(x)
    return xp.matmul(x, w) + b, (x, w)


def dense_backward(dout, cache):
    """dout (N, U) -> dx = dout w^T (N, D), dw = x^T dout (D, U), db = sum_n dout (U,)."""
    x, w = cache
    xp = get_array_module(dout)
    return xp.matmul(dout, w.T), xp.matmul(x.T, dout), dout.sum(axis=0)


def flatten_forward(x):
    """(N, ...) -> (N, prod(...)) in C order (H, W, C for a feature map).  cache = x.shape."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, cache):
    return dout.reshape(cache)


# ----------------------------------------------------------------------------- activations
def relu_forward(x, inplace=False):
    """max(x, 0).  cache = out (its positive entries are where the gradient passes)."""
    xp = get_array_module(x)
    out = xp.maximum(x, 0, out=x if inplace else None)
    return out, out


def relu_backward(dout, cache, inplace=False):
    """dx = dout * [out > 0] (the subgradient at 0 is taken as 0)."""
    xp = get_array_module(dout)
    if xp is not np:
        from .gpu import relu_backward_gpu
        dout, cache = xp.ascontiguousarray(dout), xp.ascontiguousarray(cache)
        return relu_backward_gpu(dout, cache, dout if inplace else xp.empty_like(dout))
    dx = dout if inplace else dout.copy()
    xp.copyto(dx, 0, where=cache <= 0)
    return dx


def bias_relu_forward(x, b):
    """out = max(x + b, 0), b (C,) broadcast over the channel (last) axis; in place.

    The model applies it after max-pooling: adding a per-channel constant and
    taking a window's maximum commute, so conv -> +b -> pool -> ReLU equals
    conv -> pool -> (+b, ReLU) on a map pool^2 times smaller.  cache = out.
    """
    xp = get_array_module(x)
    if b.shape != (x.shape[-1],):
        raise ValueError(f"bias_relu: b {tuple(b.shape)} does not match the {x.shape[-1]} channels of x {tuple(x.shape)}")
    if xp is not np:
        from .gpu import bias_relu_forward_gpu
        out = bias_relu_forward_gpu(xp.ascontiguousarray(x), b)
        return out, out
    x += b
    xp.maximum(x, 0, out=x)
    return x, x


def bias_relu_backward(dout, cache):
    """dx = dout * [out > 0] (in place), db = dx summed over all but the channel axis."""
    dx = relu_backward(dout, cache, inplace=True)
    return dx, dx.reshape(-1, dx.shape[-1]).sum(axis=0)


def sigmoid(z):
    """1 / (1 + e^-z), computed from e^-|z| so no exp overflows for any finite z."""
    xp = get_array_module(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(x):
    """cache = out, since d sigma / dx = sigma (1 - sigma)."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    return dout * cache * (1 - cache)


def dropout_forward(x, rate, train, rng):
    """Inverted dropout: in training each unit is zeroed with probability ``rate``
    and survivors are scaled by 1/(1 - rate), so evaluation is the identity.
    ``rng`` is a ``xp.random.Generator``.  cache = mask (already scaled), or None
    when the op is the identity (eval mode or rate 0)."""
    if not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate!r}")
    if not train or rate == 0:
        return x, None
    keep = rng.random(x.shape, dtype=x.dtype) >= rate
    mask = keep.astype(x.dtype) / x.dtype.type(1 - rate)
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout if cache is None else dout * cache


# ----------------------------------------------------------------------------- the Siamese join
def l1_join_forward(h1, h2):
    """d = |h1 - h2| elementwise (N, D).  cache = sign(h1 - h2), with sign(0) = 0:
    where the two towers agree exactly, neither receives a gradient (the
    subgradient 0 of |u| at u = 0)."""
    if h1.shape != h2.shape:
        raise ValueError(f"l1_join: tower outputs differ in shape, {tuple(h1.shape)} vs {tuple(h2.shape)}")
    xp = get_array_module(h1)
    diff = h1 - h2
    return xp.abs(diff), xp.sign(diff)


def l1_join_backward(dout, cache):
    """dh1 = dout * sign(h1 - h2), dh2 = -dh1."""
    dh1 = dout * cache
    return dh1, -dh1
