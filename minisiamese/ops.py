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

from .backend import get_array_module
from .errors import require_number
from .fftconv import FFTConvCache, conv2d_fft_backward, conv2d_fft_forward, conv2d_fft_pool_forward
from .im2col import im2col_conv2d_backward, im2col_conv2d_forward
from .parallel import over_batch
from .shapes import check_conv_args, check_pool_args

CONV_ALGOS = ("im2col", "fft")      # what conv2d_forward runs ("auto" is convplan's, resolved before)


# ----------------------------------------------------------------------------- conv
def conv2d_forward(x, w, b=None, stride=1, pad=0, algo="im2col"):
    """Convolution (cross-correlation, as every framework computes it).

    x (N, H, W, C), w (F, C, KH, KW), b (F,) or None -> out (N, OH, OW, F) with
    out[n, oh, ow, f] = b[f] + sum_{i, j, c} xpad[n, oh*s+i, ow*s+j, c] w[f, c, i, j].

    The dispatcher over two sibling algorithms that compute the same function:
    ``algo`` "im2col" (:func:`minisiamese.im2col.im2col_conv2d_forward`) or "fft"
    (:func:`minisiamese.fftconv.conv2d_fft_forward`, stride 1 only).  It takes
    a concrete algorithm only: a ``"auto"`` setting is resolved beforehand by
    :func:`minisiamese.convplan.resolve` (the model does so once, in
    ``SiameseNet.conv_plan``).  The cache is the chosen algorithm's;
    :func:`conv2d_backward` tells them apart.  ``b=None`` leaves the bias to a
    later op (the model adds it after pooling, with the ReLU: see
    :func:`conv_block_forward`).
    """
    check_conv_args(x.shape, w.shape, None if b is None else b.shape, stride, pad)
    _check_concrete_algo(algo, stride)
    if algo == "fft":
        return conv2d_fft_forward(x, w, b, stride, pad)
    return im2col_conv2d_forward(x, w, b, stride, pad)


def _check_concrete_algo(algo, stride):
    """A ValueError naming ``algo`` unless it is "im2col", or "fft" at stride 1."""
    if algo == "auto":
        raise ValueError("conv: algorithm 'auto' must be resolved before the op runs; pass the "
                         "'im2col' or 'fft' that minisiamese.convplan.resolve chooses")
    if algo not in CONV_ALGOS:
        raise ValueError(f"conv: unknown convolution algorithm {algo!r}; ops.conv2d_forward takes one of "
                         f"{list(CONV_ALGOS)}")
    if algo == "fft" and stride != 1:
        raise ValueError(f"conv: algorithm 'fft' needs stride 1, got stride {stride}; use 'im2col' for a strided layer")


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
    """x (N, D), w (D, U), b (U,) or None -> out (N, U) = x w + b.  ``b=None``:
    no bias (batch norm follows and its beta plays that role).
    cache = (x, w, has_bias)."""
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0] or (b is not None and b.shape != (w.shape[1],)):
        raise ValueError(f"dense: x {tuple(x.shape)}, w {tuple(w.shape)}, b {None if b is None else tuple(b.shape)} "
                         "do not fit x (N, D) @ w (D, U) + b (U,)")
    xp = get_array_module(x)
    out = xp.matmul(x, w)
    if b is not None:
        out += b
    return out, (x, w, b is not None)


def dense_backward(dout, cache):
    """dout (N, U) -> dx = dout w^T (N, D), dw = x^T dout (D, U), db = sum_n dout (U,)
    (None without a bias)."""
    x, w, has_bias = cache
    xp = get_array_module(dout)
    return xp.matmul(dout, w.T), xp.matmul(x.T, dout), dout.sum(axis=0) if has_bias else None


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


def activation_forward(x, act):
    """The tower code's activation ``act`` (a ModelConfig's ``embedding_activation``): "sigmoid", "relu",
    or "none".  Returns (out, cache); cache None without an activation."""
    if act == "sigmoid":
        return sigmoid_forward(x)
    if act == "relu":
        return relu_forward(x)
    return x, None


