"""The fast ops against their nested-loop references in minisiamese.reference."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bounds import assert_within, gamma
from conftest import to_np
from minisiamese import im2col as im2col_module
from minisiamese import ops, reference
from minisiamese.im2col import col2im, im2col


@st.composite
def conv_case(draw):
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 4))
    F = draw(st.integers(1, 4))
    KH = draw(st.integers(1, 4))
    KW = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, KH - 2 * pad), 8))
    W = draw(st.integers(max(1, KW - 2 * pad), 8))
    seed = draw(st.integers(0, 2 ** 31))
    return N, H, W, C, F, KH, KW, stride, pad, seed


def conv_arrays(case):
    """x (N, H, W, C), w (F, C, KH, KW), b (F,) drawn for a conv_case."""
    N, H, W, C, F, KH, KW, stride, pad, seed = case
    r = np.random.default_rng(seed)
    return r.standard_normal((N, H, W, C)), r.standard_normal((F, C, KH, KW)), r.standard_normal(F), r


@given(conv_case())
def test_im2col_matches_loop_reference_index_by_index(case):
    N, H, W, C, F, KH, KW, stride, pad, seed = case
    x = np.random.default_rng(seed).standard_normal((N, H, W, C))
    fast = im2col(x, KH, KW, stride, pad)
    ref = reference.im2col_ref(x, KH, KW, stride, pad)
    assert fast.shape == ref.shape
    np.testing.assert_array_equal(fast, ref)


@given(conv_case())
def test_col2im_matches_loop_reference(case):
    N, H, W, C, F, KH, KW, stride, pad, seed = case
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    cols = np.random.default_rng(seed).standard_normal((N * OH * OW, KH * KW * C))
    fast = col2im(cols, (N, H, W, C), KH, KW, stride, pad)
    ref = reference.col2im_ref(cols, (N, H, W, C), KH, KW, stride, pad)
    np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)


@given(conv_case())
def test_conv_forward_matches_loop_reference(case):
    stride, pad = case[7:9]
    x, w, b, _ = conv_arrays(case)
    out, _ = ops.conv2d_forward(x, w, b, stride, pad)
    np.testing.assert_allclose(out, reference.conv2d_ref(x, w, b, stride, pad), rtol=1e-10, atol=1e-10)


def test_conv_forward_float32_chunked_matches_reference(xp, monkeypatch):
    """Force many small column chunks so the chunk boundaries are exercised."""
    monkeypatch.setattr(im2col_module, "COL_CHUNK_BYTES", 1)
    r = np.random.default_rng(0)
    x, w, b = (r.standard_normal(s).astype(np.float32) for s in ((5, 9, 9, 3), (4, 3, 3, 3), (4,)))
    out, cache = ops.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), 2, 1)
    # both sum b + K = 27 products in float32, in other orders: each within gamma_28 (|b| + sum|x w|) of exact
    terms = reference.conv2d_ref(*(np.abs(a).astype(np.float64) for a in (x, w, b)), 2, 1)
    assert_within(to_np(out), reference.conv2d_ref(x, w, b, 2, 1), 2 * gamma(28, np.float32) * terms, "conv")


@st.composite
def pool_case(draw):
    pool = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(pool, 8)), draw(st.integers(pool, 8))
    ties = draw(st.booleans())
    return N, H, W, C, pool, stride, ties, draw(st.integers(0, 2 ** 31))


@given(pool_case())
def test_maxpool_forward_and_gradient_routing_match_reference(case):
    """Including many ties (small integer values): the gradient must go to the
    first maximum in row-major order, exactly as the loop reference routes it."""
    N, H, W, C, pool, stride, ties, seed = case
    r = np.random.default_rng(seed)
    x = r.integers(0, 3, (N, H, W, C)).astype(np.float64) if ties else r.standard_normal((N, H, W, C))
    out, cache = ops.maxpool2d_forward(x, pool, stride)
    ref_out, ref_dx_of = reference.maxpool_ref(x, pool, stride)
    np.testing.assert_array_equal(out, ref_out)
    dout = r.standard_normal(out.shape)
    np.testing.assert_allclose(ops.maxpool2d_backward(dout, cache), ref_dx_of(dout), rtol=1e-12, atol=1e-12)


def test_maxpool_tie_goes_to_first_maximum():
    x = np.array([[1.0, 5.0], [5.0, 5.0]]).reshape(1, 2, 2, 1)
    out, cache = ops.maxpool2d_forward(x, 2)
    dx = ops.maxpool2d_backward(np.ones((1, 1, 1, 1)), cache)
    assert out.item() == 5.0
    np.testing.assert_array_equal(dx.reshape(2, 2), [[0, 1], [0, 0]])


def test_im2col_col2im_are_adjoint(rng):
    """<im2col(x), c> == <x, col2im(c)>: col2im is the transpose of im2col."""
    x = rng.standard_normal((2, 7, 6, 3))
    cols = im2col(x, 3, 2, 2, 1)
    c = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * c)
    rhs = np.sum(x * col2im(c, x.shape, 3, 2, 2, 1))
    assert abs(lhs - rhs) < 1e-10 * max(1.0, abs(lhs))


def test_backends_agree_on_conv(xp, rng):
    x, w, b = rng.standard_normal((3, 10, 10, 4)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    got, _ = ops.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), 1, 1)
    np.testing.assert_allclose(to_np(got), reference.conv2d_ref(x, w, b, 1, 1), rtol=1e-10, atol=1e-10)


def test_maxpool_2x2_fast_path_with_ties_matches_reference(xp):
    """The 2x2/2 tournament fast path against the loop reference, on values with
    many ties and on odd sizes (the trailing row/column is dropped)."""
    r = np.random.default_rng(7)
    for shape in [(3, 8, 8, 5), (2, 7, 9, 3)]:
        x = r.integers(0, 2, shape).astype(np.float64)
        out, cache = ops.maxpool2d_forward(xp.asarray(x), 2, 2)
        ref_out, ref_dx_of = reference.maxpool_ref(x, 2, 2)
        np.testing.assert_array_equal(to_np(out), ref_out)
        dout = r.standard_normal(ref_out.shape)
        np.testing.assert_array_equal(to_np(ops.maxpool2d_backward(xp.asarray(dout), cache)), ref_dx_of(dout))
