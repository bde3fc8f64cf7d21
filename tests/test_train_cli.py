"""The training protocol (early stopping, checkpoints, resume, numerical
trouble) and the CLI end to end, on a small data set the tests make."""
import json
import os

import numpy as np
import pytest

import cli
from fixtures import make_dataset, tiny_config
from minisiamese import convplan
from minisiamese import train as train_mod
from minisiamese.checkpoint import CheckpointError, read_model_file
from minisiamese.config import ConfigError
from minisiamese.runconfig import ExperimentConfig
from minisiamese.train import Trainer, TrainingError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfw")
    make_dataset(str(root), people=8, per_person=4, pairs_per_class=10)
    return str(root)


def config(tmp_path, **train):
    return ExperimentConfig.from_file(tiny_config(str(tmp_path / "cfg.json"), **train))


def test_early_stopping_restores_the_best_weights(dataset, tmp_path, monkeypatch):
    scripted = iter([1.0, 0.8, 0.9, 0.95, 0.85, 0.7])
    real = train_mod.val_loss_and_acc

    def fake(net, pairset, normalizer, batch_size):
        loss, acc, p = real(net, pairset, normalizer, batch_size)
        return next(scripted, loss), acc, p

    monkeypatch.setattr(train_mod, "val_loss_and_acc", fake)
    tr = Trainer(config(tmp_path, epochs=10, patience=3), str(tmp_path / "run"), dataset,
                 cache_dir=str(tmp_path / "cache"), log=lambda m: None, progress=False)
    history = tr.fit()
    assert len(history) == 5                           # best at epoch 2, then 3 epochs without improvement
    assert tr.best_epoch == 1
    _, best, extra = read_model_file(tr.best_path)
    assert int(extra["epoch"]) == 1
    _, final, _ = read_model_file(tr.model_path)
    for k in best:
        np.testing.assert_array_equal(final[k], best[k])
    assert [round(h["lr"] / 1e-3, 6) for h in history] == [round(0.99 ** e, 6) for e in range(5)]


def test_early_stopping_can_follow_validation_auc(dataset, tmp_path, monkeypatch):
    """monitor val_auc: higher is better, and the validation loss is ignored
    (here it falls every epoch, as the L2 penalty does while a run collapses)."""
    aucs = iter([0.6, 0.8, 0.7, 0.75, 0.79, 0.9])
    losses = iter([1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    real = train_mod.val_loss_and_acc

    def fake(net, pairset, normalizer, batch_size):
        _, acc, p = real(net, pairset, normalizer, batch_size)
        return next(losses, 0.4), acc, p

    monkeypatch.setattr(train_mod, "val_loss_and_acc", fake)
    monkeypatch.setattr(train_mod, "roc_auc", lambda y, p: next(aucs, 0.5))
    tr = Trainer(config(tmp_path, epochs=10, patience=3, monitor="val_auc"), str(tmp_path / "run"), dataset,
                 cache_dir=str(tmp_path / "cache"), log=lambda m: None, progress=False)
    history = tr.fit()
    assert [h["val_auc"] for h in history] == [0.6, 0.8, 0.7, 0.75, 0.79]
    assert tr.best_epoch == 1
    _, extra = read_model_file(tr.best_path)[1:]
    assert int(extra["epoch"]) == 1


@pytest.mark.parametrize("window, epochs_run, best", [(1, 5, 1), (3, 9, 5)])
def test_a_monitor_window_follows_the_mean_of_the_last_epochs(dataset, tmp_path, monkeypatch, window, epochs_run,
                                                               best):
    """One lucky epoch (0.8 at epoch 2) decides a window of 1: it is kept, and
    three epochs later training stops.  Over a window of 3 the means are 0.6,
    0.7, 0.673, 0.723, 0.72, 0.77, 0.753, 0.723, 0.7: epoch 6 ends the best
    window, and three epochs later training stops, with epoch 6's weights."""
    aucs = iter([0.6, 0.8, 0.62, 0.75, 0.79, 0.77, 0.70, 0.70, 0.70, 0.70])
    monkeypatch.setattr(train_mod, "roc_auc", lambda y, p: next(aucs, 0.5))
    tr = Trainer(config(tmp_path, epochs=10, patience=3, monitor="val_auc", monitor_window=window),
                 str(tmp_path / "run"), dataset, cache_dir=str(tmp_path / "cache"), log=lambda m: None,
                 progress=False)
    history = tr.fit()
    assert len(history) == epochs_run and tr.best_epoch == best
    assert int(read_model_file(tr.best_path)[2]["epoch"]) == best


def test_the_monitored_figure_is_the_mean_over_the_window():
    history = [{"val_auc": a, "val_loss": 1 - a} for a in (0.5, 0.7, 0.6)]
    now = {"val_auc": 0.9, "val_loss": 0.1}
    assert train_mod.monitored(history, now, "val_auc", 1) == 0.9
    assert train_mod.monitored(history, now, "val_auc", 2) == pytest.approx(0.75)
    assert train_mod.monitored(history, now, "val_loss", 3) == pytest.approx((0.3 + 0.4 + 0.1) / 3)
    assert train_mod.monitored(history, now, "val_auc", 9) == pytest.approx((0.5 + 0.7 + 0.6 + 0.9) / 4)
    assert train_mod.monitored([], now, "val_auc", 9) == 0.9


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_a_monitor_window_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ConfigError, match="train.monitor_window must be an integer in \\[1, 1000\\]"):
        config(tmp_path, monitor_window=bad)


def test_monitor_must_be_known(tmp_path):
    with pytest.raises(ConfigError, match="train.monitor must be one of"):
        config(tmp_path, monitor="val_accuracy")


def assert_same_run(a, b):
    """Bit-identical weights (and batch norm's running statistics) and the same
    history (wall-clock seconds aside)."""
    state_a, state_b = a.net.state_dict(), b.net.state_dict()
    assert list(state_a) == list(state_b)
    for k in state_a:
        np.testing.assert_array_equal(state_a[k], state_b[k])
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)


