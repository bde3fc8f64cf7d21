"""The GPU code path (minisiamese.gpu and every CuPy branch) run on the CPU
through tests/fake_cupy.py: CuPy's role played by NumPy, the kernels by their
host build.  Results must match the NumPy path."""
import sys

import numpy as np
import pytest

import fake_cupy
from minisiamese import ModelConfig, SiameseNet, gpu
from minisiamese.backend import get_array_module, get_backend
from minisiamese.gradcheck import rel_error


@pytest.fixture
def cupy(shim, monkeypatch):
    mod = fake_cupy.make(shim)
    monkeypatch.setitem(sys.modules, "cupy", mod)
    gpu._module.cache_clear()
    yield mod
    gpu._module.cache_clear()


TINY = ModelConfig(input_size=24, conv_filters=(4, 6, 8), conv_kernels=(3, 3, 2), dense_units=10, dropout=0.0)


def test_backend_picks_the_stand_in(cupy):
    assert get_backend("gpu") is cupy
    assert get_array_module(cupy.zeros(3)) is cupy


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_siamese_net_loss_and_grads_match_numpy(cupy, dtype, rng):
    cpu = SiameseNet(TINY, seed=2, dtype=dtype)
    dev = SiameseNet(TINY, seed=2, dtype=dtype, backend="gpu")
    assert isinstance(dev.params["conv1.w"], cupy.ndarray)
    x1, x2 = rng.random((5, 1, 24, 24)), rng.random((5, 1, 24, 24))
    y = np.array([1, 0, 1, 1, 0])
    lc, gc = cpu.loss_and_grads(x1, x2, y)
    ld, gd = dev.loss_and_grads(x1, x2, y)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    assert abs(lc - ld) <= tol * abs(lc)
    for k in gc:
        assert isinstance(gd[k], cupy.ndarray), k
        assert rel_error(gd[k], gc[k]) <= tol, k
    np.testing.assert_allclose(dev.predict_proba(x1, x2), cpu.predict_proba(x1, x2), rtol=tol)
    assert gpu._module.cache_info().currsize == 3          # im2col.cu, maxpool.cu, elementwise.cu all ran


def test_adam_steps_match_numpy(cupy, rng):
    from minisiamese import Adam
    w = rng.standard_normal(300).astype(np.float32)
    host, dev = {"w": w.copy()}, {"w": cupy.asarray(w)}
    a, b = Adam(lr=1e-2, beta1=0.5), Adam(lr=1e-2, beta1=0.5)
    for _ in range(3):
        g = rng.standard_normal(300).astype(np.float32)
        a.step(host, {"w": g})
        b.step(dev, {"w": cupy.asarray(g)})
    assert rel_error(dev["w"], host["w"]) <= 1e-5


def test_training_on_the_gpu_path_matches_cpu(cupy, tmp_path):
    from fixtures import make_dataset, tiny_config
    from minisiamese.experiment import ExperimentConfig
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
