"""SiameseNet, ModelConfig, weights files."""
import json
import zipfile

import numpy as np
import pytest

from conftest import to_np
from minisiamese import (CheckpointError, ConfigError, InputError, ModelConfig, SiameseNet, load_model,
                         save_model)
from minisiamese import ops
from minisiamese.checkpoint import read_model_file

TINY = ModelConfig(input_size=20, conv_filters=(3, 4), conv_kernels=(3, 3), dense_units=5)


def pairs(rng, n, size=20):
    return rng.random((n, 1, size, size)), rng.random((n, 1, size, size)), rng.integers(0, 2, n)


def test_parameter_counts_match_the_seed_report():
    assert ModelConfig.preset("baseline").num_params() == 38_951_745
    assert ModelConfig.preset("narrow").num_params() == 20_073_281
    assert ModelConfig(dense_units=2048).num_params() == 20_073_281


def test_baseline_layer_shapes():
    shapes = ModelConfig().param_shapes()
    assert list(shapes) == ["conv1.w", "conv1.b", "conv2.w", "conv2.b", "conv3.w", "conv3.b",
                            "conv4.w", "conv4.b", "dense.w", "dense.b", "out.w", "out.b"]
    assert shapes["conv1.w"] == (64, 1, 10, 10) and shapes["conv2.w"] == (128, 64, 7, 7)
    assert shapes["dense.w"] == (6 * 6 * 256, 4096)
    assert ModelConfig().feature_shape() == (6, 6, 256)


BEYOND = [dict(batch_norm=True), dict(batch_norm=True, head=("abs", "sq", "prod", "cos"), embedding_activation="relu"),
          dict(batch_norm=True, head=("abs", "sq"), embedding_activation="none", dense_units=7),
          dict(head=("sq", "cos"), embedding_activation="none")]


@pytest.mark.parametrize("dropout, extra", [(0.0, {}), (0.3, {})] + [(0.0, e) for e in BEYOND] + [(0.3, BEYOND[1])])
def test_loss_and_grads_directional_derivative(dropout, extra, rng):
    """(L(p + h v) - L(p - h v)) / 2h == <grad L, v> for a random direction v
    over all parameters at once (dropout masks held fixed by reseeding); with
    batch norm in training mode, through the batch statistics."""
    cfg = TINY.replace(dropout=dropout, l2_conv=1e-2, l2_dense=1e-3, **extra)
    net = SiameseNet(cfg, seed=1, dtype=np.float64)
    x1, x2, y = pairs(rng, 3)

    def loss():
        net.rng = np.random.default_rng(99)
        return net.loss_and_grads(x1, x2, y)[0]

    net.rng = np.random.default_rng(99)
    _, grads = net.loss_and_grads(x1, x2, y)
    direction = {k: rng.standard_normal(v.shape) for k, v in net.params.items()}
    analytic = sum(float(np.sum(grads[k] * direction[k])) for k in grads)
    base = {k: v.copy() for k, v in net.params.items()}
    h = 1e-6
    values = []
    for sign in (+1, -1):
        for k in net.params:
            net.params[k][...] = base[k] + sign * h * direction[k]
        values.append(loss())
    numeric = (values[0] - values[1]) / (2 * h)
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)


def test_beyond_koch_layers_and_their_state(tmp_path, rng):
    """Batch norm replaces the conv and dense biases by gamma/beta and keeps
    running statistics that training updates, inference uses, and the weights
    file carries; the head's width follows its comparisons."""
    cfg = TINY.replace(batch_norm=True, head=("abs", "sq", "cos"), dense_units=6)
    shapes = cfg.param_shapes()
    assert "conv1.b" not in shapes and "dense.b" not in shapes and shapes["bn1.gamma"] == (3,)
    assert shapes["out.w"] == (6 + 6 + 1, 1) and cfg.buffer_shapes()["bn_dense.var"] == (6,)
    net = SiameseNet(cfg, seed=0, dtype=np.float64)
    x1, x2, y = pairs(rng, 4)
    before = {k: v.copy() for k, v in net.buffers.items()}
    p_eval = net.predict_proba(x1, x2)
    assert all(np.array_equal(before[k], net.buffers[k]) for k in before)        # inference reads, never writes
    net.loss_and_grads(x1, x2, y)
    assert not np.array_equal(before["bn1.mean"], net.buffers["bn1.mean"])       # training updates them
    p_after = net.predict_proba(x1, x2)
    assert not np.allclose(p_eval, p_after)                                      # ...and inference uses them
    np.testing.assert_allclose(p_after, ops.sigmoid(net.logits(x1, x2)), rtol=1e-12)   # embed+score = forward
    save_model(tmp_path / "m.npz", net)
    again = load_model(tmp_path / "m.npz", dtype=np.float64)
    np.testing.assert_allclose(again.predict_proba(x1, x2), p_after, rtol=1e-12)
    for bad in (dict(head=()), dict(head=("abs", "abs")), dict(head=("l2",)), dict(head=([1],)), dict(head=({},)),
                dict(embedding_activation="tanh"),
                dict(batch_norm="yes"), dict(bn_momentum=1.0), dict(flip_average=1)):
        with pytest.raises(ConfigError):
            TINY.replace(**bad)


