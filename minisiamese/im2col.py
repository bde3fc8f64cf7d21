"""im2col / col2im, and the convolution they make: one matrix product.

Layout (channels-last, the order that makes every copy move contiguous runs):

    x    (N, H, W, C)
    cols (N*OH*OW, KH*KW*C)   row = (n, oh, ow), column = (i, j, c)

so that ``cols @ w.transpose(2, 3, 1, 0).reshape(KH*KW*C, F)`` is the convolution
(:func:`im2col_conv2d_forward` / :func:`im2col_conv2d_backward`, the sibling of
:mod:`minisiamese.fftconv`; :func:`minisiamese.ops.conv2d_forward` dispatches
between the two).
Both take ``xp`` from their argument; on CuPy arrays they hand over to the CUDA
kernels of ``kernels/im2col.cu`` (same signature, same layout).
``minisiamese.reference`` holds the nested-loop definitions both are tested
against.
"""
import numpy as np

from .backend import get_array_module
from .parallel import over_batch
from .shapes import check_conv_args, conv_output_size


def _padded(x, pad):
    if pad == 0:
        return x
    xp = get_array_module(x)
    N, H, W, C = x.shape
    out = xp.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=x.dtype)
    out[:, pad:pad + H, pad:pad + W, :] = x
    return out


def im2col(x, KH, KW, stride=1, pad=0, out=None):
    """Copy every KHxKW window of ``x`` (N, H, W, C) into a row of the column matrix.

    One copy from a strided *view* of the padded input: the view has shape
    (N, OH, OW, KH, KW, C) and never materialises; the copy moves runs of KW*C
    contiguous values.  ``out`` may be a preallocated buffer of at least
    N*OH*OW*KH*KW*C elements (it is reused across batch chunks).
    Returns (N*OH*OW, KH*KW*C).
    """
    xp = get_array_module(x)
    N, H, W, C = x.shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    if xp is not np:                                   # CuPy: the kernel in kernels/im2col.cu
        from .gpu import im2col_gpu
        return im2col_gpu(x, KH, KW, stride, pad, OH, OW, out)
    xpad = np.ascontiguousarray(_padded(x, pad))
    sN, sH, sW, sC = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad, shape=(N, OH, OW, KH, KW, C),
        strides=(sN, stride * sH, stride * sW, sH, sW, sC))    # (N, OH, OW, KH, KW, C) view
    size = N * OH * OW * KH * KW * C
    if out is None:
        cols = xp.empty((N, OH, OW, KH, KW, C), dtype=x.dtype)
    else:
        cols = out.reshape(-1)[:size].reshape(N, OH, OW, KH, KW, C)

    def copy(n0, n1):
        cols[n0:n1] = windows[n0:n1]

    over_batch(copy, N, size * x.itemsize, xp)
    return cols.reshape(N * OH * OW, KH * KW * C)


def col2im(cols, x_shape, KH, KW, stride=1, pad=0, out=None):
    """The adjoint of :func:`im2col`: scatter-add every column entry back onto
    the pixel it was read from.  Returns an array of shape ``x_shape`` (N, H, W, C),
    written into ``out`` when given (and pad is 0, so no cropping copy is needed).

    Loops over the KH*KW window offsets; each step adds one (N, OH, OW, C) slab
    into a strided slice of the padded image, so no two writes of one step collide.
    """
    xp = get_array_module(cols)
    N, H, W, C = x_shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    if xp is not np:                                   # CuPy: a gather kernel, no atomics
        from .gpu import col2im_gpu
        return col2im_gpu(cols, x_shape, KH, KW, stride, pad, OH, OW, out)
    cols6 = cols.reshape(N, OH, OW, KH, KW, C)
    if out is not None and pad == 0:
        dxp = out
    else:
        dxp = xp.empty((N, H + 2 * pad, W + 2 * pad, C), dtype=cols.dtype)
    hspan, wspan = stride * (OH - 1) + 1, stride * (OW - 1) + 1

    def scatter(n0, n1):
        d = dxp[n0:n1]
        d[...] = 0
        for i in range(KH):
            for j in range(KW):
                d[:, i:i + hspan:stride, j:j + wspan:stride, :] += cols6[n0:n1, :, :, i, j, :]

    over_batch(scatter, N, cols.nbytes, xp)
    if pad:
        dx = dxp[:, pad:pad + H, pad:pad + W, :]
        if out is not None:
            out[...] = dx
            return out
        return dx
    return dxp