def test_resume_is_bit_for_bit(dataset, tmp_path, monkeypatch):
    cfg = config(tmp_path, epochs=3)
    kw = dict(cache_dir=str(tmp_path / "cache"), log=lambda m: None, progress=False)
    straight = Trainer(cfg, str(tmp_path / "a"), dataset, **kw)
    straight.fit()

    real_epoch = Trainer._train_epoch

    def crash_in_third(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", crash_in_third)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, str(tmp_path / "b"), dataset, **kw).fit()
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
    resumed = Trainer(cfg, str(tmp_path / "b"), dataset, **kw)
    resumed.fit(resume=True)
    assert_same_run(straight, resumed)


BEYOND_KOCH = {"batch_norm": True, "head": ["abs", "sq", "prod", "cos"], "embedding_activation": "relu",
               "flip_average": True}


@pytest.mark.parametrize("randomness, model", [(False, {}), (True, {}), (True, BEYOND_KOCH)],
                         ids=["plain", "dropout+augmentation", "batchnorm+head+flip"])
def test_ctrl_c_mid_epoch_then_resume_is_bit_for_bit(dataset, tmp_path, monkeypatch, randomness, model):
    """A stop request between steps 2 and 3 of epoch 2 (what Ctrl-C sets) saves
    the step-level state (generators, batch norm's running statistics included;
    the windowed monitor's best score too); resuming finishes exactly as the
    uninterrupted run."""
    from fixtures import TINY_MODEL
    from minisiamese.model import SiameseNet
    from minisiamese.train import TrainingInterrupted
    cfg = ExperimentConfig.from_dict({
        "model": dict(TINY_MODEL, dropout=0.3 if randomness else 0.0, **model),
        "augment": {"kind": "seed", "copies": 1} if randomness else {},
        "train": dict({"epochs": 3, "batch_size": 8 if randomness else 4, "lr": 1e-3},
                      **({"monitor": "val_auc", "monitor_window": 2} if model else {}))})
    kw = dict(cache_dir=str(tmp_path / "cache"), log=lambda m: None, progress=False)
    straight = Trainer(cfg, str(tmp_path / "a"), dataset, **kw)
    straight.fit()

    interrupted = Trainer(cfg, str(tmp_path / "b"), dataset, **kw)
    real = SiameseNet.loss_and_grads
    calls = {"n": 0}

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4 + 2:                        # epoch 2 (4 steps per epoch either way), step 2
            interrupted._stop_requested = True
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SiameseNet, "loss_and_grads", counting)
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 2, step 3"):
        interrupted.fit()
    monkeypatch.setattr(SiameseNet, "loss_and_grads", real)
    resumed = Trainer(cfg, str(tmp_path / "b"), dataset, **kw)
    resumed.fit(resume=True)
    assert_same_run(straight, resumed)


