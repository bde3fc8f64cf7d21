"""The FFT convolution against the loop reference, the im2col path and central
differences; the per-layer algorithm choice and its errors."""
import os

import numpy as np
import pytest
from hypothesis import given

from bounds import gamma, unit_roundoff
from minisiamese import ConfigError, ModelConfig, SiameseNet, convplan, fftconv, im2col, ops, reference
from minisiamese.backend import get_array_module
from minisiamese.gradcheck import numeric_grad, rel_error
from test_gradcheck import TOL
from test_reference import conv_arrays, conv_case


def fft_case():
    """The conv cases of the loop-reference tests (odd and even sizes, KH != KW,
    padding, C = 1) at stride 1, the FFT's only stride: (x, w, b, pad, rng)."""
    def arrays(case):
        x, w, b, r = conv_arrays(case)
        return x, w, b, case[8], r
    return conv_case().map(lambda c: c[:7] + (1,) + c[8:]).map(arrays)


@given(fft_case())
def test_fft_conv_gradients(case):
    """float64 central differences against a random upstream gradient."""
    x, w, b, pad, r = case
    out, cache = fftconv.conv2d_fft_forward(x, w, b, 1, pad)
    g = r.standard_normal(out.shape)
    dx, dw, db = fftconv.conv2d_fft_backward(g, cache)
    loss = lambda: np.sum(fftconv.conv2d_fft_forward(x, w, b, 1, pad)[0] * g)  # noqa: E731
    for grad, arr in ((dx, x), (dw, w), (db, b)):
        err = rel_error(grad, numeric_grad(loss, arr))
        assert err < TOL, f"relative error {err:.2e}"


@given(fft_case())
def test_fft_conv_matches_loop_reference_and_im2col(case):
    """Forward against the nested loops; forward, dx and dw against im2col."""
    x, w, b, pad, r = case
    out, cache = fftconv.conv2d_fft_forward(x, w, b, 1, pad)
    assert rel_error(out, reference.conv2d_ref(x, w, b, 1, pad)) < 1e-12
    ref_out, ref_cache = im2col.im2col_conv2d_forward(x, w, b, 1, pad)
    g = r.standard_normal(out.shape)
    for got, want in zip(fftconv.conv2d_fft_backward(g, cache), im2col.im2col_conv2d_backward(g, ref_cache)):
        assert got.shape == want.shape and got.dtype == want.dtype
        assert rel_error(got, want) < 1e-12


@pytest.mark.parametrize("dtype, ctype", [(np.float32, np.complex64), (np.float64, np.complex128)])
def test_fft_conv_keeps_dtype_and_spectra_in_cache(rng, dtype, ctype):
    x = rng.standard_normal((3, 12, 11, 4)).astype(dtype)
    w = rng.standard_normal((5, 4, 3, 4)).astype(dtype)
    out, cache = fftconv.conv2d_fft_forward(x, w, None, 1, 1)
    assert out.dtype == dtype and out.shape == (3, 12, 10, 5)
    assert cache.xf.dtype == ctype and cache.xf.shape == (3, 14, 7, 4)          # (N, Hp, Wp//2 + 1, C)
    assert cache.wf.shape == (14, 7, 4, 5) and not cache.has_bias
    dx, dw, db = fftconv.conv2d_fft_backward(np.ones_like(out), cache)
    assert dx.dtype == dw.dtype == dtype and db is None
    assert fftconv.conv2d_fft_backward(np.ones_like(out), cache, need_dx=False)[0] is None


def test_float32_agrees_with_im2col_at_network_scale(rng):
    """conv2's shape at a small batch, in float32: the two algorithms differ by rounding only."""
    x = rng.random((4, 48, 48, 64), dtype=np.float32)
    w = (rng.standard_normal((128, 64, 7, 7)) * 0.05).astype(np.float32)
    a, ca = ops.conv2d_forward(x, w, algo="fft")
    b, cb = ops.conv2d_forward(x, w, algo="im2col")
    # an FFT has no elementwise bound; normwise, log2(P) 6.7 u = 4.5e-6 per transform, P = 48^2 (Higham, thm 24.2):
    # 3 transforms, and rel_error divides by 2 max: 6.8e-6 < 1e-5; measured 3e-7 (AVX-512 and AVX2 kernels alike)
    assert rel_error(a, b) < 1e-5
    g = rng.standard_normal(a.shape).astype(np.float32)
    for got, want in zip(ops.conv2d_backward(g, ca)[:2], ops.conv2d_backward(g, cb)[:2]):
        assert rel_error(got, want) < 1e-5


