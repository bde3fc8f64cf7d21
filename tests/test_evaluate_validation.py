"""`evaluate --validation` and `--flip-average`: a trained model measured again
on its own run's validation split, with the calibration figures, on data the
tests make."""
import json
import os
import shutil

import numpy as np
import pytest

import cli
from bounds import assert_within, gamma
from fixtures import make_dataset, tiny_config
from minisiamese.evaluate import Embeddings, calibration, load_trained, predict
from minisiamese.runconfig import ExperimentConfig
from minisiamese.train import split_training_pairs
from minisiamese.data import load_pairset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data dir, cache dir, run dir) of a 2-epoch run of a batch-norm model
    with flip averaging; its seed and validation fraction are not the defaults,
    so the split can only be rebuilt from what the run recorded."""
    root = tmp_path_factory.mktemp("lfw-val")
    data, cache, run = str(root / "data"), str(root / "cache"), str(root / "run")
    make_dataset(data, people=10, per_person=4, pairs_per_class=15)
    path = tiny_config(str(root / "cfg.json"), epochs=2, val_fraction=0.3)
    cfg = json.load(open(path))
    cfg["model"].update(batch_norm=True, head=["abs", "sq"], flip_average=True)
    json.dump(cfg, open(path, "w"))
    assert cli.main(["train", "--config", path, "--data-dir", data, "--out", run, "--cache-dir", cache,
                     "--device", "cpu", "--quiet", "--seed", "3"]) == 0
    return data, cache, run


def evaluate(trained, capsys, *extra):
    data, cache, run = trained
    capsys.readouterr()
    code = cli.main(["evaluate", "--checkpoint", os.path.join(run, "model.npz"), "--data-dir", data,
                     "--cache-dir", cache, "--device", "cpu", "--validation", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validation_reproduces_what_training_recorded(trained, capsys):
    """Training measured validation through the pair forward pass, evaluation
    through embeddings: other BLAS batches, so float32 probabilities a rounding
    apart; the AUC and accuracy they give are equal unless a p sits that close
    to 0.5 or to one of the other class."""
    code, out, err = evaluate(trained, capsys)
    assert code == 0, err
    res = json.loads(out)
    with open(os.path.join(trained[2], "results.json")) as f:
        recorded = json.load(f)
    assert res["pairs"] == recorded["val"]["pairs"]
    # discrete, so equal: training's p (pair forward) and these (embeddings) differ by rounding, 3e-8 measured, while
    # the nearest p is 1e-5 from 0.5 and 2e-3 from one of the other class; a rank or side that flipped would show
    assert res["auc"] == pytest.approx(recorded["val"]["auc"], abs=1e-9)
    assert res["accuracy"] == pytest.approx(recorded["val"]["accuracy"], abs=1e-9)
    assert res["flip_average"] is True and "oneshot" not in res
    assert res["pairs_file"] == "validation split of pairsDevTrain.txt (seed 3)" and recorded["seed"] == 3
    assert res["training_pairs_checked"] is True


def test_calibration_is_the_mean_probability_and_code_distance_per_class(trained, capsys):
    """The float32 codes depend on the batch composition of the BLAS calls that
    embed them (another batch, another kernel, another order of sums: 1e-6
    apart between an AVX2 and an AVX-512 CPU), so the evaluation runs with one
    batch of every validation face, and the codes here are the same faces
    embedded in the same batch: the same computation.  Only the L1 sums and the
    means differ, here in float64."""
    data, cache, run = trained
    net, normalizer, _ = load_trained(os.path.join(run, "model.npz"))
    t = ExperimentConfig.from_file(os.path.join(run, "config.json")).train
    full = load_pairset(data, t.train_pairs, cache, net.config.input_size, net.config.crop)
    _, val = split_training_pairs(full, t, 3, os.path.join(data, t.train_pairs))
    rows = np.unique(np.concatenate([val.idx1, val.idx2]))          # every face of the pairs, as evaluate takes them
    code, out, err = evaluate(trained, capsys, "--batch-size", str(len(rows)))
    assert code == 0, err
    cal = json.loads(out)["calibration"]
    p = predict(net, normalizer, val, batch_size=len(rows))
    codes = net.embed(normalizer(val.image_batch(rows)), batch_size=len(rows)).astype(np.float64)
    where = {r: k for k, r in enumerate(rows)}
    d = np.array([np.abs(codes[where[a]] - codes[where[b]]).sum() for a, b in zip(val.idx1, val.idx2)])
    same, diff = val.labels == 1, val.labels == 0
    assert cal["p_same_on_same"] == p[same].mean()                   # the same float32 p, the same mean
    assert cal["p_same_on_different"] == p[diff].mean()
    for key, cls in (("code_l1_on_same", same), ("code_l1_on_different", diff)):
        # evaluate sums U float32 |h1 - h2| >= 0: within gamma_U(f32) d; both float64 means of n: gamma_n(f64) each
        U, n = codes.shape[1], int(cls.sum())
        bound = (gamma(U, np.float32) + gamma(U, np.float64) + 2 * gamma(n, np.float64)) * d[cls].mean()
        assert_within(cal[key], d[cls].mean(), bound, key)


def test_calibration_of_a_missing_class_is_none():
    cal = calibration(np.array([1, 1]), np.array([0.2, 0.4]), np.array([3.0, 5.0]))
    assert cal == {"p_same_on_same": pytest.approx(0.3), "p_same_on_different": None,
                   "code_l1_on_same": pytest.approx(4.0), "code_l1_on_different": None}


def test_flip_average_off_overrides_the_models_setting(trained, capsys):
    on = json.loads(evaluate(trained, capsys, "--flip-average", "on")[1])
    code, out, err = evaluate(trained, capsys, "--flip-average", "off")
    assert code == 0, err
    off = json.loads(out)
    assert off["flip_average"] is False and on["flip_average"] is True
    assert off["calibration"]["code_l1_on_same"] != pytest.approx(on["calibration"]["code_l1_on_same"])
    net, _, _ = load_trained(os.path.join(trained[2], "model.npz"), flip_average=False)
    assert net.config.flip_average is False


def test_flip_average_applies_to_the_test_pairs_too(trained, capsys):
    data, cache, run = trained
    outs = []
    for flip in ("on", "off"):
        capsys.readouterr()
        assert cli.main(["evaluate", "--checkpoint", os.path.join(run, "model.npz"), "--data-dir", data,
                         "--cache-dir", cache, "--device", "cpu", "--n-way", "3", "--flip-average", flip]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert [o["flip_average"] for o in outs] == [True, False]
    assert outs[0]["calibration"] != outs[1]["calibration"]


def test_a_model_without_its_run_is_refused_by_name(trained, tmp_path, capsys):
    data, cache, run = trained
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(os.path.join(run, "model.npz"), alone / "model.npz")
    code = cli.main(["evaluate", "--checkpoint", str(alone / "model.npz"), "--data-dir", data,
                     "--cache-dir", cache, "--device", "cpu", "--validation"])
    err = capsys.readouterr().err
    assert code != 0 and str(alone) in err and "validation split" in err and "Traceback" not in err


def test_a_damaged_results_file_is_refused_by_name(trained, tmp_path, capsys):
    data, cache, run = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "results.json").write_text("{not json")
    code = cli.main(["evaluate", "--checkpoint", str(copy / "model.npz"), "--data-dir", data,
                     "--cache-dir", cache, "--device", "cpu", "--validation"])
    err = capsys.readouterr().err
    assert code != 0 and str(copy) in err and "Traceback" not in err


def test_pairs_and_validation_are_exclusive(trained, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "--validation", "--pairs", "pairsDevTest.txt"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("damage, says", [({"seed": "x"}, "seed 'x' is not an integer"),
                                          ({"seed": True}, "seed True is not an integer"),
                                          ({"config": None}, "no 'config' in it"),
                                          ({"config": {"train": {"val_fraction": 7}}}, "train.val_fraction")])
def test_a_results_file_without_a_usable_seed_or_config_is_refused(trained, tmp_path, capsys, damage, says):
    data, cache, run = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    res = json.load(open(copy / "results.json"))
    for k, v in damage.items():
        if v is None:
            del res[k]
        else:
            res[k] = v
    json.dump(res, open(copy / "results.json", "w"))
    code = cli.main(["evaluate", "--checkpoint", str(copy / "model.npz"), "--data-dir", data,
                     "--cache-dir", cache, "--device", "cpu", "--validation"])
    err = capsys.readouterr().err
    assert code != 0 and str(copy / "results.json") in err and says in err and "Traceback" not in err


@pytest.mark.parametrize("damage, name, says", [
    (lambda run: json.dump(dict(json.load(open(run / "results.json")), accuracy=2.0), open(run / "results.json", "w")),
     "results.json", "damaged results (accuracy must be a number in [0, 1], got 2.0)"),
    (lambda run: (os.remove(run / "results.json"), (run / "checkpoint.npz").write_bytes(b"not a zip")),
     "checkpoint.npz", "checkpoint.npz")])
def test_the_runs_files_are_read_through_their_checked_readers(trained, tmp_path, capsys, damage, name, says):
    """results.json is read by runfiles.read_results, checkpoint.npz by runfiles.read_checkpoint: what they
    refuse, evaluate --validation refuses, naming the file."""
    data, cache, run = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    damage(copy)
    code = cli.main(["evaluate", "--checkpoint", str(copy / "model.npz"), "--data-dir", data,
                     "--cache-dir", cache, "--device", "cpu", "--validation"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"cannot tell how the run of {copy / 'model.npz'} split the validation pairs: {copy / name}" in err
    assert says in err


def test_without_results_the_checkpoint_tells_the_split(trained, tmp_path, capsys):
    """A run stopped before its evaluation has only checkpoint.npz: the split comes from it."""
    code, out, err = evaluate(trained, capsys)
    whole = json.loads(out)
    data, cache, run = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    os.remove(copy / "results.json")
    code = cli.main(["evaluate", "--checkpoint", str(copy / "model.npz"), "--data-dir", data,
                     "--cache-dir", cache, "--device", "cpu", "--validation"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["auc"] == whole["auc"] and res["pairs_file"] == whole["pairs_file"]


@pytest.mark.parametrize("mode", [["--validation"], ["--n-way", "3"]])
def test_an_evaluation_into_a_run_folder_is_refused_and_the_run_kept(trained, capsys, mode):
    data, cache, run = trained
    before = open(os.path.join(run, "results.json")).read()
    code = cli.main(["evaluate", "--checkpoint", os.path.join(run, "model.npz"), "--data-dir", data,
                     "--cache-dir", cache, "--device", "cpu", "--out", run, *mode])
    err = capsys.readouterr().err
    assert code != 0 and f"--out {run}: holds a training run" in err
    assert open(os.path.join(run, "results.json")).read() == before


def test_other_training_pairs_are_refused_by_name(trained, tmp_path, capsys):
    """The run's checkpoint records the training pairs file it read: a
    different one cannot rebuild its split, and says so."""
    data, cache, run = trained
    other = tmp_path / "other"
    shutil.copytree(data, other)
    lines = (other / "pairsDevTrain.txt").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]                            # the same pairs, in another order
    (other / "pairsDevTrain.txt").write_text("\n".join(lines) + "\n")
    code = cli.main(["evaluate", "--checkpoint", os.path.join(run, "model.npz"), "--data-dir", str(other),
                     "--cache-dir", cache, "--device", "cpu", "--validation"])
    err = capsys.readouterr().err
    assert code != 0 and str(other / "pairsDevTrain.txt") in err and "is not the file the run" in err
