"""Optimizer steps against values computed by hand."""
import math

import numpy as np
import pytest

from minisiamese import SGD, Adam, ExponentialDecay


def test_adam_two_steps_by_hand():
    w = {"a.w": np.array([1.0, -2.0])}
    opt = Adam(lr=0.1, beta1=0.5, beta2=0.9, eps=1e-7)
    g1, g2 = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    opt.step(w, {"a.w": g1})
    # step 1: m = 0.5 g1, v = 0.1 g1^2, alpha = 0.1 sqrt(0.1) / 0.5
    m, v = 0.5 * g1, 0.1 * g1 ** 2
    expected = np.array([1.0, -2.0]) - 0.1 * math.sqrt(1 - 0.9) / (1 - 0.5) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(w["a.w"], expected, rtol=1e-12)
    # float64; the first step is lr |g| / (|g| + eps / sqrt(1 - b2)): short of lr by at most lr * 3.2e-7 / 0.5
    np.testing.assert_allclose(w["a.w"], [1.0 - 0.1, -2.0 + 0.1], rtol=0, atol=0.1 * 1e-7 / math.sqrt(1 - 0.9) / 0.5)
    opt.step(w, {"a.w": g2})
    m, v = 0.5 * m + 0.5 * g2, 0.9 * v + 0.1 * g2 ** 2
    expected = expected - 0.1 * math.sqrt(1 - 0.81) / (1 - 0.25) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(w["a.w"], expected, rtol=1e-12)
    assert opt.t == 2


def test_adam_rejects_bad_settings_and_mismatched_grads():
    with pytest.raises(ValueError, match="beta1"):
        Adam(beta1=1.0)
    with pytest.raises(ValueError, match="lr"):
        Adam(lr=0)
    with pytest.raises(ValueError, match="do not match"):
        Adam().step({"a": np.zeros(2)}, {"b": np.zeros(2)})


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [{"w": rng.standard_normal(3)} for _ in range(4)]
    a_params, a = {"w": np.zeros(3)}, Adam(lr=0.01, beta1=0.5)
    for g in grads:
        a.step(a_params, g)
    b_params, b = {"w": np.zeros(3)}, Adam(lr=0.01, beta1=0.5)
    for g in grads[:2]:
        b.step(b_params, g)
    c = Adam(lr=0.01, beta1=0.5)
    c.load_state_dict(b.state_dict(), np)
    for g in grads[2:]:
        c.step(b_params, g)
    np.testing.assert_array_equal(a_params["w"], b_params["w"])


def test_sgd_momentum_per_layer_by_hand():
    params = {"conv1.w": np.array([1.0]), "conv1.b": np.array([0.0]), "dense.w": np.array([2.0])}
    opt = SGD(lr={"conv1": 0.1, "dense.w": 0.01}, momentum={"conv1": 0.5, "dense": 0.9})
    g = {"conv1.w": np.array([1.0]), "conv1.b": np.array([2.0]), "dense.w": np.array([10.0])}
    opt.step(params, g)
    opt.step(params, g)
    # u1 = -eta g; u2 = mu u1 - eta g
    assert params["conv1.w"][0] == pytest.approx(1.0 - 0.1 - (0.5 * 0.1 + 0.1))
    assert params["conv1.b"][0] == pytest.approx(0.0 - 0.2 - (0.5 * 0.2 + 0.2))
    assert params["dense.w"][0] == pytest.approx(2.0 - 0.1 - (0.9 * 0.1 + 0.1))
    with pytest.raises(ValueError, match="no setting for parameter 'out.w'"):
        SGD(lr={"conv1": 0.1}).step({"out.w": np.zeros(1)}, {"out.w": np.zeros(1)})


def test_exponential_decay_one_percent_per_epoch():
    opt = Adam(lr=1e-4)
    decay = ExponentialDecay(0.99)
    assert decay.apply(opt, 0) == 1.0
    assert decay.apply(opt, 10) == pytest.approx(0.99 ** 10)
    w = {"w": np.array([0.0])}
    opt.step(w, {"w": np.array([1.0])})
    # first Adam step moves lr * scale * |g| / (|g| + eps / sqrt(1 - b2)), g = 1: relatively short by < 3.2e-6 (float64)
    assert w["w"][0] == pytest.approx(-1e-4 * 0.99 ** 10, rel=1e-7 / math.sqrt(1 - 0.999))
    with pytest.raises(ValueError):
        ExponentialDecay(1.5)
