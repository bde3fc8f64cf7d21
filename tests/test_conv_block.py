"""ops.conv_block_forward / conv_block_backward: the tower's conv -> pool ->
(bias + ReLU | BN + ReLU) layer equals the composition of the single ops, bit
for bit, and its backward agrees with central differences (float64, random
upstream gradient)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisiamese import ops
from minisiamese.gradcheck import numeric_grad, rel_error
from test_gradcheck import TOL


def composed(x, w, b, bn, algo, pool, train, momentum=0.9):
    """The block written out as the model wrote it before it had one."""
    h, c_conv = ops.conv2d_forward(x, w, None, 1, 0, algo)
    c_pool = None
    if pool is not None:
        h, c_pool = ops.maxpool2d_forward(h, pool)
    if bn is None:
        h, c_act = ops.bias_relu_forward(h, b)
        return h, (c_conv, c_pool, None, c_act)
    h, c_bn = ops.batchnorm_forward(h, bn["gamma"], bn["beta"], bn["running"], train, momentum)
    h, c_relu = ops.relu_forward(h, inplace=True)
    return h, (c_conv, c_pool, c_bn, c_relu)


def composed_backward(dout, cache, need_dx=True):
    c_conv, c_pool, c_bn, out = cache
    if c_bn is None:
        d, db = ops.bias_relu_backward(dout, out)
        other = {"b": db}
    else:
        d = ops.relu_backward(dout, out, inplace=True)
        d, dgamma, dbeta = ops.batchnorm_backward(d, c_bn)
        other = {"gamma": dgamma, "beta": dbeta}
    if c_pool is not None:
        d = ops.maxpool2d_backward(d, c_pool)
    dx, dw, _ = ops.conv2d_backward(d, c_conv, need_dx)
    return dx, dw, other


def arrays(seed, N=3, H=9, W=8, C=2, F=3, K=3, bn=False):
    r = np.random.default_rng(seed)
    x, w = r.standard_normal((N, H, W, C)), r.standard_normal((F, C, K, K))
    if not bn:
        return x, w, r.standard_normal(F), None, r
    norm = {"gamma": r.standard_normal(F), "beta": r.standard_normal(F),
            "running": {"mean": r.standard_normal(F), "var": r.random(F) + 0.5}}
    return x, w, None, norm, r


def copy_bn(bn):
    return None if bn is None else {"gamma": bn["gamma"], "beta": bn["beta"],
                                    "running": {k: v.copy() for k, v in bn["running"].items()}}


VARIANTS = [(use_bn, train) for use_bn in (False, True) for train in ((False, True) if use_bn else (True,))]


@pytest.mark.parametrize("algo", ["im2col", "fft"])
@pytest.mark.parametrize("pool", [None, 2, 3])
@pytest.mark.parametrize("use_bn, train", VARIANTS)
def test_block_is_the_composition_of_its_ops(algo, pool, use_bn, train):
    x, w, b, bn, r = arrays(7, bn=use_bn)
    bn_block, bn_ops = copy_bn(bn), copy_bn(bn)
    out, cache = ops.conv_block_forward(x, w, b, bn_block, algo, pool, train, momentum=0.8)
    want, want_cache = composed(x, w, b, bn_ops, algo, pool, train, momentum=0.8)
    assert out.dtype == np.float64 and out.shape == want.shape
    np.testing.assert_array_equal(out, want)
    if use_bn:                                   # the running statistics move (or stay) alike, in place
        for key in ("mean", "var"):
            np.testing.assert_array_equal(bn_block["running"][key], bn_ops["running"][key])
            assert np.array_equal(bn_block["running"][key], bn["running"][key]) is not train
    g = r.standard_normal(out.shape)
    got = ops.conv_block_backward(g.copy(), cache)
    expected = composed_backward(g.copy(), want_cache)
    for a, e in zip(got[:2], expected[:2]):
        np.testing.assert_array_equal(a, e)
    assert got[2].keys() == expected[2].keys() == ({"gamma", "beta"} if use_bn else {"b"})
    for key in got[2]:
        np.testing.assert_array_equal(got[2][key], expected[2][key])
    dx, dw, _ = ops.conv_block_backward(g.copy(), cache, need_dx=False)
    assert dx is None
    np.testing.assert_array_equal(dw, expected[1])


@pytest.mark.parametrize("algo", ["im2col", "fft"])
@pytest.mark.parametrize("pool", [None, 2])
@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_forward_and_the_fused_fft_pool_path(algo, pool, use_bn, dtype):
    """need_grad=False (the fused FFT + pool path where algo is "fft" with a
    pool) gives the same numbers as the training forward in eval mode, and no
    cache."""
    x, w, b, bn, _ = arrays(11, N=4, H=12, W=11, bn=use_bn)
    x, w = x.astype(dtype), w.astype(dtype)
    b = None if b is None else b.astype(dtype)
    if bn is not None:
        bn = {"gamma": bn["gamma"].astype(dtype), "beta": bn["beta"].astype(dtype),
              "running": {k: v.astype(dtype) for k, v in bn["running"].items()}}
    out, cache = ops.conv_block_forward(x, w, b, bn, algo, pool, False, need_grad=False)
    want, _ = ops.conv_block_forward(x, w, b, bn, algo, pool, False, need_grad=True)
    assert cache is None and out.dtype == dtype
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="need_grad=False"):
        ops.conv_block_backward(np.ones_like(out), cache)


@st.composite
def block_case(draw):
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    K = draw(st.integers(1, 3))
    pool = draw(st.sampled_from([None, 2, 3]))
    least = K - 1 + (pool or 1)
    H, W = draw(st.integers(least, least + 4)), draw(st.integers(least, least + 4))
    use_bn = draw(st.booleans())
    train = use_bn and draw(st.booleans())
    if train and C * K * K == 1:
        # batch norm in training is invariant to scaling a channel's filter, so dL/dw is
        # orthogonal to w: for a one-weight filter it is 0, and only rounding noise is left
        C = 2
    values = ((H - K + 1) // (pool or 1)) * ((W - K + 1) // (pool or 1))
    if train and N * values < 3:
        # at least 3 values per channel, as test_norm_head's check: with 2, xhat is +-1
        # whatever x is, and its gradient drowns in rounding noise
        N = -(-3 // values)
    return N, H, W, C, F, K, pool, use_bn, train, draw(st.sampled_from(["im2col", "fft"])), draw(st.integers(0, 2 ** 31))


@given(block_case())
def test_block_gradients(case):
    N, H, W, C, F, K, pool, use_bn, train, algo, seed = case
    x, w, b, bn, r = arrays(seed, N, H, W, C, F, K, bn=use_bn)
    out, cache = ops.conv_block_forward(x, w, b, copy_bn(bn), algo, pool, train)
    g = r.standard_normal(out.shape)
    dx, dw, other = ops.conv_block_backward(g.copy(), cache)
    loss = lambda: np.sum(ops.conv_block_forward(x, w, b, copy_bn(bn), algo, pool, train)[0] * g)  # noqa: E731
    wrt = [(dx, x), (dw, w)] + ([(other["gamma"], bn["gamma"]), (other["beta"], bn["beta"])] if use_bn
                                else [(other["b"], b)])
    for grad, arr in wrt:
        err = rel_error(grad, numeric_grad(loss, arr))
        assert err < TOL, f"relative error {err:.2e}"


def test_block_needs_exactly_one_of_bias_and_batch_norm():
    x, w, b, bn, _ = arrays(3, bn=True)
    with pytest.raises(ValueError, match="neither"):
        ops.conv_block_forward(x, w, None, None, "im2col", 2, False)
    with pytest.raises(ValueError, match="both"):
        ops.conv_block_forward(x, w, np.zeros(3), bn, "im2col", 2, False)
