"""Every op's backward against central differences, in float64, with a random
upstream gradient, over shapes/strides/paddings drawn by hypothesis."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import to_np
from minisiamese import losses, ops
from minisiamese.gradcheck import numeric_grad, rel_error
from test_reference import conv_arrays, conv_case, pool_case

TOL = 1e-7


def check(f, backward_grad, x):
    """backward_grad must equal d f() / d x."""
    num = numeric_grad(f, x)
    err = rel_error(backward_grad, num)
    assert err < TOL, f"relative error {err:.2e}"


@given(conv_case())
def test_conv2d_gradients(case):
    stride, pad = case[7:9]
    x, w, b, r = conv_arrays(case)
    out, cache = ops.conv2d_forward(x, w, b, stride, pad)
    g = r.standard_normal(out.shape)
    dx, dw, db = ops.conv2d_backward(g, cache)
    loss = lambda: np.sum(ops.conv2d_forward(x, w, b, stride, pad)[0] * g)  # noqa: E731
    check(loss, dx, x)
    check(loss, dw, w)
    check(loss, db, b)


def test_conv2d_gradients_on_backend(xp):
    """The same check on every backend (CuPy where a GPU exists)."""
    r = np.random.default_rng(3)
    x, w, b = (xp.asarray(r.standard_normal(s)) for s in ((2, 6, 5, 3), (4, 3, 3, 2), (4,)))
    out, cache = ops.conv2d_forward(x, w, b, 2, 1)
    g = xp.asarray(r.standard_normal(out.shape))
    dx, dw, db = ops.conv2d_backward(g, cache)
    loss = lambda: xp.sum(ops.conv2d_forward(x, w, b, 2, 1)[0] * g)  # noqa: E731
    for grad, arr in ((dx, x), (dw, w), (db, b)):
        check(loss, grad, arr)


def test_conv2d_need_dx_false_skips_dx(rng):
    x, w, b = rng.standard_normal((2, 5, 5, 1)), rng.standard_normal((3, 1, 2, 2)), rng.standard_normal(3)
    out, cache = ops.conv2d_forward(x, w, b)
    dx, dw, db = ops.conv2d_backward(np.ones_like(out), cache, need_dx=False)
    assert dx is None and dw.shape == w.shape and db.shape == b.shape


@given(pool_case())
def test_maxpool_gradients(case):
    N, H, W, C, pool, stride, _, seed = case
    r = np.random.default_rng(seed)
    # distinct values spaced far apart compared with h, so no max changes under +-h
    x = r.permutation(N * H * W * C).reshape(N, H, W, C) * 1e-2
    out, cache = ops.maxpool2d_forward(x, pool, stride)
    g = r.standard_normal(out.shape)
    check(lambda: np.sum(ops.maxpool2d_forward(x, pool, stride)[0] * g), ops.maxpool2d_backward(g, cache), x)


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2 ** 31))
def test_dense_gradients(N, D, U, seed):
    r = np.random.default_rng(seed)
    x, w, b = r.standard_normal((N, D)), r.standard_normal((D, U)), r.standard_normal(U)
    out, cache = ops.dense_forward(x, w, b)
    g = r.standard_normal(out.shape)
    dx, dw, db = ops.dense_backward(g, cache)
    loss = lambda: np.sum(ops.dense_forward(x, w, b)[0] * g)  # noqa: E731
    check(loss, dx, x)
    check(loss, dw, w)
    check(loss, db, b)


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@given(shapes, st.integers(0, 2 ** 31))
def test_relu_gradients(shape, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5                       # keep away from the kink
    out, cache = ops.relu_forward(x)
    g = r.standard_normal(shape)
    check(lambda: np.sum(ops.relu_forward(x)[0] * g), ops.relu_backward(g, cache), x)


@given(shapes, st.integers(0, 2 ** 31))
def test_sigmoid_gradients(shape, seed):
    r = np.random.default_rng(seed)
    x = 3 * r.standard_normal(shape)
    out, cache = ops.sigmoid_forward(x)
    g = r.standard_normal(shape)
    check(lambda: np.sum(ops.sigmoid_forward(x)[0] * g), ops.sigmoid_backward(g, cache), x)


@given(shapes, st.floats(0.0, 0.9), st.integers(0, 2 ** 31))
def test_dropout_gradients_with_fixed_mask(shape, rate, seed):
    r = np.random.default_rng(seed)
    x, g = r.standard_normal(shape), r.standard_normal(shape)
    out, cache = ops.dropout_forward(x, rate, True, np.random.default_rng(seed))
    f = lambda: np.sum(ops.dropout_forward(x, rate, True, np.random.default_rng(seed))[0] * g)  # noqa: E731
    check(f, ops.dropout_backward(g, cache), x)


def test_dropout_is_inverted_and_identity_in_eval(rng):
    x = np.ones((200, 500))
    out, mask = ops.dropout_forward(x, 0.25, True, rng)
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    assert abs(out.mean() - 1.0) < 0.02                # expectation preserved
    same, cache = ops.dropout_forward(x, 0.25, False, rng)
    assert same is x and cache is None
    with pytest.raises(ValueError, match="rate"):
        ops.dropout_forward(x, 1.0, True, rng)


@given(shapes, st.integers(0, 2 ** 31))
def test_flatten_gradients(shape, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((2,) + shape)
    out, cache = ops.flatten_forward(x)
    g = r.standard_normal(out.shape)
    check(lambda: np.sum(ops.flatten_forward(x)[0] * g), ops.flatten_backward(g, cache), x)


@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 2 ** 31))
def test_l1_join_gradients(N, D, seed):
    r = np.random.default_rng(seed)
    h1, h2 = r.standard_normal((N, D)), r.standard_normal((N, D))
    h2[np.abs(h1 - h2) < 1e-3] += 0.5                # keep away from |0|
    out, cache = ops.l1_join_forward(h1, h2)
    g = r.standard_normal(out.shape)
    d1, d2 = ops.l1_join_backward(g, cache)
    check(lambda: np.sum(ops.l1_join_forward(h1, h2)[0] * g), d1, h1)
    check(lambda: np.sum(ops.l1_join_forward(h1, h2)[0] * g), d2, h2)


def test_l1_join_sign_convention_at_zero():
    h = np.array([[1.0, 2.0]])
    out, cache = ops.l1_join_forward(h, h.copy())
    d1, d2 = ops.l1_join_backward(np.ones_like(h), cache)
    np.testing.assert_array_equal(d1, 0)
    np.testing.assert_array_equal(d2, 0)


@given(st.integers(1, 8), st.integers(0, 2 ** 31))
def test_bce_with_logits_gradient(N, seed):
    r = np.random.default_rng(seed)
    z, y = 4 * r.standard_normal(N), r.integers(0, 2, N).astype(np.float64)
    loss, cache = losses.bce_with_logits_forward(z, y)
    check(lambda: losses.bce_with_logits_forward(z, y)[0], losses.bce_with_logits_backward(cache), z)


@given(st.integers(1, 8), st.integers(0, 2 ** 31))
def test_bce_on_probabilities_gradient(N, seed):
    r = np.random.default_rng(seed)
    p, y = r.uniform(0.05, 0.95, N), r.integers(0, 2, N).astype(np.float64)
    loss, cache = losses.bce_forward(p, y)
    check(lambda: losses.bce_forward(p, y)[0], losses.bce_backward(cache), p)


@given(shapes, st.floats(0.0, 1.0), st.integers(0, 2 ** 31))
def test_l2_penalty_gradient(shape, lam, seed):
    w = np.random.default_rng(seed).standard_normal(shape)
    pen, grad = losses.l2_penalty(w, lam)
    assert np.isclose(pen, lam * np.sum(w ** 2))
    check(lambda: losses.l2_penalty(w, lam)[0], grad, w)


def test_bce_with_logits_is_finite_and_exact_at_extremes(xp):
    z = xp.asarray([1e4, -1e4, 1e4, -1e4, 0.0])
    y = xp.asarray([1.0, 0.0, 0.0, 1.0, 1.0])
    per = [losses.bce_with_logits_forward(z[i:i + 1], y[i:i + 1])[0] for i in range(5)]
    np.testing.assert_allclose([float(v) for v in per], [0, 0, 1e4, 1e4, np.log(2)], rtol=1e-12, atol=1e-12)
    dz = to_np(losses.bce_with_logits_backward((z, y)))
    assert np.all(np.isfinite(dz))
    np.testing.assert_allclose(dz, np.array([0, 0, 1, -1, -0.5]) / 5, atol=1e-12)


def test_fused_bce_equals_bce_on_sigmoid(rng):
    z, y = rng.standard_normal(50) * 3, rng.integers(0, 2, 50).astype(np.float64)
    fused, _ = losses.bce_with_logits_forward(z, y)
    plain, _ = losses.bce_forward(ops.sigmoid(z), y)
    np.testing.assert_allclose(fused, plain, rtol=1e-9)


def test_sigmoid_is_finite_for_huge_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = ops.sigmoid(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]))
    np.testing.assert_allclose(s, [0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1])


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2 ** 31))
def test_bias_relu_gradients(N, H, C, seed):
    r = np.random.default_rng(seed)
    x, b = r.standard_normal((N, H, H, C)), r.standard_normal(C)
    x[np.abs(x + b) < 1e-3] += 0.5                    # keep away from the kink
    out, cache = ops.bias_relu_forward(x.copy(), b)
    g = r.standard_normal(out.shape)
    dx, db = ops.bias_relu_backward(g.copy(), cache)
    f = lambda: np.sum(ops.bias_relu_forward(x.copy(), b)[0] * g)  # noqa: E731
    check(f, dx, x)
    check(f, db, b)


def test_conv2d_without_bias(rng):
    x, w = rng.standard_normal((2, 5, 5, 2)), rng.standard_normal((3, 2, 2, 2))
    out, cache = ops.conv2d_forward(x, w)
    np.testing.assert_allclose(out, ops.conv2d_forward(x, w, np.zeros(3))[0])
    dx, dw, db = ops.conv2d_backward(np.ones_like(out), cache)
    assert db is None and dw.shape == w.shape