def activation_backward(dout, cache, act):
    """dx of :func:`activation_forward` with the same ``act``."""
    if act == "sigmoid":
        return sigmoid_backward(dout, cache)
    if act == "relu":
        return relu_backward(dout, cache)
    return dout


def dropout_forward(x, rate, train, rng):
    """Inverted dropout: in training each unit is zeroed with probability ``rate``
    and survivors are scaled by 1/(1 - rate), so evaluation is the identity.
    ``rng`` is a ``xp.random.Generator``.  cache = mask (already scaled), or None
    when the op is the identity (eval mode or rate 0)."""
    require_number("dropout: rate", rate, 0, 1, hi_open=True)
    if not train or rate == 0:
        return x, None
    keep = rng.random(x.shape, dtype=x.dtype) >= rate
    mask = keep.astype(x.dtype) / x.dtype.type(1 - rate)
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout if cache is None else dout * cache


# ----------------------------------------------------------------------------- batch normalisation
def _check_bn_args(x, gamma, beta, running):
    """C = x.shape[-1]; gamma, beta, running["mean"], running["var"] must all be (C,)."""
    if x.ndim < 2:
        raise ValueError(f"batchnorm: x {tuple(x.shape)} must be (N, ..., C), at least 2-D")
    C = x.shape[-1]
    if not isinstance(running, dict) or not {"mean", "var"} <= set(running):
        raise ValueError(f"batchnorm: running must be a dict with keys 'mean' and 'var', got {running!r:.80}")
    for name, a in (("gamma", gamma), ("beta", beta), ("running['mean']", running["mean"]),
                    ("running['var']", running["var"])):
        if tuple(a.shape) != (C,):
            raise ValueError(f"batchnorm: {name} {tuple(a.shape)} does not match the {C} channels of x {tuple(x.shape)}")
    return C


def batchnorm_forward(x, gamma, beta, running, train, momentum=0.9, eps=1e-5):
    """Batch normalisation over every axis but the last: per channel for a conv
    map x (N, H, W, C), per feature for a dense output x (N, D).

    out = gamma * xhat + beta, xhat = (x - mean) / sqrt(var + eps), gamma, beta (C,).
    ``running`` = {"mean": (C,), "var": (C,)}, arrays on x's backend.

    * ``train=True``: mean and var are the batch's, over the M = x.size / C
      values of each channel (var the biased one, sum (x - mean)^2 / M), and
      ``running`` is updated **in place**:
      running["mean"] <- momentum * running["mean"] + (1 - momentum) * mean,
      running["var"]  <- momentum * running["var"]  + (1 - momentum) * var * M / (M - 1)
      (the unbiased variance).  Needs M >= 2.
    * ``train=False``: mean, var = running["mean"], running["var"]; ``running``
      is left untouched, and out is an affine function of x.

    Keeps x's dtype.  cache = (xhat (x.shape), gamma (C,), inv_std (C,) =
    1 / sqrt(var + eps) in x's dtype, train).
    """
    C = _check_bn_args(x, gamma, beta, running)
    xp = get_array_module(x)
    axes = tuple(range(x.ndim - 1))
    if train:
        M = x.size // C
        if M < 2:
            raise ValueError(f"batchnorm: training needs at least 2 values per channel to estimate a variance, "
                             f"x {tuple(x.shape)} has {M}")
        mean = x.mean(axis=axes)                                          # (C,)
        xc = x - mean                                                     # (N, ..., C)
        var = (xc * xc).mean(axis=axes)                                   # (C,) biased
        for key, batch in (("mean", mean), ("var", var * (M / (M - 1)))):
            r = running[key]
            r[...] = momentum * r + (1 - momentum) * batch
    else:
        mean = running["mean"].astype(x.dtype, copy=False)
        var = running["var"].astype(x.dtype, copy=False)
        xc = x - mean                                                     # (N, ..., C)
    inv_std = (1 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)      # (C,)
    xhat = xc * inv_std                                                   # (N, ..., C)
    out = (gamma * xhat + beta).astype(x.dtype, copy=False)
    return out, (xhat, gamma, inv_std, train)