def test_resume_refuses_another_configuration(dataset, tmp_path):
    kw = dict(cache_dir=str(tmp_path / "cache"), log=lambda m: None, progress=False)
    Trainer(config(tmp_path, epochs=1), str(tmp_path / "r"), dataset, **kw).fit()
    with pytest.raises(TrainingError, match="different configuration"):
        Trainer(config(tmp_path, epochs=1, lr=5e-4), str(tmp_path / "r"), dataset, **kw).fit(resume=True)


def test_resume_with_more_epochs_continues_the_same_run(dataset, tmp_path):
    kw = dict(cache_dir=str(tmp_path / "cache"), log=lambda m: None, progress=False)
    straight = Trainer(config(tmp_path, epochs=3), str(tmp_path / "a"), dataset, **kw)
    straight.fit()
    Trainer(config(tmp_path, epochs=2), str(tmp_path / "b"), dataset, **kw).fit()
    longer = Trainer(config(tmp_path, epochs=3), str(tmp_path / "b"), dataset, **kw)
    longer.fit(resume=True)
    assert len(longer.history) == 3
    assert_same_run(straight, longer)


def test_non_finite_gradient_stops_with_epoch_and_step(dataset, tmp_path, monkeypatch):
    """A gradient that turns NaN at step 2 of epoch 2 (as a diverging run's
    would) stops training with a message naming both; the checkpoint of epoch
    1 stays loadable."""
    from minisiamese.model import SiameseNet
    real = SiameseNet.loss_and_grads
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        loss, grads, probs = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4 + 2:                        # 16 training pairs, batch 4: 4 steps per epoch
            grads["conv1.w"][0, 0, 0, 0] = np.nan
        return loss, grads, probs

    monkeypatch.setattr(SiameseNet, "loss_and_grads", poisoned)
    tr = Trainer(config(tmp_path, epochs=3, batch_size=4), str(tmp_path / "nan"), dataset,
                 cache_dir=str(tmp_path / "cache"), log=lambda m: None, progress=False)
    with pytest.raises(TrainingError, match=r"epoch 2, step 2: the gradient of conv1.w is not finite"):
        tr.fit()
    assert len(tr.history) == 1
    from minisiamese.checkpoint import load_arrays
    assert int(load_arrays(tr.checkpoint_path)["epoch"]) == 0


def run_cli(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_train_evaluate_verify_end_to_end(dataset, tmp_path, capsys):
    """train, evaluate and verify through the CLI.  The float32 probabilities
    depend on the batch composition of the BLAS calls that embed the faces, so
    evaluate runs with the run's batch size to reproduce its AUC."""
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=2)
    out = str(tmp_path / "run")
    common = ["--data-dir", dataset, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    code, stdout, err = run_cli(["train", "--config", cfg, "--out", out] + common, capsys)
    assert code == 0, err
    assert "test (20 pairs): accuracy" in stdout
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["epochs_run"] == 2 and 0 <= res["auc"] <= 1 and res["oneshot_way"] == 3
    for fig in ("history.png", "roc.png", "pairs.png", "oneshot.png"):
        assert os.path.getsize(os.path.join(out, "figures", fig)) > 1000
    # the run's batch size, as the run's own test evaluation: the same float32 batches of faces (in other batches
    # p moves by rounding, and a discrete AUC could flip on a near tie; the nearest here is 2e-3 apart)
    code, stdout, err = run_cli(["evaluate", "--checkpoint", os.path.join(out, "model.npz"), "--n-way", "3",
                                 "--batch-size", "4"] + common, capsys)
    assert code == 0, err
    assert json.loads(stdout)["auc"] == pytest.approx(res["auc"])
    img = os.path.join(dataset, "lfw2", "Person_Ee", "Person_Ee_0001.jpg")
    code, stdout, err = run_cli(["verify", img, img, "--checkpoint", os.path.join(out, "model.npz"),
                                 "--device", "cpu"], capsys)
    assert code == 0 and float(stdout.split()[0]) > 0


@pytest.mark.parametrize("argv, message", [
    (["train", "--data-dir", "/nonexistent/lfw"], "LFW-a not found in '/nonexistent/lfw'.*minisiamese download"),
    (["train", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["evaluate", "--checkpoint", "/nonexistent/model.npz"], "/nonexistent/model.npz: no such file"),
    (["verify", "a.jpg", "b.jpg", "--checkpoint", "/nonexistent/m.npz"], "m.npz: no such file"),
    (["experiments", "--only", "bogus"], r"unknown experiment\(s\) \['bogus'\]"),
])
def test_cli_errors_are_one_line_without_traceback(argv, message, capsys):
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    import re
    assert re.search(message, err), err


def test_cli_bad_config_file(tmp_path, capsys, dataset):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"dense_units": -3}}')
    code, _, err = run_cli(["train", "--config", str(bad), "--data-dir", dataset], capsys)
    assert code == 2 and "bad.json: model: dense_units must be an integer in [1, 65536], got -3" in err
    bad.write_text('{"train": {"epoch": 3}}')
    code, _, err = run_cli(["train", "--config", str(bad), "--data-dir", dataset], capsys)
    assert code == 2 and "unknown key(s) ['epoch'] in train" in err
    bad.write_text('{"train": ')
    code, _, err = run_cli(["train", "--config", str(bad), "--data-dir", dataset], capsys)
    assert code == 2 and "bad.json:1: not valid JSON" in err


