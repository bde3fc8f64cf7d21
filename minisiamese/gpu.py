"""The GPU hot path: CUDA kernels from ``kernels/*.cu``, compiled by CuPy.

Each .cu file is read once and compiled with ``cupy.RawModule`` the first time
one of its kernels is needed (CuPy keeps compiled binaries in its on-disk cache,
so later processes skip nvrtc).  Kernels are ``extern "C"`` with an ``_f32`` and
an ``_f64`` variant; shapes are passed as arguments.  Every kernel is a
grid-stride loop over the elements it writes, so any grid covers any size; the
grid is computed next to each launch.

The same sources are compiled for the host in the tests (tests/kernel_shim) and
checked against the NumPy references there, so the index arithmetic is tested
on machines without a GPU.
"""
import functools
import os

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
# Installed from a wheel the sources are package data, minisiamese/kernels/; in a
# checkout (an editable install too) they are the repository's kernels/.
KERNEL_DIRS = (os.path.join(_HERE, "kernels"), os.path.join(os.path.dirname(_HERE), "kernels"))
KERNEL_FILES = ("im2col.cu", "maxpool.cu", "elementwise.cu")


def kernel_path(filename):
    """The path of one kernel source: the first of KERNEL_DIRS that has it."""
    for folder in KERNEL_DIRS:
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"CUDA source {filename} not found in {' or '.join(KERNEL_DIRS)}; "
                            "reinstall minisiamese (the wheel ships kernels/*.cu)")
BLOCK = 256                 # threads per block: a multiple of the 32-thread warp
MAX_BLOCKS = 65535 * 4      # more blocks than any kernel here needs; grid-stride covers the rest


@functools.lru_cache(maxsize=None)
def _module(filename):
    import cupy
    with open(kernel_path(filename)) as f:
        return cupy.RawModule(code=f.read(), options=("-std=c++17",))


def _kernel(filename, name, dtype):
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"GPU kernel {name}: float32 or float64 arrays only, got {dtype}")
    return _module(filename).get_function(f"{name}_{'f32' if dtype == np.float32 else 'f64'}")


def _grid(n):
    return (max(1, min(-(-n // BLOCK), MAX_BLOCKS)),)


def _i32(*values):
    return [np.int32(v) for v in values]


def im2col_gpu(x, KH, KW, stride, pad, OH, OW, out=None):
    """Same contract as minisiamese.im2col.im2col (x must be C-contiguous)."""
    import cupy
    N, H, W, C = x.shape
    size = N * OH * OW * KH * KW * C
    cols = cupy.empty(size, dtype=x.dtype) if out is None else out.reshape(-1)[:size]
    k = _kernel("im2col.cu", "im2col_nhwc", x.dtype)
    k(_grid(size), (BLOCK,), (cupy.ascontiguousarray(x), cols, *_i32(N, H, W, C, KH, KW, stride, pad, OH, OW)))
    return cols.reshape(N * OH * OW, KH * KW * C)


def col2im_gpu(cols, x_shape, KH, KW, stride, pad, OH, OW, out=None):
    """Same contract as minisiamese.im2col.col2im: a gather, one thread per pixel."""
    import cupy
    N, H, W, C = x_shape
    dx = cupy.empty(x_shape, dtype=cols.dtype) if out is None or not out.flags.c_contiguous else out
    k = _kernel("im2col.cu", "col2im_nhwc", cols.dtype)
    k(_grid(dx.size), (BLOCK,), (cupy.ascontiguousarray(cols), dx, *_i32(N, H, W, C, KH, KW, stride, pad, OH, OW)))
    if out is not None and dx is not out:
        out[...] = dx
        return out
    return dx


def maxpool_forward_gpu(x, pool, stride, OH, OW):
    import cupy
    N, H, W, C = x.shape
    out = cupy.empty((N, OH, OW, C), dtype=x.dtype)
    idx = cupy.empty((N, OH, OW, C), dtype=cupy.uint8)
    k = _kernel("maxpool.cu", "maxpool_fwd_nhwc", x.dtype)
    k(_grid(out.size), (BLOCK,), (cupy.ascontiguousarray(x), out, idx, *_i32(N, H, W, C, pool, stride, OH, OW)))
    return out, idx


def maxpool_backward_gpu(dout, idx, x_shape, pool, stride):
    import cupy
    N, H, W, C = x_shape
    _, OH, OW, _ = dout.shape
    dx = cupy.empty(x_shape, dtype=dout.dtype)
    k = _kernel("maxpool.cu", "maxpool_bwd_nhwc", dout.dtype)
    k(_grid(dx.size), (BLOCK,), (cupy.ascontiguousarray(dout), idx, dx, *_i32(N, H, W, C, pool, stride, OH, OW)))
    return dx


def bias_relu_forward_gpu(x, b):
    """In place: x = max(x + b, 0) over the last (channel) axis."""
    k = _kernel("elementwise.cu", "bias_relu_fwd", x.dtype)
    k(_grid(x.size), (BLOCK,), (x, b.astype(x.dtype, copy=False), np.int64(x.size), np.int32(x.shape[-1])))
    return x


def relu_backward_gpu(dout, y, out):
    k = _kernel("elementwise.cu", "relu_bwd", dout.dtype)
    k(_grid(dout.size), (BLOCK,), (dout, y, out, np.int64(dout.size)))
    return out


def adam_update_gpu(w, g, m, v, alpha, beta1, beta2, eps):
    """One Adam step on one parameter array, in place (all four contiguous)."""
    t = w.dtype.type
    k = _kernel("elementwise.cu", "adam_update", w.dtype)
    k(_grid(w.size), (BLOCK,), (w, g, m, v, np.int64(w.size), t(alpha), t(beta1), t(beta2), t(eps)))