def test_whole_model_fft_agrees_with_im2col_in_float32(rng):
    cfg = ModelConfig(input_size=30, conv_filters=(6, 8, 8), conv_kernels=(5, 3, 2), dense_units=16)
    x1, x2, y = rng.random((6, 1, 30, 30)), rng.random((6, 1, 30, 30)), np.array([1, 0, 1, 0, 0, 1])
    nets = {algo: SiameseNet(cfg.replace(conv_algo=algo), seed=4) for algo in ("im2col", "fft")}
    (l1, g1), (l2, g2) = (nets[a].loss_and_grads(x1, x2, y) for a in ("im2col", "fft"))
    u, z = unit_roundoff(np.float32), nets["im2col"].logits(x1, x2)    # no dropout or BN: the training forward's z
    # estimate (an FFT's error is normwise: log2(P) 6.7 u per transform, Higham thm 24.2): 3 layers x 3 transforms
    dz = 9 * np.log2(30 ** 2) * 6.7 * u * np.abs(z).max()
    # |d loss| <= max |d z| (|BCE'| <= 1) + each side's mean BCE: exp and log1p 8 u each, 3 roundings, gamma_N
    assert abs(l1 - l2) <= dz + 2 * gamma(len(y) + 19, np.float32) * abs(l1)       # ~3e-6; measured 6e-8
    for k in g1:
        # 9 transforms forward (3.5e-5 of a map's norm), as many backward; rel_error halves: 3.5e-5; measured 1e-5
        assert rel_error(g2[k], g1[k]) < 1e-4, k
    assert [s["algo"] for s in nets["fft"].conv_plan(12)] == ["fft"] * 3


def test_per_layer_setting_reaches_each_layer(rng):
    cfg = ModelConfig(input_size=20, conv_filters=(3, 4), conv_kernels=(3, 3), dense_units=5,
                      conv_algo=["im2col", "fft"])
    net = SiameseNet(cfg, seed=0, dtype=np.float64)
    _, (caches, *_rest) = net._tower_forward(rng.random((2, 20, 20, 1)), train=False)
    assert not isinstance(caches[0][0], fftconv.FFTConvCache)
    assert isinstance(caches[1][0], fftconv.FFTConvCache)