def test_flip_averaging_embeds_a_face_and_its_mirror(rng):
    """With flip_average the inference embedding is the mean of the image's and
    its mirror's, so a face and its mirror image embed the same; training is unchanged."""
    x1, x2, y = pairs(rng, 3)
    plain = SiameseNet(TINY, seed=2, dtype=np.float64)
    flip = SiameseNet(TINY.replace(flip_average=True), seed=2, dtype=np.float64)
    mirror = x1[:, :, :, ::-1]
    np.testing.assert_allclose(flip.embed(x1), (plain.embed(x1) + plain.embed(mirror)) / 2, rtol=1e-12)
    np.testing.assert_allclose(flip.embed(x1), flip.embed(mirror), rtol=1e-12)
    assert not np.allclose(plain.embed(x1), plain.embed(mirror))
    assert plain.loss_and_grads(x1, x2, y)[0] == flip.loss_and_grads(x1, x2, y)[0]
    np.testing.assert_array_equal(flip.logits(x1, x2, train=True), plain.logits(x1, x2, train=True))  # not in training
    np.testing.assert_allclose(flip.predict_proba(x1, x2), ops.sigmoid(flip.logits(x1, x2)), rtol=1e-12)


def test_gradients_keyed_like_state_dict(rng):
    net = SiameseNet(TINY, seed=0)
    loss, grads = net.loss_and_grads(*pairs(rng, 4))
    assert list(grads) == list(net.state_dict())
    assert all(grads[k].shape == v.shape and grads[k].dtype == np.float32 for k, v in net.state_dict().items())
    assert np.isfinite(loss)


def test_l2_penalty_is_added_to_the_loss(rng):
    x1, x2, y = pairs(rng, 4)
    plain = SiameseNet(TINY.replace(l2_conv=0.0, l2_dense=0.0), seed=0, dtype=np.float64)
    reg = SiameseNet(TINY.replace(l2_conv=1e-3, l2_dense=1e-4), seed=0, dtype=np.float64)
    expected = sum((1e-3 if k.startswith("conv") else 1e-4) * np.sum(v ** 2)
                   for k, v in reg.params.items() if k.endswith(".w"))
    assert reg.loss_and_grads(x1, x2, y)[0] - plain.loss_and_grads(x1, x2, y)[0] == pytest.approx(expected)


def test_predict_proba_shape_range_and_symmetry(device, rng):
    net = SiameseNet(TINY, seed=0, backend=device)
    x1, x2, _ = pairs(rng, 7)
    p = net.predict_proba(x1, x2, batch_size=3)
    assert isinstance(p, np.ndarray) and p.shape == (7,)
    assert np.all((p > 0) & (p < 1))
    # exact: the same batches of 3 faces either way round, and |h1 - h2| = |h2 - h1| in floats
    np.testing.assert_array_equal(p, net.predict_proba(x2, x1, batch_size=3))


def test_same_seed_same_weights_and_outputs(rng):
    x1, x2, y = pairs(rng, 3)
    a, b = SiameseNet(TINY, seed=5), SiameseNet(TINY, seed=5)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert a.loss_and_grads(x1, x2, y)[0] == b.loss_and_grads(x1, x2, y)[0]
    assert not np.array_equal(SiameseNet(TINY, seed=6).params["conv1.w"], a.params["conv1.w"])


@pytest.mark.parametrize("init", ["koch", "glorot"])
def test_initialisations(init):
    net = SiameseNet(ModelConfig(init=init, dense_units=256), seed=0)
    w, b, dw = net.params["conv2.w"], net.params["conv2.b"], net.params["dense.w"]
    if init == "koch":
        assert abs(w.std() - 1e-2) < 1e-3 and abs(dw.std() - 0.2) < 0.01
        assert abs(b.mean() - 0.5) < 0.01 and b.std() < 0.02
    else:
        limit = np.sqrt(6 / (64 * 49 + 128 * 49))
        assert w.max() <= limit and w.min() >= -limit and abs(w.std() - limit / np.sqrt(3)) < 1e-3
        assert np.all(b == 0)


