"""Batch normalisation and the comparison head's features: forward against the
loop references, backward against central differences (float64, random upstream
gradient, hypothesis-drawn shapes), the running statistics, every backend, and
the errors for bad inputs."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bounds import assert_within, unit_roundoff
from bounds import gamma as gamma_n
from conftest import to_np
from minisiamese import ops, reference
from minisiamese.gradcheck import numeric_grad, rel_error
from test_gradcheck import check

FEATURE_SETS = [("abs",), ("sq",), ("prod",), ("cos",), ("abs", "sq"), ("abs", "sq", "prod", "cos"),
                ("cos", "prod", "abs")]


# ----------------------------------------------------------------------------- batch norm
@st.composite
def bn_shape(draw, min_values=2):
    """(N, H, W, C) or (N, D), with at least ``min_values`` values per channel."""
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    else:
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    assume(int(np.prod(shape[:-1])) >= min_values)
    return shape


def bn_arrays(shape, seed, dtype=np.float64):
    """x, gamma, beta and a running dict {"mean", "var"} (var > 0) for x of ``shape``."""
    r = np.random.default_rng(seed)
    C = shape[-1]
    x = (2 * r.standard_normal(shape) + r.standard_normal(C)).astype(dtype)
    gamma, beta = r.standard_normal(C).astype(dtype), r.standard_normal(C).astype(dtype)
    running = {"mean": r.standard_normal(C).astype(dtype), "var": r.uniform(0.5, 2.0, C).astype(dtype)}
    return x, gamma, beta, running, r


def copy_running(running):
    return {k: v.copy() for k, v in running.items()}


def bn_bound(x, gamma, beta, running, train, dtype, eps=1e-5):
    """Bound on |batch norm computed in ``dtype`` - exact|, elementwise, to first
    order in u: the mean of M values (gamma_{M+1} mean|x|), x - mean, the variance
    (M squares >= 0: gamma_{M+2}, and the mean's error), 1 / sqrt(var + eps) (4 roundings),
    xhat, gamma xhat + beta (2 roundings).  Inference: mean and var are given."""
    u = unit_roundoff(dtype)
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    M = x.size // x.shape[-1]
    if train:
        mean = x.mean(axis=axes)
        e_mean = gamma_n(M + 1, dtype) * np.abs(x).mean(axis=axes)
    else:
        mean, e_mean = running["mean"].astype(np.float64), 0.0
    xc = np.abs(x - mean)
    e_xc = e_mean + u * (xc + e_mean)
    if train:
        var = (xc ** 2).mean(axis=axes)
        e_var = gamma_n(M + 2, dtype) * ((xc + e_xc) ** 2).mean(axis=axes) + 2 * (xc * e_xc).mean(axis=axes)
    else:
        var, e_var = running["var"].astype(np.float64), 0.0
    inv = 1 / np.sqrt(var + eps)
    e_xhat = e_xc * inv + xc * inv * (e_var / (2 * (var + eps)) + 5 * u)
    g, b = np.abs(gamma.astype(np.float64)), np.abs(beta.astype(np.float64))
    return g * e_xhat + 2 * u * (g * xc * inv + b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("train", [True, False])
@given(bn_shape(), st.integers(0, 2 ** 31))
def test_batchnorm_forward_matches_reference(dtype, train, shape, seed):
    x, gamma, beta, running, _ = bn_arrays(shape, seed, dtype)
    before = copy_running(running)
    out, _ = ops.batchnorm_forward(x, gamma, beta, running, train)
    assert out.dtype == dtype and out.shape == x.shape
    ref = (reference.batchnorm_ref(x, gamma, beta) if train
           else reference.batchnorm_ref(x, gamma, beta, before["mean"], before["var"]))
    # the fast op's float32 (or float64) rounding and the float64 reference's, each bounded as bn_bound derives
    assert_within(out, ref, bn_bound(x, gamma, beta, before, train, dtype) + bn_bound(x, gamma, beta, before, train,
                                                                                       np.float64), "batch norm")
    for k in ("mean", "var"):
        assert running[k].dtype == dtype


@given(bn_shape(min_values=3), st.integers(0, 2 ** 31))
def test_batchnorm_training_gradients(shape, seed):
    """Through the batch mean and variance.  (At least 3 values per channel: with
    2, xhat is +-1 whatever x is, and its gradient drowns in rounding noise.)"""
    x, gamma, beta, running, r = bn_arrays(shape, seed)
    out, cache = ops.batchnorm_forward(x, gamma, beta, copy_running(running), True)
    g = r.standard_normal(out.shape)
    dx, dgamma, dbeta = ops.batchnorm_backward(g, cache)
    # training mode mutates running: every evaluation gets a fresh copy
    loss = lambda: np.sum(ops.batchnorm_forward(x, gamma, beta, copy_running(running), True)[0] * g)  # noqa: E731
    check(loss, dx, x)
    check(loss, dgamma, gamma)
    check(loss, dbeta, beta)


@given(bn_shape(min_values=1), st.integers(0, 2 ** 31))
def test_batchnorm_inference_gradients(shape, seed):
    x, gamma, beta, running, r = bn_arrays(shape, seed)
    out, cache = ops.batchnorm_forward(x, gamma, beta, running, False)
    g = r.standard_normal(out.shape)
    dx, dgamma, dbeta = ops.batchnorm_backward(g, cache)
    loss = lambda: np.sum(ops.batchnorm_forward(x, gamma, beta, running, False)[0] * g)  # noqa: E731
    check(loss, dx, x)
    check(loss, dgamma, gamma)
    check(loss, dbeta, beta)
    np.testing.assert_allclose(dx, g * gamma / np.sqrt(running["var"] + 1e-5), rtol=1e-12)


def test_batchnorm_affine_backward_in_training_mode_is_caught(rng):
    """The check can fail: the inference-mode (affine) dx, which ignores the
    batch statistics' dependence on x, misses the training-mode gradient by
    ~1/sqrt(M) of its size, orders of magnitude above the 1e-7 tolerance."""
    x, gamma, beta, running, r = bn_arrays((4, 3, 3, 2), 5)
    out, (xhat, gam, inv_std, _) = ops.batchnorm_forward(x, gamma, beta, copy_running(running), True)
    g = r.standard_normal(out.shape)
    wrong_dx = ops.batchnorm_backward(g, (xhat, gam, inv_std, False))[0]
    num = numeric_grad(lambda: np.sum(ops.batchnorm_forward(x, gamma, beta, copy_running(running), True)[0] * g), x)
    assert rel_error(wrong_dx, num) > 1e-2
    assert rel_error(ops.batchnorm_backward(g, (xhat, gam, inv_std, True))[0], num) < 1e-7


def test_batchnorm_running_statistics_by_hand():
    """Two training calls on (N, D) = (2, 2), then (3, 2), momentum 0.9."""
    mean0, var0 = np.zeros(2), np.ones(2)
    running = {"mean": mean0, "var": var0}
    gamma, beta = np.ones(2), np.zeros(2)
    out, _ = ops.batchnorm_forward(np.array([[1.0, 2.0], [3.0, 6.0]]), gamma, beta, running, True)
    # batch mean (2, 4), biased var (1, 4), unbiased (M=2) var (2, 8)
    np.testing.assert_allclose(out, np.array([[-1, -1], [1, 1]]) / np.sqrt(1 + np.array([1e-5, 1e-5 / 4])), rtol=1e-12)
    np.testing.assert_allclose(running["mean"], [0.2, 0.4], rtol=1e-12)          # 0.9*0 + 0.1*(2, 4)
    np.testing.assert_allclose(running["var"], [1.1, 1.7], rtol=1e-12)           # 0.9*1 + 0.1*(2, 8)
    ops.batchnorm_forward(np.array([[0.0, 1.0], [4.0, 1.0], [2.0, 4.0]]), gamma, beta, running, True)
    # batch mean (2, 2); squared deviations sum (8, 6), unbiased (M=3) var (4, 3)
    np.testing.assert_allclose(running["mean"], [0.38, 0.56], rtol=1e-12)        # 0.9*(0.2, 0.4) + 0.1*(2, 2)
    np.testing.assert_allclose(running["var"], [1.39, 1.83], rtol=1e-12)         # 0.9*(1.1, 1.7) + 0.1*(4, 3)
    assert running["mean"] is mean0 and running["var"] is var0                   # updated in place


def test_batchnorm_running_statistics_nhwc_per_channel():
    """NHWC: each channel's statistics come from all N*H*W of its values."""
    x = np.random.default_rng(2).standard_normal((3, 4, 5, 2))
    running = {"mean": np.full(2, 1.0), "var": np.full(2, 3.0)}
    ops.batchnorm_forward(x, np.ones(2), np.zeros(2), running, True, momentum=0.5)
    flat = x.reshape(-1, 2)
    np.testing.assert_allclose(running["mean"], 0.5 * 1.0 + 0.5 * flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(running["var"], 0.5 * 3.0 + 0.5 * flat.var(axis=0, ddof=1), rtol=1e-12)


def test_batchnorm_inference_leaves_running_alone_and_is_per_sample(rng):
    x, gamma, beta, running, _ = bn_arrays((5, 3, 3, 4), 9)
    before = copy_running(running)
    out, _ = ops.batchnorm_forward(x, gamma, beta, running, False)
    for k in ("mean", "var"):
        np.testing.assert_array_equal(running[k], before[k])
    # no batch statistics: a sample's output does not depend on the rest of the batch
    one, _ = ops.batchnorm_forward(x[2:3], gamma, beta, running, False)
    np.testing.assert_allclose(one, out[2:3], rtol=1e-12)


def test_batchnorm_float32_with_float64_running_keeps_float32():
    x, gamma, beta, running, _ = bn_arrays((4, 3), 1, np.float32)
    running = {k: v.astype(np.float64) for k, v in running.items()}
    for train in (True, False):
        out, cache = ops.batchnorm_forward(x, gamma, beta, running, train)
        assert out.dtype == np.float32
        dx, dgamma, dbeta = ops.batchnorm_backward(np.ones_like(out), cache)
        assert dx.dtype == dgamma.dtype == dbeta.dtype == np.float32
    assert running["mean"].dtype == running["var"].dtype == np.float64


# ----------------------------------------------------------------------------- head features
def head_arrays(N, D, seed, dtype=np.float64):
    """h1, h2 (N, D) with no difference within 1e-3 of 0 (|u| has no derivative there)."""
    r = np.random.default_rng(seed)
    h1, h2 = r.standard_normal((N, D)), r.standard_normal((N, D))
    h2[np.abs(h1 - h2) < 1e-3] += 0.5
    return h1.astype(dtype), h2.astype(dtype), r


def head_bound(h1, h2, features, dtype):
    """Bound on |head features computed in ``dtype`` - exact| (N, width), to
    first order in u: "abs" h1 - h2 then |.|: u |d|; "sq" the difference, then
    its square: 3 u d; "prod" u |d|; "cos" the dot product gamma_D sum|h1 h2|,
    each norm gamma_D / 2 + u, the denominator 2 roundings more, the division u."""
    u = unit_roundoff(dtype)
    h1, h2 = h1.astype(np.float64), h2.astype(np.float64)
    D = h1.shape[1]
    cols = []
    for f in features:
        if f == "abs":
            cols.append(u * np.abs(h1 - h2))
        elif f == "sq":
            cols.append(3 * u * (h1 - h2) ** 2)
        elif f == "prod":
            cols.append(u * np.abs(h1 * h2))
        else:
            n1, n2 = np.linalg.norm(h1, axis=1, keepdims=True), np.linalg.norm(h2, axis=1, keepdims=True)
            den = n1 * n2 + ops.COS_EPS
            cos = np.abs(np.sum(h1 * h2, axis=1, keepdims=True)) / den
            e_den = (2 * (gamma_n(D, dtype) / 2 + u) + 2 * u) * den
            cols.append(gamma_n(D, dtype) * np.sum(np.abs(h1 * h2), axis=1, keepdims=True) / den
                        + cos * e_den / den + u * cos)
    return np.concatenate(cols, axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("features", FEATURE_SETS, ids="-".join)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 2 ** 31))
def test_head_features_forward_matches_reference(dtype, features, N, D, seed):
    h1, h2, _ = head_arrays(N, D, seed, dtype)
    d, _ = ops.head_features_forward(h1, h2, features)
    assert d.dtype == dtype and d.shape == (N, ops.head_width(features, D))
    # one to three roundings per column, the cosine's sums of D terms: head_bound's derivation, for both sides
    bound = head_bound(h1, h2, features, dtype) + head_bound(h1, h2, features, np.float64)
    assert_within(d, reference.head_features_ref(h1, h2, features), bound, "head features")


@pytest.mark.parametrize("features", FEATURE_SETS, ids="-".join)
@given(st.integers(1, 4), st.integers(2, 6), st.integers(0, 2 ** 31))
def test_head_features_gradients(features, N, D, seed):
    """(D >= 2: with D = 1 the cosine is +-1, flat, and its gradient is noise.)"""
    h1, h2, r = head_arrays(N, D, seed)
    d, cache = ops.head_features_forward(h1, h2, features)
    g = r.standard_normal(d.shape)
    dh1, dh2 = ops.head_features_backward(g, cache)
    loss = lambda: np.sum(ops.head_features_forward(h1, h2, features)[0] * g)  # noqa: E731
    check(loss, dh1, h1)
    check(loss, dh2, h2)


def test_head_width_and_column_order():
    assert ops.head_width(("abs",), 7) == 7
    assert ops.head_width(("abs", "sq", "prod", "cos"), 7) == 22
    h1, h2 = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])
    d, _ = ops.head_features_forward(h1, h2, ("cos", "prod", "abs", "sq"))
    cos = (3 - 2) / (np.sqrt(5) * np.sqrt(10) + ops.COS_EPS)
    np.testing.assert_allclose(d, [[cos, 3, -2, 2, 3, 4, 9]], rtol=1e-15)