@pytest.mark.parametrize("value, words", [
    ("fftw", "conv_algo[0] (layer conv1)"),
    (["im2col", "winograd", "fft", "auto"], "conv_algo[1] (layer conv2)"),
    (["fft", "fft"], "one algorithm per conv layer"),
    (3, "conv_algo must be one of"),
])
def test_bad_algorithm_settings_name_the_layer(value, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(conv_algo=value)
    with pytest.raises(ConfigError, match="conv_algo"):
        ModelConfig.from_dict({"conv_algo": value}, source="c.json")


def conv_auto(x, w, b=None, stride=1, pad=0):
    """A conv whose algorithm is ``auto``: resolved by convplan first (as the
    model does), since ops.conv2d_forward takes a concrete algorithm only."""
    algo = convplan.resolve("auto", x.shape, w.shape, stride, pad, x.dtype, get_array_module(x))
    return ops.conv2d_forward(x, w, b, stride, pad, algo)


def test_conv2d_forward_takes_a_concrete_algorithm_only(rng):
    x, w = rng.standard_normal((2, 6, 6, 2)), rng.standard_normal((3, 2, 3, 3))
    for algo in ("auto", "Auto", None):
        with pytest.raises(ValueError, match=repr(algo)):
            ops.conv2d_forward(x, w, algo=algo)
        with pytest.raises(ValueError, match=repr(algo)):
            ops.conv_block_forward(x, w, np.zeros(3), None, algo, 2, False)
    with pytest.raises(ValueError, match="resolved"):
        ops.conv2d_forward(x, w, algo="auto")


def test_fft_on_a_strided_layer_is_an_error_and_auto_uses_im2col(rng):
    x, w = rng.standard_normal((2, 9, 9, 2)), rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(ValueError, match="'fft' needs stride 1, got stride 2"):
        ops.conv2d_forward(x, w, stride=2, algo="fft")
    with pytest.raises(ValueError, match="needs stride 1"):
        fftconv.conv2d_fft_forward(x, w, None, 2, 0)
    with pytest.raises(ValueError, match="unknown convolution algorithm 'direct'"):
        ops.conv2d_forward(x, w, algo="direct")
    out, cache = conv_auto(x, w, None, 2, 0)
    assert not isinstance(cache, fftconv.FFTConvCache)
    assert convplan.decision(x.shape, w.shape, 2, 0, x.dtype)["reason"] == "strided layer"
    np.testing.assert_allclose(out, reference.conv2d_ref(x, w, np.zeros(3), 2, 0))


def test_auto_benchmarks_once_and_extrapolates(monkeypatch):
    """Probe timings are taken once per layer shape; the FFT's fixed part is
    counted once and the rest scaled to N; the margin decides."""
    calls = []
    probe = ({"im2col": 1.0, "fft": 0.9, "fft_fixed": 0.5}, {"im2col": 32, "fft": 64})
    monkeypatch.setattr(convplan, "_probe", lambda *a: calls.append(a) or probe)
    monkeypatch.setattr(convplan, "DECISIONS", {})
    monkeypatch.setattr(convplan, "_PROBES", {})
    shape, w = (64, 10, 10, 3), (4, 3, 3, 3)
    assert convplan.resolve("auto", shape, w) == "fft"             # im2col 2.0 s, fft 0.5 + 0.4 = 0.9 s
    d = convplan.decision(shape, w)
    assert d["im2col_s"] == pytest.approx(2.0) and d["fft_s"] == pytest.approx(0.9)
    assert convplan.resolve("auto", (256,) + shape[1:], w) == "fft"   # im2col 8 s, fft 0.5 + 0.4 * 4 = 2.1 s
    assert convplan.decision((256,) + shape[1:], w)["fft_s"] == pytest.approx(2.1)
    assert convplan.resolve("auto", (8,) + shape[1:], w) == "im2col"  # im2col 0.25 s, fft 0.55 s
    assert len(calls) == 1                                         # one probe served three batch sizes
    assert [n for _, n in convplan.DECISIONS] == [64, 256, 8]


def test_auto_decides_on_real_timings(rng):
    """A real (small) probe: the choice is one of the two and is remembered."""
    x, w = rng.random((4, 16, 16, 3), dtype=np.float32), rng.random((4, 3, 5, 5), dtype=np.float32)
    out, _ = conv_auto(x, w)
    d = convplan.decision(x.shape, w.shape, 1, 0, np.float32)
    assert d["algo"] in ("im2col", "fft") and d["im2col_s"] > 0 and d["fft_s"] > 0
    # FFT normwise log2(P) 6.7 u = 3.2e-6 per transform, P = 16^2, 3 transforms, halved: 4.8e-6; measured 2.4e-7
    assert rel_error(out, ops.conv2d_forward(x, w, algo="im2col")[0]) < 1e-5


def test_cupy_branch(cp, rng):
    """cupy.fft / cupy.matmul (the host-shim stand-in, or a real device): the
    same numbers as NumPy."""
    x, w, b = rng.standard_normal((2, 9, 8, 3)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    out, cache = ops.conv2d_forward(x, w, b, 1, 1, algo="fft")
    gout, gcache = ops.conv2d_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b), 1, 1, algo="fft")
    assert type(gout).__module__.startswith("cupy") and rel_error(gout, out) < 1e-12
    g = rng.standard_normal(out.shape)
    for got, want in zip(ops.conv2d_backward(cp.asarray(g), gcache), ops.conv2d_backward(g, cache)):
        assert type(got).__module__.startswith("cupy") and rel_error(got, want) < 1e-12