# Column matrices are built a few images at a time: the whole conv2 buffer at
# batch 256 would be 5.7 GB, and small chunks also keep each copy in cache.
COL_CHUNK_BYTES = 128 * 2 ** 20


def _chunks(N, bytes_per_image):
    step = max(1, min(N, COL_CHUNK_BYTES // max(1, bytes_per_image)))
    return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)]


def im2col_conv2d_forward(x, w, b=None, stride=1, pad=0):
    """The convolution of :func:`minisiamese.ops.conv2d_forward` as im2col(x) @ wmat, wmat = w reordered to (KH*KW*C, F), a chunk of
    images at a time.  cache = (x, w, stride, pad, has_bias): the columns are
    *not* kept (they are 5.7 GB for conv2 at batch 256) and are rebuilt in the
    backward pass.
    """
    xp = get_array_module(x)
    OH, OW = check_conv_args(x.shape, w.shape, None if b is None else b.shape, stride, pad)
    N, H, W, C = x.shape
    F, _, KH, KW = w.shape
    wmat = xp.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(KH * KW * C, F))   # (K, F), C order
    out = xp.empty((N, OH, OW, F), dtype=x.dtype)
    out2 = out.reshape(N * OH * OW, F)                                    # (N*OH*OW, F)
    rows = OH * OW
    chunks = _chunks(N, rows * KH * KW * C * x.itemsize)
    buf = xp.empty((chunks[0][1] - chunks[0][0]) * rows * KH * KW * C, dtype=x.dtype)
    for n0, n1 in chunks:
        cols = im2col(x[n0:n1], KH, KW, stride, pad, out=buf)            # (n*OH*OW, K)
        xp.matmul(cols, wmat, out=out2[n0 * rows:n1 * rows])
    if b is not None:
        out += b
    return out, (x, w, stride, pad, b is not None)


def im2col_conv2d_backward(dout, cache, need_dx=True):
    """dout (N, OH, OW, F) -> dx (N, H, W, C) or None, dw (F, C, KH, KW), db (F,) or None.

    With cols = im2col(x) and Y = cols @ wmat:  dwmat = cols^T dY,
    dcols = dY wmat^T, and dx = col2im(dcols) (col2im is the adjoint of im2col).
    ``need_dx=False`` skips dx for the first layer, whose input is the image.
    """
    x, w, stride, pad, has_bias = cache
    xp = get_array_module(dout)
    N, H, W, C = x.shape
    F, _, KH, KW = w.shape
    _, OH, OW, _ = dout.shape
    rows = OH * OW
    wmat = xp.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(KH * KW * C, F))   # (K, F), C order
    dout2 = dout.reshape(N * rows, F)                                     # (N*OH*OW, F)
    db = dout2.sum(axis=0) if has_bias else None                          # (F,)
    dwmat = xp.zeros(wmat.shape, dtype=wmat.dtype)                        # (K, F), C order: BLAS-friendly out=
    dx = xp.empty(x.shape, dtype=dout.dtype) if need_dx else None
    chunks = _chunks(N, rows * KH * KW * C * x.itemsize)
    n_max = chunks[0][1] - chunks[0][0]
    buf = xp.empty(n_max * rows * KH * KW * C, dtype=x.dtype)
    dbuf = xp.empty((n_max * rows, KH * KW * C), dtype=dout.dtype) if need_dx else None
    part = xp.empty(dwmat.shape, dtype=dwmat.dtype)
    for n0, n1 in chunks:
        dy = dout2[n0 * rows:n1 * rows]                                   # (n*OH*OW, F)
        cols = im2col(x[n0:n1], KH, KW, stride, pad, out=buf)            # (n*OH*OW, K)
        xp.matmul(cols.T, dy, out=part)
        dwmat += part
        if need_dx:
            dcols = dbuf[:(n1 - n0) * rows]
            xp.matmul(dy, wmat.T, out=dcols)                             # (n*OH*OW, K)
            col2im(dcols, (n1 - n0, H, W, C), KH, KW, stride, pad, out=dx[n0:n1])
    dw = dwmat.reshape(KH, KW, C, F).transpose(3, 2, 0, 1)               # (F, C, KH, KW)
    return dx, xp.ascontiguousarray(dw), db