def batchnorm_backward(dout, cache):
    """dout (N, ..., C) -> dx (N, ..., C), dgamma (C,), dbeta (C,).

    dgamma = sum(dout * xhat), dbeta = sum(dout), dxhat = dout * gamma (sums
    over all axes but the last).  Training mode differentiates through the batch
    mean and variance too (M values per channel):
        dx = inv_std / M * (M dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),
    where sum(dxhat) = gamma dbeta and sum(dxhat * xhat) = gamma dgamma.
    Inference mode's statistics are constants: dx = dout * gamma * inv_std.
    """
    xhat, gamma, inv_std, train = cache
    if dout.shape != xhat.shape:
        raise ValueError(f"batchnorm: dout {tuple(dout.shape)} does not match the forward output {tuple(xhat.shape)}")
    C = dout.shape[-1]
    dbeta = dout.reshape(-1, C).sum(axis=0)                               # (C,)
    dgamma = (dout * xhat).reshape(-1, C).sum(axis=0)                     # (C,)
    if not train:
        return dout * (gamma * inv_std), dgamma, dbeta
    M = dout.size // C
    dxhat = dout * gamma                                                  # (N, ..., C)
    dx = (inv_std / M) * (M * dxhat - gamma * dbeta - xhat * (gamma * dgamma))
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------- the conv block
def conv_block_forward(x, w, b, bn, algo, pool, train, need_grad=True, stride=1, pad=0, momentum=0.9, eps=1e-5):
    """One conv layer of the tower: conv (no bias) -> max-pool -> bias + ReLU, or
    -> batch norm + ReLU (cs231n's ``conv_relu_pool_forward``, in the model's order).

    x (N, H, W, C), w (F, C, KH, KW) -> out (N, OH // pool, OW // pool, F), or
    (N, OH, OW, F) when ``pool`` is None (no pooling: the tower's last conv).
    Exactly one of

    * ``b`` (F,): out = max(pool(conv(x, w)) + b, 0) (:func:`bias_relu_forward`);
    * ``bn`` = {"gamma": (F,), "beta": (F,), "running": {"mean": (F,), "var": (F,)}}:
      out = max(BN(pool(conv(x, w))), 0) (:func:`batchnorm_forward` with
      ``train``, ``momentum``, ``eps``; in training ``bn["running"]`` is updated
      in place).

    Pooling comes before the bias (or BN) and the ReLU: adding a per-channel
    constant and max(., 0) both commute with a window's maximum, so this is
    conv + b -> ReLU -> pool computed on a map pool^2 times smaller; with batch
    norm it is a BN layer of its own design, normalising the pooled map.
    ``pool`` x ``pool`` windows move by ``pool``.

    ``algo`` is a concrete algorithm, "im2col" or "fft" (see
    :func:`conv2d_forward`).  ``need_grad=False`` (inference) skips what only
    the backward pass reads and returns cache None; there, with ``algo``
    "fft", a pool and NumPy arrays, the convolution and the pooling run fused
    (:func:`minisiamese.fftconv.conv2d_fft_pool_forward`: each piece of the
    inverse transform is pooled while in cache), the same numbers as the two
    ops in turn.  This is the fused inference path's one home.

    cache = (c_conv, c_pool, c_bn, out), or None with ``need_grad=False``:
      c_conv  :func:`conv2d_forward`'s cache (the algorithm's: :func:`conv2d_backward` tells them apart),
      c_pool  :func:`maxpool2d_forward`'s cache, None without a pool,
      c_bn    :func:`batchnorm_forward`'s cache, None for the bias variant,
      out     the block's output, the ReLU's cache (its positive entries pass the gradient).
    """
    if (b is None) == (bn is None):
        raise ValueError("conv block: give exactly one of b (bias + ReLU) and bn (batch norm + ReLU), got "
                         f"{'both' if b is not None else 'neither'}")
    _check_concrete_algo(algo, stride)
    xp = get_array_module(x)
    c_conv = c_pool = c_bn = None
    if not need_grad and algo == "fft" and pool is not None and xp is np:
        h = conv2d_fft_pool_forward(x, w, pool, pad)                       # (N, OH/pool, OW/pool, F)
    else:
        h, c_conv = conv2d_forward(x, w, None, stride, pad, algo)          # (N, OH, OW, F), no bias yet
        if pool is not None:
            h, c_pool = maxpool2d_forward(h, pool, need_grad=need_grad)    # (N, OH/pool, OW/pool, F)
    if bn is None:
        out, _ = bias_relu_forward(h, b)
    else:
        h, c_bn = batchnorm_forward(h, bn["gamma"], bn["beta"], bn["running"], train, momentum, eps)
        out, _ = relu_forward(h, inplace=True)
    return out, (c_conv, c_pool, c_bn, out) if need_grad else None


