"""The GPU path against the NumPy path, on two stand-ins for the device:

* ``cuda``: real CuPy on a CUDA device (skipped where there is none);
* ``host-shim``: tests/fake_cupy.py -- NumPy arrays typed as CuPy's and the
  kernels' host build -- so every line of minisiamese.gpu and every CuPy branch
  also runs in CI, without a GPU.

Tolerances as the GPU issue sets them: relative error <= 1e-5 in float32 for the
elementwise kernels, <= 1e-4 after GEMMs; float64 gradient checks pass too."""
import numpy as np
import pytest

from minisiamese import Adam, ModelConfig, SiameseNet, gpu, ops
from minisiamese.backend import get_array_module, get_backend, to_numpy
from minisiamese.gradcheck import numeric_grad, rel_error
from minisiamese.im2col import col2im, im2col

def test_backend_and_array_module(cp):
    assert get_backend("gpu") is cp
    assert get_array_module(cp.zeros(3)) is cp


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


def test_float64_conv_gradient_check(cp, rng):
    x, w, b = (cp.asarray(rng.standard_normal(s)) for s in ((2, 7, 6, 3), (4, 3, 3, 2), (4,)))
    out, cache = ops.conv2d_forward(x, w, b, 2, 1)
    g = cp.asarray(rng.standard_normal(out.shape))
    dx, dw, db = ops.conv2d_backward(g, cache)
    f = lambda: float(cp.sum(ops.conv2d_forward(x, w, b, 2, 1)[0] * g))  # noqa: E731
    for grad, arr in ((dx, x), (dw, w), (db, b)):
        assert rel_error(grad, numeric_grad(f, arr)) < 1e-7


BEYOND_KOCH = dict(batch_norm=True, head=("abs", "sq", "prod", "cos"), embedding_activation="relu", flip_average=True)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-4), (np.float64, 1e-12)])
@pytest.mark.parametrize("extra", [{}, BEYOND_KOCH], ids=["koch", "batchnorm+head+flip"])
def test_siamese_net_matches_cpu(cp, rng, dtype, tol, extra):
    cfg = ModelConfig(input_size=24, conv_filters=(4, 6, 8), conv_kernels=(3, 3, 2), dense_units=10, **extra)
    cpu = SiameseNet(cfg, seed=2, dtype=dtype, backend="cpu")
    dev = SiameseNet(cfg, seed=2, dtype=dtype, backend="gpu")
    assert get_array_module(dev.params["conv1.w"]) is cp
    x1, x2 = rng.random((5, 1, 24, 24)), rng.random((5, 1, 24, 24))
    y = np.array([1, 0, 1, 1, 0])
    lc, gc = cpu.loss_and_grads(x1, x2, y)
    ld, gd = dev.loss_and_grads(x1, x2, y)
    assert abs(lc - ld) <= tol * abs(lc)
    for k in gc:
        assert get_array_module(gd[k]) is cp and rel_error(gd[k], gc[k]) <= tol, k
    np.testing.assert_allclose(dev.predict_proba(x1, x2), cpu.predict_proba(x1, x2), rtol=tol)
    for k in cpu.state_dict():                             # batch norm's running statistics too
        np.testing.assert_allclose(to_numpy(dev.state_dict()[k]), cpu.state_dict()[k], rtol=tol, atol=tol, err_msg=k)
    assert gpu._module.cache_info().currsize == 3          # im2col.cu, maxpool.cu, elementwise.cu all ran


def test_training_matches_cpu(cp, tmp_path):
    from fixtures import make_dataset, tiny_config
    from minisiamese.runconfig import ExperimentConfig
    from minisiamese.train import Trainer
    data = str(tmp_path / "data")
    make_dataset(data, people=8, per_person=4, pairs_per_class=8)
    cfg = ExperimentConfig.from_file(tiny_config(str(tmp_path / "c.json"), epochs=2))
    runs = {}
    for device in ("cpu", "gpu"):
        tr = Trainer(cfg, str(tmp_path / device), data, device=device, cache_dir=str(tmp_path / "cache"),
                     log=lambda m: None, progress=False)
        runs[device] = tr.fit()
    for a, b in zip(runs["cpu"], runs["gpu"]):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * abs(a["loss"])
        assert abs(a["val_loss"] - b["val_loss"]) <= 1e-4 * abs(a["val_loss"])
