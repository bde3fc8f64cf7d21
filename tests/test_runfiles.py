"""The run folder's files (minisiamese.runfiles): each checked reader refuses what its format forbids --
NaN, a value out of range, a seed its file's name contradicts, a wrong format tag, a file that is not a
regular file (a named pipe, without hanging) -- and a checkpoint round-trips through its writer and reader."""
import contextlib
import copy
import json
import math
import os
import signal

import numpy as np
import pytest

from fixtures import TINY_MODEL
from minisiamese import runfiles
from minisiamese.checkpoint import check_threshold
from minisiamese.data import Normalizer
from minisiamese.errors import MAX_SEED, CheckpointError, DataError
from minisiamese.fileio import load_arrays, save_arrays
from minisiamese.model import SiameseNet
from minisiamese.optim import Adam
from minisiamese.runconfig import ExperimentConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = {"epoch": 1, "loss": 0.7, "accuracy": 0.5, "val_loss": 0.69, "val_accuracy": 0.55, "val_auc": 0.6,
          "lr": 1e-3, "seconds": 1.5}


@contextlib.contextmanager
def no_hang(seconds=10):
    """Fail, not hang, when a read blocks (on a named pipe, say)."""
    def stuck(*_):
        raise AssertionError(f"blocked for {seconds} s")
    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def a_checkpoint(partial=None):
    """A TrainCheckpoint as a run two epochs in holds it: Adam one step in, a fitted normalisation."""
    config = ExperimentConfig.from_dict({"model": TINY_MODEL, "train": {"batch_size": 4}})
    net = SiameseNet(config.model, seed=5)
    opt = Adam(lr=1e-3)
    opt.step(net.params, {k: np.full_like(v, 0.1) for k, v in net.params.items()})
    history = [dict(RECORD, epoch=e + 1) for e in range(2)]
    state = runfiles.TrainState(history=history, best_val=0.69, best_epoch=1, wait=0, reference_loss=0.7,
                                partial=partial)
    return runfiles.TrainCheckpoint(config=config, seed=MAX_SEED, state=state, params=net.state_dict(),
                                    optimizer=opt.state_dict(), normalizer=Normalizer(0.25, 0.5),
                                    conv_algos=["im2col", "fft"], data={"pairsDevTrain.txt": "ab" * 32},
                                    faces_digest="cd" * 32)


