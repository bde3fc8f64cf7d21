"""The CUDA kernels in kernels/*.cu, checked without a GPU.

* every .cu file compiles with nvcc for sm_90 (where nvcc is installed);
* the same sources, compiled for the host through tests/kernel_shim (g++), run
  their grid-stride loops block by block and thread by thread and are compared
  with the NumPy loop references -- so an indexing mistake fails here, in CI,
  not first on a GPU.  The grids used are deliberately small, so every thread
  handles several elements.
"""
import ctypes
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given

from bounds import assert_within, gamma, unit_roundoff
from minisiamese import reference
from minisiamese.optim import Adam
from test_reference import conv_case, pool_case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = sorted(glob.glob(os.path.join(ROOT, "kernels", "*.cu")))
GRID, BLOCK = 3, 7


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("source", KERNELS, ids=os.path.basename)
def test_cuda_source_compiles_for_sm90(source, tmp_path):
    proc = subprocess.run(["nvcc", "-arch=sm_90", "-std=c++17", "-c", source, "-o", str(tmp_path / "k.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def suffix(dtype):
    return "f32" if dtype == np.float32 else "f64"


def call(shim, name, dtype, *args):
    fn = getattr(shim, f"shim_{name}_{suffix(dtype)}")
    conv = []
    for a in args:
        if isinstance(a, np.ndarray):
            conv.append(ptr(a))
        elif isinstance(a, float):
            conv.append(ctypes.c_float(a) if dtype == np.float32 else ctypes.c_double(a))
        elif isinstance(a, np.int64):
            conv.append(ctypes.c_longlong(int(a)))
        else:
            conv.append(ctypes.c_int(a))
    fn(ctypes.c_uint(GRID), ctypes.c_uint(BLOCK), *conv)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(case=conv_case())
def test_im2col_and_col2im_kernels_match_loop_references(shim, dtype, case):
    N, H, W, C, F, KH, KW, stride, pad, seed = case
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    r = np.random.default_rng(seed)
    x = r.standard_normal((N, H, W, C)).astype(dtype)
    cols = np.full((N * OH * OW, KH * KW * C), np.nan, dtype)
    call(shim, "im2col_nhwc", dtype, x, cols, N, H, W, C, KH, KW, stride, pad, OH, OW)
    np.testing.assert_array_equal(cols, reference.im2col_ref(x, KH, KW, stride, pad))
    c = r.standard_normal(cols.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    call(shim, "col2im_nhwc", dtype, c, dx, N, H, W, C, KH, KW, stride, pad, OH, OW)
    n = -(-KH // stride) * -(-KW // stride)                      # the most column entries one pixel sums
    # both sum n entries, in other orders: each within gamma_n sum|c| of the exact sum
    bound = 2 * gamma(n, dtype) * reference.col2im_ref(np.abs(c).astype(np.float64), x.shape, KH, KW, stride, pad)
    assert_within(dx, reference.col2im_ref(c, x.shape, KH, KW, stride, pad), bound, "col2im")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(case=pool_case())
def test_maxpool_kernels_match_loop_reference_including_ties(shim, dtype, case):
    N, H, W, C, pool, stride, ties, seed = case
    OH, OW = (H - pool) // stride + 1, (W - pool) // stride + 1
    r = np.random.default_rng(seed)
    x = (r.integers(0, 3, (N, H, W, C)) if ties else r.standard_normal((N, H, W, C))).astype(dtype)
    out = np.full((N, OH, OW, C), np.nan, dtype)
    idx = np.zeros((N, OH, OW, C), np.uint8)
    call(shim, "maxpool_fwd_nhwc", dtype, x, out, idx, N, H, W, C, pool, stride, OH, OW)
    ref_out, ref_dx_of = reference.maxpool_ref(x, pool, stride)
    np.testing.assert_array_equal(out, ref_out)
    dout = r.standard_normal(out.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    call(shim, "maxpool_bwd_nhwc", dtype, dout, idx, dx, N, H, W, C, pool, stride, OH, OW)
    n = (-(-pool // stride)) ** 2                               # the most windows that route to one pixel
    # both sum at most n douts (in the same order today): each within gamma_n sum|dout| of the exact sum
    assert_within(dx, ref_dx_of(dout), 2 * gamma(n, dtype) * ref_dx_of(np.abs(dout).astype(np.float64)), "dx")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_kernels(shim, dtype, rng):
    y = rng.standard_normal((4, 5, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    expected = np.maximum(y + b, 0)
    call(shim, "bias_relu_fwd", dtype, y, b, np.int64(y.size), 3)
    np.testing.assert_array_equal(y, expected)                   # exact: one correctly rounded add, then max
    dout = rng.standard_normal(y.shape).astype(dtype)
    dx = np.full(y.shape, np.nan, dtype)
    call(shim, "relu_bwd", dtype, dout, y, dx, np.int64(y.size))
    np.testing.assert_array_equal(dx, np.where(y > 0, dout, 0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_kernel_matches_the_numpy_optimizer(shim, dtype, rng):
    w0 = rng.standard_normal(50).astype(dtype)
    grads = [rng.standard_normal(50).astype(dtype) for _ in range(3)]
    opt = Adam(lr=1e-2, beta1=0.5, beta2=0.999, eps=1e-7)
    ref = {"w": w0.copy()}
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    u = unit_roundoff(dtype)
    # the kernel's 1 - b2 is 1 - fl(0.999) in T, NumPy's fl(1 - 0.999): 1.3e-5 apart in float32, 0 in float64
    dc = abs(float(1 - dtype(0.999)) - float(dtype(1 - 0.999))) / (1 - 0.999)
    bound = np.zeros(w0.shape)
    for t, g in enumerate(grads, start=1):
        before = ref["w"].astype(np.float64)
        opt.step(ref, {"w": g})
        alpha = 1e-2 * (1 - 0.999 ** t) ** 0.5 / (1 - 0.5 ** t)
        call(shim, "adam_update", dtype, w, g, m, v, np.int64(w.size), alpha, 0.5, 0.999, 1e-7)
        # m is the same on both; v (t steps of 3 roundings on values >= 0) and its sqrt, + eps and / give a
        # step within (1.5 t + 3) u of its exact value on each side, and dc / 2 apart; w -= step rounds once
        bound += (dc / 2 + (3 * t + 6) * u) * np.abs(before - ref["w"]) + 2 * u * np.abs(ref["w"])
    assert_within(w, ref["w"], bound, "w")
