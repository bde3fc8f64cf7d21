"""The CuPy path against the NumPy path on random inputs (skipped without a GPU).

Tolerances as the GPU issue sets them: relative error <= 1e-5 in float32 for the
elementwise kernels, <= 1e-4 after GEMMs; float64 gradient checks pass too."""
import numpy as np
import pytest

from minisiamese import Adam, ModelConfig, SiameseNet, ops
from minisiamese.backend import gpu_available, to_numpy
from minisiamese.gradcheck import numeric_grad, rel_error
from minisiamese.im2col import col2im, im2col

pytestmark = pytest.mark.skipif(not gpu_available(), reason="no CuPy/CUDA device")


@pytest.fixture
def cp():
    import cupy
    return cupy


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_im2col_col2im_maxpool_agree(cp, rng, dtype, tol):
    x = rng.standard_normal((5, 13, 11, 6)).astype(dtype)
    for KH, KW, s, p in [(3, 3, 1, 0), (4, 2, 2, 1), (7, 7, 1, 0)]:
        cols = im2col(x, KH, KW, s, p)
        assert rel_error(im2col(cp.asarray(x), KH, KW, s, p), cols) == 0
        c = rng.standard_normal(cols.shape).astype(dtype)
        assert rel_error(col2im(cp.asarray(c), x.shape, KH, KW, s, p), col2im(c, x.shape, KH, KW, s, p)) <= tol
    for pool, stride in [(2, 2), (3, 2), (2, 3)]:
        out, cache = ops.maxpool2d_forward(x, pool, stride)
        gout, gcache = ops.maxpool2d_forward(cp.asarray(x), pool, stride)
        assert rel_error(gout, out) == 0
        assert np.array_equal(to_numpy(gcache[0]), cache[0])
        d = rng.standard_normal(out.shape).astype(dtype)
        assert rel_error(ops.maxpool2d_backward(cp.asarray(d), gcache), ops.maxpool2d_backward(d, cache)) <= tol


def test_bias_relu_and_adam_agree(cp, rng):
    x = rng.standard_normal((4, 6, 6, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    out, _ = ops.bias_relu_forward(x.copy(), b)
    gout, gcache = ops.bias_relu_forward(cp.asarray(x), cp.asarray(b))
    assert rel_error(gout, out) <= 1e-6
    d = rng.standard_normal(x.shape).astype(np.float32)
    dx, db = ops.bias_relu_backward(d.copy(), out)
    gdx, gdb = ops.bias_relu_backward(cp.asarray(d), gcache)
    assert rel_error(gdx, dx) == 0 and rel_error(gdb, db) <= 1e-5
    w = {"w": rng.standard_normal(1000).astype(np.float32)}
    gw = {"w": cp.asarray(w["w"])}
    a, ga = Adam(lr=1e-3, beta1=0.5), Adam(lr=1e-3, beta1=0.5)
    for _ in range(3):
        g = rng.standard_normal(1000).astype(np.float32)
        a.step(w, {"w": g})
        ga.step(gw, {"w": cp.asarray(g)})
    assert rel_error(gw["w"], w["w"]) <= 1e-5


def test_float64_conv_gradient_check_on_gpu(cp, rng):
    x, w, b = (cp.asarray(rng.standard_normal(s)) for s in ((2, 7, 6, 3), (4, 3, 3, 2), (4,)))
    out, cache = ops.conv2d_forward(x, w, b, 2, 1)
    g = cp.asarray(rng.standard_normal(out.shape))
    dx, dw, db = ops.conv2d_backward(g, cache)
    f = lambda: float(cp.sum(ops.conv2d_forward(x, w, b, 2, 1)[0] * g))  # noqa: E731
    for grad, arr in ((dx, x), (dw, w), (db, b)):
        assert rel_error(grad, numeric_grad(f, arr)) < 1e-7


def test_siamese_net_gpu_matches_cpu(rng):
    cfg = ModelConfig(input_size=40, conv_filters=(8, 16, 16), conv_kernels=(5, 3, 3), dense_units=32)
    cpu, gpu = SiameseNet(cfg, seed=1, backend="cpu"), SiameseNet(cfg, seed=1, backend="gpu")
    x1, x2 = rng.random((6, 1, 40, 40), dtype=np.float32), rng.random((6, 1, 40, 40), dtype=np.float32)
    y = np.array([1, 0, 1, 0, 1, 0])
    lc, gc = cpu.loss_and_grads(x1, x2, y)
    lg, gg = gpu.loss_and_grads(x1, x2, y)
    assert abs(lc - lg) <= 1e-4 * abs(lc)
    for k in gc:
        assert rel_error(gg[k], gc[k]) <= 1e-4, k
    np.testing.assert_allclose(gpu.predict_proba(x1, x2), cpu.predict_proba(x1, x2), rtol=1e-4)