@pytest.fixture
def written(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    runfiles.write_checkpoint(path, a_checkpoint())
    return path


def test_a_checkpoint_round_trips_through_its_writer_and_reader(tmp_path):
    partial = {"epoch": 2, "step": 3, "loss": 2.5, "correct": 7, "seen": 12, "seconds": 0.5,
               "aug_rng": runfiles.rng_state(np.random.default_rng(1)), "dropout_rng": ""}
    for state_partial in (None, partial):
        path = str(tmp_path / "checkpoint.npz")
        run = a_checkpoint(state_partial)
        runfiles.write_checkpoint(path, run)
        back = runfiles.read_checkpoint(path)
        assert back.config == run.config and back.seed == run.seed == MAX_SEED
        assert back.state == run.state and back.state.start_epoch == 2
        assert back.conv_algos == run.conv_algos and back.data == run.data and back.faces_digest == run.faces_digest
        assert (back.normalizer.mean, back.normalizer.std) == (0.25, 0.5)
        assert set(back.params) == set(run.params) and all(np.array_equal(back.params[k], v)
                                                            for k, v in run.params.items())
        assert set(back.optimizer) == set(run.optimizer)
        assert all(np.array_equal(back.optimizer[k], v) for k, v in run.optimizer.items())
        assert int(load_arrays(path)["epoch"]) == 1                  # the last finished epoch


def test_an_older_checkpoint_without_the_newer_arrays_still_loads(written):
    arrays = load_arrays(written)
    for key in ("reference_loss", "data", "faces_digest", "partial"):
        del arrays[key]
    arrays["conv_plan"] = arrays.pop("conv_algos")                    # its name before the rename
    save_arrays(written, arrays)
    back = runfiles.read_checkpoint(written)
    assert back.data is None and back.faces_digest == "" and back.state.reference_loss is None
    assert back.state.partial is None and back.conv_algos == ["im2col", "fft"]


def _history(**change):
    return json.dumps([dict(RECORD, epoch=1), dict(RECORD, **{"epoch": 2, **change})])


@pytest.mark.parametrize("damage, says", [
    ({"format": np.array("minisiamese-weights-1")}, "not a minisiamese training checkpoint"),
    ({"seed": np.array(MAX_SEED + 1)}, rf"seed must be an integer in \[0, {MAX_SEED}\], got {MAX_SEED + 1}"),
    ({"best_val": np.array(np.nan)}, "best_val must be a number, got nan"),
    ({"reference_loss": np.array("x")}, "reference_loss must be a number"),
    ({"history": np.array(_history(val_auc=float("nan")))}, r"history\[1\].val_auc must be a number in \[0, 1\]"),
    ({"history": np.array(_history(accuracy=1.5))}, r"history\[1\].accuracy must be a number in \[0, 1\], got 1.5"),
    ({"history": np.array(_history(loss=-1.0))}, r"history\[1\].loss must be a number >= 0, got -1.0"),
    ({"history": np.array(_history(epoch=7))}, r"history\[1\].epoch must be 2, got 7"),
    ({"history": np.array(_history(extra=float("inf")))}, r"history\[1\].extra must be a finite number, got inf"),
    ({"opt/lr_scale": np.array(-0.5)}, r"opt/lr_scale must be in \[0, 1\], got -0.5"),
    ({"opt/t": np.array(-1)}, r"opt/t must be an integer in \[0, "),
    ({"wait": np.array(10 ** 6)}, r"wait must be an integer in \[0, 100000\]"),
    ({"best_epoch": np.array(2)}, r"best_epoch must be an integer in \[-1, 1\], got 2"),
    ({"partial": np.array(json.dumps({"epoch": 2, "step": 0, "correct": 0, "seen": 0, "loss": float("nan"),
                                      "seconds": 0.0, "aug_rng": "", "dropout_rng": ""}))},
     r"partial.loss must be a number >= 0, got nan"),
    ({"partial": np.array(json.dumps({"epoch": 2, "step": 0, "correct": 0, "seen": 0, "loss": 0.0,
                                      "seconds": 0.0, "aug_rng": "{", "dropout_rng": ""}))},
     "partial.aug_rng is not a NumPy generator's state"),
    ({"norm_std": np.array(-1.0)}, "bad normalisation"),
])
def test_the_checkpoint_reader_refuses_values_out_of_their_range(written, damage, says):
    arrays = load_arrays(written)
    arrays.update(damage)
    save_arrays(written, arrays)
    with pytest.raises(CheckpointError, match=f"{written}: .*{says}"):
        runfiles.read_checkpoint(written)


def test_a_checkpoint_with_parameters_of_another_config_is_refused(written):
    """The parameters must be those of the config stored beside them, whatever run reads the file."""
    arrays = load_arrays(written)
    config = json.loads(str(arrays["config"]))
    config["model"]["dense_units"] = 8
    arrays["config"] = np.array(json.dumps(config))
    save_arrays(written, arrays)
    with pytest.raises(CheckpointError, match=f"{written}: parameter dense.w has shape"):
        runfiles.read_checkpoint(written)


@pytest.mark.parametrize("read", [runfiles.read_checkpoint, runfiles.read_history, runfiles.read_results])
def test_no_reader_reads_a_named_pipe_or_hangs_on_one(tmp_path, read):
    pipe = str(tmp_path / "pipe")
    os.mkfifo(pipe)
    with no_hang(), pytest.raises((CheckpointError, DataError), match=f"{pipe}: .*not a regular file"):
        read(pipe)


def test_the_progress_of_an_unreadable_checkpoint_is_said_without_hanging(tmp_path):
    pipe = str(tmp_path / "checkpoint.npz")
    os.mkfifo(pipe)
    with no_hang():
        assert runfiles.checkpoint_progress(pipe) == "with a checkpoint that cannot be read"


def test_history_json_round_trips_and_its_reader_checks_values(tmp_path):
    path = str(tmp_path / "history.json")
    history = [dict(RECORD, epoch=e + 1, val_oneshot=0.4) for e in range(3)]
    runfiles.write_history(path, history)
    assert runfiles.read_history(path) == history
    for bad, says in (([dict(RECORD, val_oneshot=1.2)], r"history\[0\].val_oneshot must be a number in \[0, 1\]"),
                      ([dict(RECORD, seconds=-3)], r"history\[0\].seconds must be a number >= 0"),
                      ([dict(RECORD, epoch=2)], r"history\[0\].epoch must be 1"),
                      ({"epoch": 1}, "history must be a list of objects of numbers")):
        runfiles.write_history(path, bad)
        with pytest.raises(DataError, match=f"{path}: damaged training history \\({says}"):
            runfiles.read_history(path)
    with open(path, "w") as f:
        f.write("[1, 2")
    with pytest.raises(DataError, match=f"{path}: cannot read the training history"):
        runfiles.read_history(path)


def omniglot_results():
    """An Omniglot run's results.json as the pipeline writes it (the kept copy of a real run)."""
    with open(os.path.join(ROOT, "docs", "results", "seeds", "omniglot-small-s0.json")) as f:
        return json.load(f)


def test_an_omniglot_runs_results_are_checked_like_lfw_as(tmp_path):
    res = omniglot_results()
    assert res["dataset"] == "omniglot" and "accuracy" not in res
    path = str(tmp_path / "omniglot-s0.json")
    runfiles.write_results(str(tmp_path), res)
    assert runfiles.read_results(os.path.join(tmp_path, runfiles.RESULT_FILE), seed=0) == res
    damages = [(lambda r: r["lake20"].update(accuracy=float("nan")), r"lake20.accuracy must be a number in \[0, 1\]"),
               (lambda r: r["within20"].update(accuracy=1.5), r"within20.accuracy must be a number in \[0, 1\]"),
               (lambda r: r["verification"].update(auc=-0.1), r"verification.auc must be a number in \[0, 1\]"),
               (lambda r: r["verification"].update(accuracy_se=float("inf")), "verification.accuracy_se must be"),
               (lambda r: r["verification"].update(threshold=1.5),
                r"verification.threshold must be a probability in \[0, 1\], got 1.5"),
               (lambda r: r["lake20"].update(trials=0), r"lake20.trials must be an integer >= 1, got 0"),
               (lambda r: r["lake20"]["per_run"].update(run01=2.0), r"lake20.per_run.run01 must be a number in"),
               (lambda r: r.pop("within20"), "within20 must be an object"),
               (lambda r: r["val"].update(oneshot=float("nan")), r"val.oneshot must be a number in \[0, 1\]"),
               (lambda r: r.update(input_size=0), r"input_size must be an integer >= 1")]
    for damage, says in damages:
        bad = copy.deepcopy(res)
        damage(bad)
        with open(path, "w") as f:
            json.dump(bad, f)
        with pytest.raises(DataError, match=f"{path}: damaged results \\({says}"):
            runfiles.read_results(path)
    one_run = copy.deepcopy(res)
    one_run["lake20"]["se"] = None                           # one run alone has no SE over runs
    assert runfiles.check_results(one_run, path) is one_run


def test_results_whose_seed_contradicts_their_name_are_refused(tmp_path):
    path = str(tmp_path / "omniglot-small-s3.json")
    with open(path, "w") as f:
        json.dump(omniglot_results(), f)
    with pytest.raises(DataError, match="its name says seed 3, its seed field 0"):
        runfiles.read_results(path, seed=3)


@pytest.mark.parametrize("seed", ["x", True, -1, MAX_SEED + 1])
def test_a_results_seed_that_is_no_seed_is_named(tmp_path, seed):
    res = dict(omniglot_results(), seed=seed)
    runfiles.write_results(str(tmp_path), res)
    path = os.path.join(tmp_path, runfiles.RESULT_FILE)
    with pytest.raises(DataError, match=rf"{path}: damaged results \(seed {seed!r} is not an integer in \[0, {MAX_SEED}\]\)"):
        runfiles.read_results(path)


def test_a_kept_copy_is_the_results_with_the_history_and_written_stably(tmp_path):
    """kept_copy: results.json with history.json's records, without the model's path; write_kept: sorted keys,
    indent 1, a final newline, read back by read_results -- the same bytes when written again."""
    run = tmp_path / "run"
    run.mkdir()
    res = dict(omniglot_results(), model="/somewhere/model.npz")
    res.pop("history", None)
    runfiles.write_results(str(run), res)
    history = [RECORD, dict(RECORD, epoch=2)]
    runfiles.write_history(str(run / runfiles.HISTORY_FILE), history)
    kept = runfiles.kept_copy(str(run), seed=0)
    assert kept["history"] == history and "model" not in kept
    assert {k: v for k, v in kept.items() if k != "history"} == {k: v for k, v in res.items() if k != "model"}
    path = str(tmp_path / "omniglot-small-s0.json")
    runfiles.write_kept(path, kept)
    text = open(path).read()
    assert text == json.dumps(kept, indent=1, sort_keys=True) + "\n"
    assert runfiles.read_results(path, seed=0) == kept
    runfiles.write_kept(path, runfiles.kept_copy(str(run), seed=0))
    assert open(path).read() == text
    os.remove(run / runfiles.HISTORY_FILE)                  # a run without a history: none kept
    assert "history" not in runfiles.kept_copy(str(run))
    (run / runfiles.HISTORY_FILE).write_text("[{\"epoch\": 2}]")   # a damaged history is named, nothing kept
    with pytest.raises(DataError, match="damaged training history"):
        runfiles.kept_copy(str(run))


def test_an_evaluate_out_folder_gives_no_kept_copy_with_runs_only(tmp_path):
    res = {k: v for k, v in omniglot_results().items() if k != "epochs_run"}
    runfiles.write_results(str(tmp_path), res)
    assert runfiles.kept_copy(str(tmp_path), runs_only=True) is None


def test_config_json_round_trips_through_its_writer(tmp_path):
    config = ExperimentConfig.from_dict({"model": TINY_MODEL, "train": {"batch_size": 4, "epochs": 7}})
    path = str(tmp_path / runfiles.CONFIG_FILE)
    runfiles.write_config(path, config)
    assert ExperimentConfig.from_file(path) == config
    assert open(path).read() == config.to_json()


def test_a_stored_threshold_may_lie_a_hair_outside_zero_one():
    def error(m):
        return ValueError(m)
    for v in (-1e-3, 0.0, 0.5, 1.0, 1 + 1e-3):
        assert check_threshold("t", v, error) == v
    for v in (-2e-3, 1.002, math.nan, math.inf, "0.5", [0.5]):
        with pytest.raises(ValueError, match=r"t must be a probability in \[0, 1\], got "):
            check_threshold("t", v, error)


def test_a_training_checkpoint_given_as_a_model_is_named(written):
    assert runfiles.not_a_model(written) == f"{written}: is a training state (checkpoint.npz); use the model.npz " \
                                            f"beside it"