def test_head_abs_is_l1_join_including_sign_of_zero(rng):
    h1 = rng.standard_normal((3, 5))
    h2 = h1.copy()
    h2[:, ::2] += rng.standard_normal((3, 3))                 # columns 1 and 3 tie exactly
    d, cache = ops.head_features_forward(h1, h2, ("abs",))
    dj, cache_j = ops.l1_join_forward(h1, h2)
    np.testing.assert_array_equal(d, dj)
    g = rng.standard_normal(d.shape)
    for a, b in zip(ops.head_features_backward(g, cache), ops.l1_join_backward(g, cache_j)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[:, 1::2], 0)


def test_head_cos_with_a_zero_embedding_is_finite():
    h1, h2 = np.zeros((2, 3)), np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    d, cache = ops.head_features_forward(h1, h2, ("cos",))
    np.testing.assert_array_equal(d, [[0.0], [0.0]])
    np.testing.assert_array_equal(d, reference.head_features_ref(h1, h2, ("cos",)))
    dh1, dh2 = ops.head_features_backward(np.ones_like(d), cache)
    assert np.all(np.isfinite(dh1)) and np.all(np.isfinite(dh2))
    # d|h|/dh is taken as 0 at h = 0: what is left is h_other / eps
    np.testing.assert_allclose(dh1, np.array([[1.0, 2.0, 2.0], [0, 0, 0]]) / ops.COS_EPS)
    np.testing.assert_array_equal(dh2, 0)


