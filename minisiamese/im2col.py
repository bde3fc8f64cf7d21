"""im2col / col2im: turn a convolution into one matrix product.

Layout (channels-last, the order that makes every copy move contiguous runs):

    x    (N, H, W, C)
    cols (N*OH*OW, KH*KW*C)   row = (n, oh, ow), column = (i, j, c)

so that ``cols @ w.transpose(2, 3, 1, 0).reshape(KH*KW*C, F)`` is the convolution.
Both take ``xp`` from their argument; on CuPy arrays they hand over to the CUDA
kernels of ``kernels/im2col.cu`` (same signature, same layout).
``minisiamese.reference`` holds the nested-loop definitions both are tested
against.
"""
import numpy as np

from .backend import get_array_module
from .parallel import over_batch
from .shapes import conv_output_size


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