def conv_block_backward(dout, cache, need_dx=True):
    """dout (the block's output shape) -> dx (N, H, W, C) or None, dw (F, C, KH, KW),
    and a dict of the other gradients: {"b": (F,)} for the bias variant,
    {"gamma": (F,), "beta": (F,)} for batch norm.  Through the ReLU (``dout`` is
    overwritten), the bias or batch norm, the pool's argmax, then the conv;
    ``need_dx=False`` skips dx (the first layer's input is the image)."""
    if cache is None:
        raise ValueError("conv block: no cache; a forward with need_grad=False (inference) has no backward pass")
    c_conv, c_pool, c_bn, out = cache
    if c_bn is None:
        d, db = bias_relu_backward(dout, out)
        grads = {"b": db}
    else:
        d = relu_backward(dout, out, inplace=True)
        d, dgamma, dbeta = batchnorm_backward(d, c_bn)
        grads = {"gamma": dgamma, "beta": dbeta}
    if c_pool is not None:
        d = maxpool2d_backward(d, c_pool)
    dx, dw, _ = conv2d_backward(d, c_conv, need_dx)
    return dx, dw, grads


# ----------------------------------------------------------------------------- the Siamese join
def _abs_diff_forward(h1, h2):
    """|h1 - h2| and its cache sign(h1 - h2), with sign(0) = 0 (shared by
    :func:`l1_join_forward` and the "abs" feature of :func:`head_features_forward`)."""
    xp = get_array_module(h1)
    diff = h1 - h2
    return xp.abs(diff), xp.sign(diff)


def _abs_diff_backward(dout, sign):
    dh1 = dout * sign
    return dh1, -dh1


def l1_join_forward(h1, h2):
    """d = |h1 - h2| elementwise (N, D).  cache = sign(h1 - h2), with sign(0) = 0:
    where the two towers agree exactly, neither receives a gradient (the
    subgradient 0 of |u| at u = 0)."""
    if h1.shape != h2.shape:
        raise ValueError(f"l1_join: tower outputs differ in shape, {tuple(h1.shape)} vs {tuple(h2.shape)}")
    return _abs_diff_forward(h1, h2)


def l1_join_backward(dout, cache):
    """dh1 = dout * sign(h1 - h2), dh2 = -dh1."""
    return _abs_diff_backward(dout, cache)


HEAD_FEATURES = ("abs", "sq", "prod", "cos")
COS_EPS = 1e-8      # cos = h1.h2 / (|h1| |h2| + COS_EPS): 0, not NaN, when a norm is 0


def _check_features(features):
    if isinstance(features, str) or not isinstance(features, (tuple, list)):
        raise ValueError(f"head features: expected a tuple of names from {HEAD_FEATURES}, got {features!r}")
    if not features:
        raise ValueError(f"head features: the tuple is empty; name at least one of {HEAD_FEATURES}")
    unknown = [f for f in features if f not in HEAD_FEATURES]
    if unknown:
        raise ValueError(f"head features: unknown {unknown}; known: {HEAD_FEATURES}")
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:
        raise ValueError(f"head features: repeated {repeated} in {tuple(features)}")


def head_width(features, D):
    """Columns of :func:`head_features_forward`'s output for embeddings of width D:
    D for each of "abs", "sq", "prod", 1 for "cos"."""
    _check_features(features)
    return sum(1 if f == "cos" else D for f in features)