def test_load_state_dict_checks_names_and_shapes():
    net = SiameseNet(TINY)
    state = net.state_dict()
    with pytest.raises(ValueError, match="missing"):
        net.load_state_dict({k: v for k, v in state.items() if k != "out.b"})
    bad = dict(state, **{"conv1.w": np.zeros((3, 1, 4, 4))})
    with pytest.raises(ValueError, match=r"conv1.w has shape \(3, 1, 4, 4\)"):
        net.load_state_dict(bad)
    other = SiameseNet(TINY, seed=9)
    net.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(net.params["dense.w"], other.params["dense.w"])


def test_bad_inputs_raise_clear_errors():
    net = SiameseNet(TINY)
    good = np.zeros((2, 1, 20, 20))
    with pytest.raises(InputError, match=r"x1: expected images of shape \(N, 1, 20, 20\), got \(2, 20, 20\)"):
        net.predict_proba(np.zeros((2, 20, 20)), good)
    with pytest.raises(InputError, match="x2: contains NaN or Inf"):
        bad = good.copy()
        bad[0, 0, 3, 3] = np.nan
        net.predict_proba(good, bad)
    with pytest.raises(InputError, match="x1 has 2 images but x2 has 1"):
        net.predict_proba(good, good[:1])
    with pytest.raises(InputError, match="labels must be 0"):
        net.loss_and_grads(good, good, [0, 2])
    with pytest.raises(InputError, match="3 labels for 2 pairs"):
        net.loss_and_grads(good, good, [0, 1, 1])
    with pytest.raises(InputError, match="dtype"):
        net.predict_proba(good.astype(str), good)


def test_save_load_round_trip(tmp_path, rng):
    net = SiameseNet(TINY.replace(dropout=0.2, init="koch"), seed=3)
    x1, x2, _ = pairs(rng, 4)
    path = tmp_path / "w.npz"
    save_model(path, net, extra={"mean": np.array(0.25)})
    again = load_model(path)
    assert again.config == net.config
    for k in net.params:
        np.testing.assert_array_equal(again.params[k], net.params[k])
    np.testing.assert_array_equal(again.predict_proba(x1, x2), net.predict_proba(x1, x2))
    assert read_model_file(path)[2]["mean"] == 0.25
    with np.load(path, allow_pickle=False) as data:       # nothing in it needs pickle
        assert "config" in data.files