# ----------------------------------------------------------------------------- backends
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_on_backend(xp, train):
    x, gamma, beta, running, r = bn_arrays((3, 4, 3, 2), 11)
    ref = (reference.batchnorm_ref(x, gamma, beta) if train
           else reference.batchnorm_ref(x, gamma, beta, running["mean"], running["var"]))
    X, G, B = xp.asarray(x), xp.asarray(gamma), xp.asarray(beta)
    run = {k: xp.asarray(v.copy()) for k, v in running.items()}
    out, cache = ops.batchnorm_forward(X, G, B, run, train)
    np.testing.assert_allclose(to_np(out), ref, rtol=1e-10, atol=1e-10)
    if train:
        flat = x.reshape(-1, 2)
        np.testing.assert_allclose(to_np(run["var"]), 0.9 * running["var"] + 0.1 * flat.var(axis=0, ddof=1), rtol=1e-12)
    g = xp.asarray(r.standard_normal(x.shape))
    dx, dgamma, dbeta = ops.batchnorm_backward(g, cache)
    loss = lambda: xp.sum(ops.batchnorm_forward(X, G, B, copy_running(run), train)[0] * g)  # noqa: E731
    for grad, arr in ((dx, X), (dgamma, G), (dbeta, B)):
        check(loss, grad, arr)
    out32, _ = ops.batchnorm_forward(X.astype(xp.float32), G.astype(xp.float32), B.astype(xp.float32),
                                     {k: v.astype(xp.float32) for k, v in run.items()}, train)
    assert out32.dtype == xp.float32


