"""Calibration (issue 36): Platt's fit checked against central differences and
its optimality conditions, ECE and Brier on hand-computed cases, the stored
calibration in the model file, a calibrated run end to end, and verify/identify
with the model that ships."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cli
from bounds import EXP_ULPS, unit_roundoff
from fixtures import make_dataset, tiny_config
from minisiamese import calibration as cal
from minisiamese import pretrained
from minisiamese.checkpoint import read_model_file, save_model
from minisiamese.fileio import CheckpointError, load_arrays, save_arrays
from minisiamese.model import SiameseNet, load_model
from minisiamese.config import ModelConfig
from fixtures import TINY_MODEL


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfw")
    make_dataset(str(root), people=8, per_person=4, pairs_per_class=10)
    return str(root)


def scores(seed, n=400, a=0.6, c=-1.5):
    """Logits and labels drawn so that the true calibration is sigmoid(a z + c)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, n)
    y = (rng.random(n) < cal.sigmoid(a * z + c)).astype(np.int64)
    return z, y


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10 ** 6), a=st.floats(-3, 3), c=st.floats(-3, 3))
def test_platt_gradient_and_hessian_match_central_differences(seed, a, c):
    z, y = scores(seed, n=50)
    t = cal.platt_targets(y)
    _, grad, hess = cal.platt_loss([a, c], z, t)
    h = 1e-6
    for k in range(2):
        e = np.eye(2)[k] * h
        lp, gp, _ = cal.platt_loss(np.array([a, c]) + e, z, t)
        lm, gm, _ = cal.platt_loss(np.array([a, c]) - e, z, t)
        assert (lp - lm) / (2 * h) == pytest.approx(grad[k], rel=1e-5, abs=1e-8)
        np.testing.assert_allclose((gp - gm) / (2 * h), hess[:, k], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_platt_finds_the_optimum(seed):
    z, y = scores(seed)
    ac = cal.fit_platt(z, y)
    t = cal.platt_targets(y)
    loss, grad, _ = cal.platt_loss(ac, z, t)
    assert np.linalg.norm(grad) < 1e-8                                 # first-order optimality
    for step in ([1e-3, 0], [-1e-3, 0], [0, 1e-3], [0, -1e-3]):        # convex: every neighbour is higher
        assert cal.platt_loss(ac + np.array(step), z, t)[0] > loss
    assert cal.platt_loss([1.0, 0.0], z, t)[0] > loss                 # better than the raw sigmoid
    assert ac[0] == pytest.approx(0.6, abs=0.2) and ac[1] == pytest.approx(-1.5, abs=0.5)   # 400 draws


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10 ** 6), k=st.integers(1, 4))
def test_logistic_gradient_and_hessian_match_central_differences(seed, k):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 2, (60, k))
    w = rng.normal(0, 1, k)
    t = cal.platt_targets((rng.random(60) < 0.5).astype(np.int64))
    _, grad, hess = cal.logistic_loss(w, X, t)
    h = 1e-6
    for j in range(k):
        e = np.eye(k)[j] * h
        lp, gp, _ = cal.logistic_loss(w + e, X, t)
        lm, gm, _ = cal.logistic_loss(w - e, X, t)
        assert (lp - lm) / (2 * h) == pytest.approx(grad[j], rel=1e-5, abs=1e-8)
        np.testing.assert_allclose((gp - gm) / (2 * h), hess[:, j], rtol=1e-5, atol=1e-8)


def test_fit_logistic_finds_the_optimum_of_three_features():
    z, y = scores(3)
    X = np.stack([-np.logaddexp(0, -z), np.logaddexp(0, z), np.ones_like(z)], axis=1)   # ln p, -ln(1 - p), 1
    w = cal.fit_logistic(X, y, [1.0, 1.0, 0.0])
    t = cal.platt_targets(y)
    loss, grad, _ = cal.logistic_loss(w, X, t)
    assert np.linalg.norm(grad) < 1e-8
    assert loss < cal.logistic_loss([1.0, 1.0, 0.0], X, t)[0]        # the start is the raw sigmoid
    for j in range(3):
        assert cal.logistic_loss(w + 1e-3 * np.eye(3)[j], X, t)[0] > loss


def test_fit_platt_stays_finite_on_separable_scores_and_refuses_the_unfittable():
    z = np.r_[np.linspace(-5, -1, 20), np.linspace(1, 5, 20)]
    y = np.r_[np.zeros(20), np.ones(20)]
    ac = cal.fit_platt(z, y)                        # Platt's targets keep the optimum finite
    assert np.all(np.isfinite(ac)) and ac[0] > 0
    with pytest.raises(ValueError, match="same-person and different-person"):
        cal.fit_platt(z, np.ones(40))
    with pytest.raises(ValueError, match="not positive"):
        cal.fit_platt(z, 1 - y)                     # inverted scores: a < 0 is refused
    with pytest.raises(ValueError, match="finite logits"):
        cal.fit_platt(np.r_[z[:-1], np.nan], y)