def test_load_rejects_truncated_wrong_and_foreign_files(tmp_path):
    path = tmp_path / "w.npz"
    save_model(path, SiameseNet(TINY))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated.npz: not a readable .npz"):
        load_model(truncated)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.npz"):
        load_model(text)
    with pytest.raises(CheckpointError, match="missing.npz: no such file"):
        load_model(tmp_path / "missing.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a minisiamese weights file"):
        load_model(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array("minisiamese-weights-1"), config=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickled.npz"):
        load_model(pickled)
    # weights that do not fit the stored config
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["param/conv1.w"] = np.zeros((3, 1, 5, 5), np.float32)
    mismatched = tmp_path / "mismatch.npz"
    np.savez(mismatched, **arrays)
    with pytest.raises(CheckpointError, match=r"conv1.w has shape \(3, 1, 5, 5\)"):
        load_model(mismatched)


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    net = SiameseNet(TINY, seed=1)
    save_model(path, net)
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_model(path, SiameseNet(TINY, seed=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]          # no temporary left behind


# ----------------------------------------------------------------------------- config
def test_presets_and_bad_configs():
    assert ModelConfig.preset("dropout").dropout == 0.1
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        ModelConfig.preset("huge")
    for kwargs, msg in [({"dense_units": 0}, r"dense_units must be an integer in \[1, 65536\], got 0"),
                        ({"dense_units": 4.5}, "dense_units"),
                        ({"dense_units": 10 ** 5000}, r"dense_units must be an integer in \[1, 65536\]"),
                        ({"input_size": 1001}, r"input_size must be an integer in \[1, 1000\], got 1001"),
                        ({"dropout": 1.0}, r"dropout must be a rate in \[0, 1\), got 1.0"),
                        ({"l2_conv": -1e-3}, "l2_conv must be a finite number >= 0"),
                        ({"init": "he"}, "init must be one of"),
                        ({"conv_kernels": (10, 7, 4)}, "same length"),
                        ({"input_size": 20}, "does not fit"),
                        ({"conv_filters": (64, -1, 128, 256)}, r"conv_filters\[1\]")]:
        with pytest.raises(ConfigError, match=msg):
            ModelConfig(**kwargs)


def test_huge_integers_in_any_setting_get_a_one_line_error():
    """Through the Python API an integer too long for Python to print (over
    4,300 digits) may reach any setting, alone or inside a list: the message
    describes it instead of failing while it is formatted."""
    from minisiamese.runconfig import ExperimentConfig, TrainConfig
    from minisiamese.augment import AugmentConfig
    huge = 10 ** 5000
    cases = [(lambda: ModelConfig(crop=huge), "crop must be a fraction.*an integer of about 5000 digits"),
             (lambda: ModelConfig(bn_momentum=huge), "bn_momentum must be in"),
             (lambda: ModelConfig(head=(huge,)), "a tuple holding an integer too long to print"),
             (lambda: ExperimentConfig(train=TrainConfig(lr=huge)), r"train.lr must be in \(0, 1\)"),
             (lambda: ExperimentConfig(train=TrainConfig(lr_decay=huge)), "train.lr_decay"),
             (lambda: ExperimentConfig(augment=AugmentConfig(zoom=huge)), r"augment: zoom must be in \[0, 1\]"),
             (lambda: ExperimentConfig(augment=AugmentConfig(copies=huge)), r"copies must be an integer in \[0, 1000\]"),
             (lambda: ExperimentConfig(augment=AugmentConfig(copies=1001)), "got 1001"),
             (lambda: ModelConfig(conv_filters=[huge], conv_kernels=[3, 3]), "a list holding an integer too long"),
             (lambda: ModelConfig(conv_algo=[huge]), "conv_algo a list holding an integer too long"),
             (lambda: ModelConfig(conv_filters=5), "conv_filters must be a list of integers, got 5"),
             (lambda: ModelConfig.from_dict({huge: 1}), r"unknown key\(s\) \['an integer of about 5000 digits'\]"),
             (lambda: ModelConfig.from_dict({1: 1, "a": 2}), r"unknown key\(s\) \['1', 'a'\]")]
    for build, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            build()


def test_config_from_dict_and_json():
    cfg = ModelConfig.from_json(json.dumps({"dense_units": 2048, "dropout": 0.1}))
    assert cfg.dense_units == 2048 and cfg.num_params() == 20_073_281 + 0
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match=r"my.json: unknown key\(s\) \['dense'\]"):
        ModelConfig.from_dict({"dense": 5}, source="my.json")
    with pytest.raises(ConfigError, match=r"my.json: dense_units must be an integer in \[1, 65536\], got '4096'"):
        ModelConfig.from_dict({"dense_units": "4096"}, source="my.json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.from_json("{dense_units: 1}")
    with pytest.raises(ConfigError, match="conv_filters must be a list"):
        ModelConfig.from_dict({"conv_filters": 64})


def test_a_negative_running_variance_is_refused(tmp_path):
    net = SiameseNet(TINY.replace(batch_norm=True), seed=0)
    net.buffers["bn2.var"][0] = -1.0
    save_model(tmp_path / "m.npz", net)
    with pytest.raises(CheckpointError, match="m.npz: bn2.var, a running variance, has negative values"):
        read_model_file(tmp_path / "m.npz")


def test_set_rejects_settings_of_the_wrong_type_and_follows_a_new_layer_count():
    """--set values that are not of their setting's type are named (an unhashable
    list used to be a TypeError); a preset's one conv algorithm follows a
    --set that changes how many conv layers there are."""
    from minisiamese.runconfig import build_config
    for setting, msg in [("train.monitor=[1]", r"train.monitor must be one of \['val_loss', 'val_auc', 'val_oneshot'\], got \[1\]"),
                         ('train.pairs={"a": 1}', "train.pairs must be one of"),
                         ("train.train_pairs=[1]", "train.train_pairs must be the name of a pairs file"),
                         ("train.test_pairs=5", "train.test_pairs must be the name of a pairs file in the data folder, got 5"),
                         ('train.test_pairs=" "', "train.test_pairs must be the name")]:
        with pytest.raises(ConfigError, match=msg):
            build_config(settings=[setting])
    cfg = build_config(settings=["model.conv_filters=[4, 8]", "model.conv_kernels=[5, 3]", "model.input_size=24"])
    assert cfg.model.conv_algo == ("auto", "auto")
    cfg = build_config("bn512", settings=["model.conv_filters=[4]", "model.conv_kernels=[5]", "model.input_size=24"])
    assert cfg.model.conv_algo == ("auto",) and cfg.model.batch_norm                  # the rest of the preset kept
    from minisiamese.runconfig import ExperimentConfig, TrainConfig
    for build, msg in [(lambda: ExperimentConfig(model="x"), "model must be a ModelConfig, got str"),
                       (lambda: ExperimentConfig(train={}), "train must be a TrainConfig, got dict"),
                       (lambda: build_config(epochs="3"), "--epochs must be an integer, got '3'"),
                       (lambda: ExperimentConfig(train=TrainConfig(beta1=np.zeros(3))), r"train.beta1 must be in")]:
        with pytest.raises(ConfigError, match=msg):
            build()
    with pytest.raises(ConfigError, match=r"conv_algo \['fft'\] must name one algorithm per conv layer \(2\)"):
        build_config(settings=["model.conv_filters=[4, 8]", "model.conv_kernels=[5, 3]", "model.input_size=24",
                               'model.conv_algo=["fft"]'])