def test_auto_on_a_device_times_both_on_the_whole_batch_and_stores_nothing(cp, rng, monkeypatch, tmp_path):
    """On CuPy arrays ``auto`` probes both algorithms on device arrays of the
    whole batch (no extrapolation), and keeps the timings out of convplan.json
    (which is stamped with the CPU, not the GPU)."""
    monkeypatch.setenv("MINISIAMESE_CACHE", str(tmp_path))
    monkeypatch.setattr(convplan, "DECISIONS", {})
    monkeypatch.setattr(convplan, "_PROBES", {})
    seen = []
    real = convplan._probe
    monkeypatch.setattr(convplan, "_probe", lambda *a: seen.append(a) or real(*a))
    x, w = rng.standard_normal((6, 9, 8, 3)), rng.standard_normal((4, 3, 3, 3))
    out, _ = conv_auto(cp.asarray(x), cp.asarray(w), None, 1, 0)
    assert len(seen) == 1 and seen[0][-1] is cp                  # probed with the device's module
    d = convplan.decision(x.shape, w.shape, 1, 0, x.dtype, xp=cp)
    assert d["algo"] in ("im2col", "fft") and d["im2col_s"] > 0 and d["fft_s"] > 0
    assert d["reason"].startswith("forward + backward timed on 6 (im2col) and 6 (fft) images")
    assert not os.path.exists(convplan.store_path())
    assert rel_error(out, ops.conv2d_forward(x, w, None, 1, 0, algo="im2col")[0]) < 1e-12
    conv_auto(cp.asarray(x[:4]), cp.asarray(w), None, 1, 0)
    assert [a[0][0] for a in seen] == [6, 4]                     # another batch size is timed anew, not scaled


def test_probe_timings_are_kept_per_machine_so_auto_decides_the_same_later(monkeypatch, tmp_path):
    """A later process on the same machine reuses the stored timings (no probe);
    another machine's timings are not used."""
    monkeypatch.setenv("MINISIAMESE_CACHE", str(tmp_path))
    probe = ({"im2col": 1.0, "fft": 0.2, "fft_fixed": 0.1}, {"im2col": 32, "fft": 64})
    calls = []
    monkeypatch.setattr(convplan, "_probe", lambda *a: calls.append(a) or probe)
    for _ in range(2):                                     # two "processes": in-memory state cleared
        monkeypatch.setattr(convplan, "DECISIONS", {})
        monkeypatch.setattr(convplan, "_PROBES", {})
        assert convplan.resolve("auto", (64, 10, 10, 3), (4, 3, 3, 3)) == "fft"
    assert len(calls) == 1 and os.path.exists(convplan.store_path())
    monkeypatch.setattr(convplan, "machine", lambda: {"cpu": "another"})
    monkeypatch.setattr(convplan, "DECISIONS", {})
    monkeypatch.setattr(convplan, "_PROBES", {})
    convplan.resolve("auto", (64, 10, 10, 3), (4, 3, 3, 3))
    assert len(calls) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_fft_conv_and_pool_for_inference(rng, dtype):
    """Pooling each inverse-FFT piece equals the FFT conv followed by max-pool,
    odd output sizes (a trailing row/column dropped) included; the model's
    inference path (which uses it) agrees with its training forward."""
    for shape, pool, pad in (((5, 12, 11, 3), 2, 0), ((3, 9, 9, 2), 3, 1)):
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((4, shape[3], 3, 2)).astype(dtype)
        want = ops.maxpool2d_forward(fftconv.conv2d_fft_forward(x, w, None, 1, pad)[0], pool)[0]
        got = fftconv.conv2d_fft_pool_forward(x, w, pool, pad)
        assert got.shape == want.shape and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    cfg = ModelConfig(input_size=30, conv_filters=(6, 8, 8), conv_kernels=(5, 3, 2), dense_units=16, conv_algo="fft")
    net = SiameseNet(cfg, seed=1, dtype=np.float64)
    x1, x2 = rng.random((4, 1, 30, 30)), rng.random((4, 1, 30, 30))
    np.testing.assert_allclose(net.predict_proba(x1, x2), ops.sigmoid(net._forward(
        net._images(x1, "x1"), net._images(x2, "x2"), False, need_grad=True)[0]), rtol=1e-12)