def test_cli_experiments_table_and_view2_folds(dataset, tmp_path, capsys, monkeypatch):
    """experiments runs, skips what finished, writes the table with figures; evaluate reads View 2 files."""
    from minisiamese import runconfig
    tiny = ExperimentConfig.from_file(tiny_config(str(tmp_path / "cfg.json"), epochs=1))
    monkeypatch.setitem(runconfig.EXPERIMENTS, "baseline", ("Baseline", tiny))
    monkeypatch.setitem(runconfig.RUN_PRESETS, "baseline", tiny)      # what --only baseline trains
    results = str(tmp_path / "docs" / "results.md")
    argv = ["experiments", "--only", "baseline", "--out", str(tmp_path / "runs"), "--results", results,
            "--data-dir", dataset, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    table = open(results).read()
    assert "| Baseline | " in table and "not run yet" in table and "0.670" in table
    assert os.path.exists(tmp_path / "docs" / "figures" / "results" / "baseline" / "roc.png")
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0 and "finished before" in stdout
    # View 2: 'folds n' then per fold n same + n different lines
    lines = open(os.path.join(dataset, "pairsDevTest.txt")).read().splitlines()[1:]
    pos, neg = lines[:10], lines[10:]
    v2 = tmp_path / "pairs_v2.txt"
    v2.write_text("2\t5\n" + "\n".join(pos[:5] + neg[:5] + pos[5:] + neg[5:]) + "\n")
    code, stdout, err = run_cli(["evaluate", "--checkpoint", str(tmp_path / "runs" / "baseline" / "model.npz"),
                                 "--pairs", str(v2), "--data-dir", dataset, "--cache-dir", str(tmp_path / "cache"),
                                 "--device", "cpu"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert len(res["folds"]) == 2 and 0 <= res["accuracy_mean"] <= 1


def test_cli_experiments_over_seeds(dataset, tmp_path, capsys, monkeypatch):
    """--seeds trains a preset once per seed in runs/seeds/NAME-sSEED, keeps each
    result (with its seed and per-pair test probabilities) in docs/results/seeds/,
    and the table gains the over-seeds section; a bad seed is one line."""
    from minisiamese import runconfig
    tiny = ExperimentConfig.from_file(tiny_config(str(tmp_path / "cfg.json"), epochs=1))
    monkeypatch.setitem(runconfig.RUN_PRESETS, "baseline", tiny)
    results = str(tmp_path / "docs" / "results.md")
    argv = ["experiments", "--only", "baseline", "--seeds", "0", "1", "--out", str(tmp_path / "runs"), "--results",
            results, "--data-dir", dataset, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    for seed in (0, 1):
        kept = json.load(open(tmp_path / "docs" / "results" / "seeds" / f"baseline-s{seed}.json"))
        assert kept["seed"] == seed and len(kept["test_probs"]) == kept["pairs"]
        assert os.path.exists(tmp_path / "runs" / "seeds" / f"baseline-s{seed}" / "model.npz")
    table = open(results).read()
    assert "## Over seeds" in table and "| baseline | image-restricted | 0, 1 |" in table
    assert "experiments --only baseline --seeds 0 1" in table
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0 and stdout.count("finished before") == 2
    code, stdout, _ = run_cli(argv + ["--force"], capsys)            # --force trains again, from scratch
    assert code == 0 and stdout.count("--overwrite: starting over") == 2 and "finished before" not in stdout
    code, _, err = run_cli(argv[:4] + ["-3"] + argv[5:], capsys)
    assert code == 2 and "error: --seeds must be an integer in [0, 4294967295], got -3" in err


def test_packed_face_bundle_stands_in_for_the_jpegs(dataset, tmp_path, capsys):
    bundle = str(tmp_path / "bundle")
    code, stdout, err = run_cli(["pack", "--data-dir", dataset, "--out", bundle, "--size", "24"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(bundle)) == ["faces-24.npz", "pairsDevTest.txt", "pairsDevTrain.txt"]
    from minisiamese.data import load_pairset
    direct = load_pairset(dataset, "pairsDevTrain.txt", None, size=24)
    packed = load_pairset(bundle, "pairsDevTrain.txt", None, size=24)
    np.testing.assert_array_equal(packed.images, direct.images)
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=1)
    code, stdout, err = run_cli(["train", "--config", cfg, "--out", str(tmp_path / "run"), "--data-dir", bundle,
                                 "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    from minisiamese.data import DataError, load_images
    with pytest.raises(DataError, match="faces-24.npz: has no image Nobody/1"):
        load_images(bundle, [("Nobody", 1)], size=24)


def test_a_diverging_learning_rate_is_stopped_not_trained_on(dataset, tmp_path):
    """lr 0.5 with a strong L2 penalty: Adam's first steps blow the weights (and
    the penalty) up by two orders of magnitude, with every number still finite."""
    from fixtures import TINY_MODEL
    cfg = ExperimentConfig.from_dict({"model": dict(TINY_MODEL, l2_conv=0.05, l2_dense=0.05),
                                      "train": {"epochs": 3, "batch_size": 4, "lr": 0.5}})
    tr = Trainer(cfg, str(tmp_path / "div"), dataset, cache_dir=str(tmp_path / "cache"), log=lambda m: None,
                 progress=False)
    with pytest.raises(TrainingError, match=r"epoch 1, step \d+: the loss .* is over 10x the first training "
                                            r"loss .*diverging; the learning rate 0.5 is probably too high"):
        tr.fit()


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="LFW-a not found"):
        cli.main(["train", "--data-dir", "/nonexistent/lfw", "--debug"])


def test_conv_plan_is_logged_stored_and_reused_on_resume(dataset, tmp_path, monkeypatch):
    """The plan resolved at the start is fixed for the run, written to the log
    and the checkpoint, and a resumed run takes it from the checkpoint instead
    of benchmarking again (so it computes exactly what the first run did)."""
    cfg = config(tmp_path, epochs=2)
    lines = []
    first = Trainer(cfg, str(tmp_path / "run"), dataset, cache_dir=str(tmp_path / "cache"), log=lines.append,
                    progress=False)
    first.fit()
    plan_line = next(m for m in lines if m.startswith("conv plan: "))
    assert plan_line.count("conv") - 1 == len(cfg.model.conv_filters) and "auto:" in plan_line
    path = os.path.join(str(tmp_path / "run"), "checkpoint.npz")
    stored = json.loads(str(np.load(path)["conv_algos"]))
    assert stored == first.net.conv_algos and set(stored) <= {"im2col", "fft"}
    # plant a different plan: the resumed run must use it, not resolve its own
    planted = ["fft" if a == "im2col" else "im2col" for a in stored]
    arrays = dict(np.load(path))
    arrays["conv_algos"] = np.array(json.dumps(planted))
    np.savez(path, **arrays)
    monkeypatch.setattr("minisiamese.convplan.resolve", lambda *a, **k: pytest.fail("benchmarked again"))
    again = Trainer(cfg, str(tmp_path / "run"), dataset, cache_dir=str(tmp_path / "cache"), log=lines.append,
                    progress=False)
    again._load_checkpoint()
    assert again.net.conv_algos == planted
    assert [p["algo"] for p in again.conv_plan] == planted
    assert convplan.describe_plan(again.conv_plan).count("from the stored plan; set to auto") == len(planted)
    old = {("conv_plan" if k == "conv_algos" else k): v for k, v in arrays.items()}   # the key before its rename
    np.savez(path, **old)
    again._load_checkpoint()
    assert again.net.conv_algos == planted
    arrays["conv_algos"] = np.array(json.dumps(["fft", "winograd"]))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"checkpoint.npz: damaged training checkpoint \(conv_algos must name "
                                              r"one of \['im2col', 'fft'.*, got \['fft', 'winograd'\]"):
        again._load_checkpoint()