def test_ece_and_brier_on_a_hand_computed_case():
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.95, 0.95, 0.10, 0.50, 0.50])
    # bins (15 of width 1/15): {0.10} -> bin 1, {0.50, 0.50} -> bin 7, {0.95, 0.95} -> bin 14
    # |0.10 - 1| * 1/5 + |0.50 - 0.5| * 2/5 + |0.95 - 0.5| * 2/5 = 0.18 + 0 + 0.18
    assert cal.ece(y, p) == pytest.approx(0.36, abs=1e-12)
    assert cal.brier(y, p) == pytest.approx((0.05 ** 2 + 0.95 ** 2 + 0.9 ** 2 + 0.25 + 0.25) / 5, abs=1e-12)
    assert cal.ece(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0       # p = 1 falls in the last bin


def test_map_threshold_makes_the_same_decisions():
    z, _ = scores(3)
    ac = np.array([0.4, -1.2])
    for t in (0.02, 0.14, 0.5, 0.9):
        raw, calibrated = cal.sigmoid(z) >= t, cal.apply_platt(z, ac) >= cal.map_threshold(t, ac)
        near = np.abs(z - np.log(t / (1 - t))) < 1e-9              # at the boundary itself rounding decides
        assert np.array_equal(raw[~near], calibrated[~near])
    assert cal.map_threshold(0.3, None) == 0.3
    # best_threshold can sit just outside [0, 1] (nothing or everything 'same'): it stays there, deciding alike
    for t in (1.0005, -0.0005):
        assert cal.map_threshold(t, ac) == t
        extreme = np.array([-800.0, 40.0, 80.0])
        assert np.array_equal(cal.sigmoid(extreme) >= t, cal.apply_platt(extreme, ac) >= cal.map_threshold(t, ac))


def tiny_net(seed=0):
    return SiameseNet(ModelConfig.from_dict(TINY_MODEL), seed=seed)


def test_model_file_keeps_the_calibration_and_score_applies_it(tmp_path, rng):
    net = tiny_net()
    x1, x2 = rng.random((5, 1, 24, 24)), rng.random((5, 1, 24, 24))
    raw = net.predict_proba(x1, x2)
    net.calibration = np.array([0.5, 0.25])
    save_model(str(tmp_path / "m.npz"), net)
    again = load_model(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(again.calibration, [0.5, 0.25])
    z = again.head_logits(again.embed(x1), again.embed(x2))
    np.testing.assert_array_equal(again.predict_proba(x1, x2), cal.apply_platt(z, [0.5, 0.25]))
    # the float32 sigmoid of the same float32 logit against the float64 one: exp (<= 4 ulp = 8 u), 1 + e,
    # the division and the cast: (2 * EXP_ULPS + 3) u relative, u = 2**-24 (tests/bounds.py)
    np.testing.assert_allclose(cal.sigmoid(z), raw, rtol=(2 * EXP_ULPS + 3) * unit_roundoff(np.float32), atol=0)
    plain = tiny_net()
    save_model(str(tmp_path / "plain.npz"), plain)
    assert load_model(str(tmp_path / "plain.npz")).calibration is None
    assert "extra/calibration" not in load_arrays(str(tmp_path / "plain.npz"))


@pytest.mark.parametrize("bad", [np.array([0.0, 1.0]), np.array([1.0, np.inf]), np.array([1.0]),
                                 np.array([1, 2])])
def test_a_damaged_calibration_names_the_file(tmp_path, bad):
    net = tiny_net()
    path = str(tmp_path / "m.npz")
    save_model(path, net)
    arrays = load_arrays(path)
    arrays["extra/calibration"] = bad
    save_arrays(path, arrays)
    with pytest.raises(CheckpointError, match=r"m\.npz: its calibration must be two finite numbers"):
        read_model_file(path)


def run_cli(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_calibrated_run_decides_at_one_half_and_reports_before_and_after(dataset, tmp_path, capsys):
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=3, calibrate=True)
    out = str(tmp_path / "run")
    common = ["--data-dir", dataset, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    code, stdout, err = run_cli(["train", "--config", cfg, "--out", out] + common, capsys)
    assert code == 0, err
    model = os.path.join(out, "model.npz")
    _, _, extra = read_model_file(model)
    ac = extra["calibration"]
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["val"]["calibrated"]["platt"] == pytest.approx(ac.tolist(), rel=1e-12)
    b = res["before_calibration"]
    for d in (res, b):
        assert 0 <= d["ece"] <= 1 and 0 <= d["brier"] <= 1
    # the raw accuracy at 0.5 in before_calibration is the one a model without calibration reports
    # --batch-size 4: the faces embedded in the batches the run's own evaluation used, so the same float32 sums
    code, stdout, err = run_cli(["evaluate", "--checkpoint", model, "--n-way", "3", "--batch-size", "4"] + common,
                                capsys)
    assert code == 0, err
    ev = json.loads(stdout)
    assert ev["accuracy"] == res["accuracy"] and ev["ece"] == res["ece"] and ev["brier"] == res["brier"]
    # the tuned block decides as the validation threshold does on the raw sigmoid
    assert ev["tuned"]["threshold"] == pytest.approx(cal.map_threshold(float(extra["threshold"]), ac))
    assert os.path.getsize(os.path.join(out, "figures", "reliability.png")) > 1000
    img = os.path.join(dataset, "lfw2", "Person_Ee", "Person_Ee_0001.jpg")
    code, stdout, err = run_cli(["verify", img, img, "--checkpoint", model, "--device", "cpu"], capsys)
    assert code == 0, err
    assert stdout.strip().endswith("at threshold 0.500)") and "calibrated: 'same' at p >= 0.5" in err


def test_resume_of_a_finished_run_with_calibration_on_calibrates_it(dataset, tmp_path, capsys):
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=2)
    out = str(tmp_path / "run")
    common = ["--data-dir", dataset, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet",
              "--config", cfg, "--out", out]
    assert run_cli(["train"] + common, capsys)[0] == 0
    before = read_model_file(os.path.join(out, "model.npz"))
    assert "calibration" not in before[2]
    code, stdout, err = run_cli(["train", "--resume", "--set", "train.calibrate=true"] + common, capsys)
    assert code == 0, err
    after = read_model_file(os.path.join(out, "model.npz"))
    assert after[2]["calibration"].shape == (2,)
    for k in before[1]:                                 # the same weights, now with a calibration
        np.testing.assert_array_equal(after[1][k], before[1][k])
    assert "calibration on the validation pairs" in stdout


def test_verify_without_a_checkpoint_uses_the_shipped_model_and_checks_it(tmp_path, capsys, monkeypatch):
    from PIL import Image
    shipped = os.path.join(os.path.dirname(pretrained.__file__), pretrained.FILE)
    if not os.path.isfile(shipped):
        pytest.skip("no shipped model in this checkout")
    rng = np.random.default_rng(0)
    a, b = str(tmp_path / "a.jpg"), str(tmp_path / "b.png")
    Image.fromarray((rng.random((250, 250)) * 255).astype(np.uint8), "L").save(a)
    Image.fromarray((rng.random((120, 90, 3)) * 255).astype(np.uint8), "RGB").save(b)
    code, stdout, err = run_cli(["verify", a, b, "--device", "cpu"], capsys)
    assert code == 0, err
    assert 0 <= float(stdout.split()[0]) <= 1
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"model: the shipped {pretrained.NAME}") and "LFW-a" in lines[0]
    assert len(lines) == 2 and "b.png: 90x120, colour" in lines[1]       # one line for what is unlike LFW-a
    monkeypatch.setattr(pretrained, "SHA256", "0" * 64)
    code, stdout, err = run_cli(["verify", a, a, "--device", "cpu"], capsys)
    assert code == 2 and "not the model that shipped" in err and len(err.strip().splitlines()) == 1


def kept_run(**fields):
    from minisiamese.report import collect_seeds   # noqa: F401  (the table reads what the kept files hold)
    kept = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results", "seeds")
    res = json.load(open(os.path.join(kept, "bn512w-uncal-s0.json")))
    res.update(fields)
    return res


def test_the_seeds_table_shows_raw_and_calibrated_figures_and_the_checks_refuse_bad_ones():
    from minisiamese import runfiles
    from minisiamese.report import seeds_markdown
    before = {"accuracy_at_half": 0.66, "ece": 0.2, "brier": 0.2}
    runs = {s: kept_run(ece=0.02 + s / 100, brier=0.15, before_calibration=before) for s in (0, 1)}
    for r in runs.values():
        r["view2"]["leak_free"].update(accuracy_at_half=0.78, accuracy_at_threshold=0.77, ece=0.03, brier=0.16,
                                       before_calibration=before)
        assert runfiles.check_results(r, "x.json") is r
    table = "\n".join(seeds_markdown({"bn512w": runs, "old": {0: kept_run()}}))
    assert "### Calibration" in table
    row = next(line for line in table.splitlines() if line.startswith("| bn512w | 0, 1 | 0.660 ± 0.000 →"))
    assert "| 0.200 ± 0.000 → 0.025 ± 0.007 |" in row and "| 0.780 ± 0.000 |" not in row
    section = table[table.index("### Calibration"):]
    assert not any(line.startswith("| old |") for line in section.splitlines())   # uncalibrated runs: no row
    for bad in ({"ece": float("nan")}, {"brier": 1.5}, {"before_calibration": {"ece": "x"}},
                {"before_calibration": [1]}):
        with pytest.raises(Exception, match="damaged results"):
            runfiles.check_results(kept_run(**bad), "x.json")


def test_ece_floor_is_the_ece_of_labels_drawn_from_p():
    """For p = 0.5 everywhere all pairs share one bin, so ECE = |fraction same - 0.5|, whose mean over
    Bernoulli(0.5) labels is known exactly from the binomial distribution."""
    from math import comb
    from minisiamese.calibration import ece_floor
    n = 100
    exact = sum(comb(n, k) / 2 ** n * abs(k / n - 0.5) for k in range(n + 1))       # 0.0398
    mean, lo, hi = ece_floor(np.full(n, 0.5), draws=4000)
    assert abs(mean - exact) < 0.003                     # the simulation's SE is about 0.03 / sqrt(4000) = 0.0005
    assert lo < mean < hi
    # resampled to 4x the pairs: the floor halves (it scales as 1 / sqrt(n))
    bigger, _, _ = ece_floor(np.full(n, 0.5), n=4 * n, draws=4000)
    assert abs(bigger - exact / 2) < 0.002


def test_the_calibration_study_reproduces_the_runs_own_test_figures(tmp_path, capsys):
    """docs/calibration_study.py on a tiny calibrated run: its platt/validation row is the run's stored
    calibration (which it refits, refusing a mismatch), so its test ECE and Brier are the run's."""
    import importlib.util
    data = str(tmp_path / "lfw")
    names = make_dataset(data, people=16, per_person=4, pairs_per_class=10)
    with open(os.path.join(data, "pairs.txt"), "w") as f:        # View 2: 2 folds of 2 + 2 pairs, test people only
        a, b, c, d = names[8:12]
        f.write(f"2\t2\n{a}\t1\t2\n{b}\t1\t3\n{a}\t1\t{b}\t2\n{c}\t1\t{d}\t1\n"
                f"{c}\t2\t3\n{d}\t1\t4\n{a}\t3\t{c}\t4\n{b}\t4\t{d}\t2\n")
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=6, calibrate=True, pairs="identities",
                      pairs_per_epoch=64)
    out = str(tmp_path / "run")
    code, _, err = run_cli(["train", "--config", cfg, "--out", out, "--data-dir", data, "--device", "cpu",
                            "--quiet"], capsys)
    assert code == 0, err
    spec = importlib.util.spec_from_file_location(
        "calibration_study", os.path.join(os.path.dirname(__file__), "..", "docs", "calibration_study.py"))
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    figures = str(tmp_path / "study.json")
    study.main(["--runs", out, "--data-dir", data, "--extra", "40", "--out", figures])
    got = json.load(open(figures))["runs"][out]
    res = json.load(open(os.path.join(out, "results.json")))
    assert got["pairs"] == {"validation": 4, "drawn": 40, "test": 20, "view2_leak_free": 8}
    # pairs from identities: training drew from the training file's people less the validation ones
    assert got["drawn"]["drawn_from_people"] == got["drawn"]["validation_people"] >= 2
    assert got["refit_relative_gap"] < 1e-4
    # the stored calibration on the same float32 logits (faces embedded in the run's batches), through the
    # same float64 map and figures: exactly the run's
    assert got["platt/validation"]["test"]["ece"] == res["ece"]
    assert got["platt/validation"]["test"]["brier"] == res["brier"]
    assert set(got) >= {"platt/validation+drawn", "beta/validation", "platt/in-sample", "beta/in-sample", "floor"}
    for bad, said in ((["--out", str(tmp_path)], "--out .*: not a file that can be written"),    # a folder
                      (["--extra", "1"], "--extra must be an integer >= 2"),
                      (["--runs", str(tmp_path / "nowhere")], "nowhere.*model.npz")):
        with pytest.raises(SystemExit, match=said):
            study.main(["--runs", out, "--data-dir", data] + bad)