def head_features_forward(h1, h2, features):
    """The comparison head's input from two embeddings h1, h2 (N, D): the columns
    of each named feature, concatenated in the order of ``features``:

      "abs"   |h1 - h2|                  (N, D)  subgradient sign(0) = 0, as l1_join
      "sq"    (h1 - h2)^2                (N, D)
      "prod"  h1 * h2                    (N, D)
      "cos"   h1.h2 / (|h1| |h2| + eps)  (N, 1)  eps = COS_EPS, so a zero embedding
              gives cos 0; its gradient takes d|h|/dh = h/|h| as 0 there.

    d (N, head_width(features, D)).  cache = (features, (N, D), parts), parts a
    tuple with one entry per feature, in order: "abs" sign(h1 - h2) (N, D); "sq"
    h1 - h2 (N, D); "prod" (h1, h2); "cos" (h1, h2, n1 (N, 1), n2 (N, 1),
    cos (N, 1), den (N, 1) = n1 n2 + eps).
    """
    _check_features(features)
    if h1.ndim != 2 or h1.shape != h2.shape:
        raise ValueError(f"head features: h1 {tuple(h1.shape)} and h2 {tuple(h2.shape)} must be the same (N, D)")
    xp = get_array_module(h1)
    cols, parts = [], []
    for f in features:
        if f == "abs":
            a, sign = _abs_diff_forward(h1, h2)                           # (N, D)
            cols.append(a)
            parts.append(sign)
        elif f == "sq":
            diff = h1 - h2                                                # (N, D)
            cols.append(diff * diff)
            parts.append(diff)
        elif f == "prod":
            cols.append(h1 * h2)
            parts.append((h1, h2))
        else:                                                             # "cos"
            n1 = xp.sqrt(xp.sum(h1 * h1, axis=1, keepdims=True))          # (N, 1)
            n2 = xp.sqrt(xp.sum(h2 * h2, axis=1, keepdims=True))          # (N, 1)
            den = n1 * n2 + COS_EPS                                       # (N, 1)
            cos = xp.sum(h1 * h2, axis=1, keepdims=True) / den            # (N, 1)
            cols.append(cos)
            parts.append((h1, h2, n1, n2, cos, den))
    return xp.concatenate(cols, axis=1), (tuple(features), h1.shape, tuple(parts))


def head_features_backward(dd, cache):
    """dd (N, head_width) -> dh1, dh2 (N, D), summing each feature's share:

      "abs"   dh1 = g sign(h1 - h2),  dh2 = -dh1
      "sq"    dh1 = 2 g (h1 - h2),    dh2 = -dh1
      "prod"  dh1 = g h2,             dh2 = g h1
      "cos"   dh1 = g (h2 - cos n2 h1/n1) / den,  dh2 = g (h1 - cos n1 h2/n2) / den
              (g (N, 1) broadcast; h/n taken as 0 where n = 0)
    """
    features, h_shape, parts = cache
    N, D = h_shape
    width = head_width(features, D)
    if dd.shape != (N, width):
        raise ValueError(f"head features: dd {tuple(dd.shape)} does not match the forward output ({N}, {width})")
    xp = get_array_module(dd)
    dh1 = xp.zeros(h_shape, dtype=dd.dtype)                               # (N, D)
    dh2 = xp.zeros(h_shape, dtype=dd.dtype)                               # (N, D)
    k = 0
    for f, part in zip(features, parts):
        cols = 1 if f == "cos" else D
        g = dd[:, k:k + cols]                                             # (N, D) or (N, 1)
        k += cols
        if f == "abs":
            a1, a2 = _abs_diff_backward(g, part)
        elif f == "sq":
            a1 = 2 * g * part
            a2 = -a1
        elif f == "prod":
            h1, h2 = part
            a1, a2 = g * h2, g * h1
        else:                                                             # "cos"
            h1, h2, n1, n2, cos, den = part
            u1 = h1 / xp.where(n1 > 0, n1, 1)                             # h1/|h1|, 0 where |h1| = 0
            u2 = h2 / xp.where(n2 > 0, n2, 1)
            a1 = g * (h2 - cos * n2 * u1) / den
            a2 = g * (h1 - cos * n1 * u2) / den
        dh1 += a1
        dh2 += a2
    return dh1, dh2