def test_head_features_on_backend(xp):
    features = ("abs", "sq", "prod", "cos")
    h1, h2, r = head_arrays(3, 5, 4)
    H1, H2 = xp.asarray(h1), xp.asarray(h2)
    d, cache = ops.head_features_forward(H1, H2, features)
    np.testing.assert_allclose(to_np(d), reference.head_features_ref(h1, h2, features), rtol=1e-12, atol=1e-12)
    g = xp.asarray(r.standard_normal(d.shape))
    dh1, dh2 = ops.head_features_backward(g, cache)
    loss = lambda: xp.sum(ops.head_features_forward(H1, H2, features)[0] * g)  # noqa: E731
    check(loss, dh1, H1)
    check(loss, dh2, H2)


# ----------------------------------------------------------------------------- bad inputs
def test_batchnorm_bad_inputs_name_the_problem():
    x, gamma, beta, running, _ = bn_arrays((2, 3, 3, 4), 0)
    bad = [
        (dict(gamma=np.ones(3)), r"gamma \(3,\) does not match the 4 channels"),
        (dict(beta=np.ones((4, 1))), r"beta \(4, 1\)"),
        (dict(running={"mean": np.zeros(4)}), "running must be a dict with keys 'mean' and 'var'"),
        (dict(running={"mean": np.zeros(3), "var": np.ones(4)}), r"running\['mean'\] \(3,\)"),
        (dict(running={"mean": np.zeros(4), "var": np.ones(5)}), r"running\['var'\] \(5,\)"),
        (dict(x=np.ones(4)), r"x \(4,\) must be \(N, ..., C\)"),
        (dict(x=np.ones((1, 4))), r"at least 2 values per channel.*x \(1, 4\) has 1"),
    ]
    for change, message in bad:
        args = dict(x=x, gamma=gamma, beta=beta, running=running, train=True)
        args.update(change)
        with pytest.raises(ValueError, match=message):
            ops.batchnorm_forward(**args)
    ops.batchnorm_forward(np.ones((1, 4)), gamma, beta, running, False)   # one sample is fine in inference
    out, cache = ops.batchnorm_forward(x, gamma, beta, running, True)
    with pytest.raises(ValueError, match=r"dout \(2, 3, 3, 3\) does not match the forward output \(2, 3, 3, 4\)"):
        ops.batchnorm_backward(np.ones((2, 3, 3, 3)), cache)


def test_head_features_bad_inputs_name_the_problem():
    h = np.ones((2, 3))
    bad = [
        ((h, h, ("abs", "l2")), r"unknown \['l2'\]"),
        ((h, h, ("abs", "sq", "abs")), r"repeated \['abs'\]"),
        ((h, h, ()), "the tuple is empty"),
        ((h, h, "abs"), "expected a tuple of names"),
        ((h, np.ones((2, 4)), ("abs",)), r"h1 \(2, 3\) and h2 \(2, 4\)"),
        ((np.ones(3), np.ones(3), ("abs",)), r"h1 \(3,\) and h2 \(3,\) must be the same \(N, D\)"),
    ]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            ops.head_features_forward(*args)
    with pytest.raises(ValueError, match=r"unknown \['dot'\]"):
        ops.head_width(("dot",), 3)
    d, cache = ops.head_features_forward(h, h, ("abs", "cos"))
    with pytest.raises(ValueError, match=r"dd \(2, 3\) does not match the forward output \(2, 4\)"):
        ops.head_features_backward(np.ones((2, 3)), cache)
