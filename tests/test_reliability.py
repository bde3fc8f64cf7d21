"""Interrupted writes, untrusted files, fuzzed configs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisiamese.checkpoint import CheckpointError, load_arrays
from minisiamese.config import ConfigError, ModelConfig
from minisiamese.runconfig import ExperimentConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRITER = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from minisiamese.checkpoint import save_arrays
k = 0
while True:
    k += 1
    save_arrays({path!r}, {{"k": np.array(k), "a": np.full(3_000_000, k, np.float32)}})
    print(k, flush=True)
"""


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_file(tmp_path):
    """Kill a process that rewrites a 12 MB checkpoint in a loop, at several
    moments: the file on disk is always one complete version, never a mix."""
    path = str(tmp_path / "ckpt.npz")
    for delay in (0.15, 0.31, 0.47, 0.63, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=ROOT, path=path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline()                  # at least one complete write happened
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        arrays = load_arrays(path)
        k = int(arrays["k"])
        assert k >= 1 and arrays["a"].shape == (3_000_000,) and np.all(arrays["a"] == k)
    leftovers = [p for p in os.listdir(tmp_path) if p != "ckpt.npz"]
    assert all(p.startswith(".tmp-") for p in leftovers)   # only abandoned temporaries, never the real name


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, a=np.zeros(1000))
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="c.npz: not a readable .npz file"):
            load_arrays(path)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10, 10 ** 6) | st.floats(allow_nan=True)
                           | st.text(max_size=5), lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=8)
model_keys = st.sampled_from(["input_size", "conv_filters", "conv_kernels", "pool", "dense_units", "dropout",
                              "l2_conv", "l2_dense", "init", "bogus"])


@given(st.dictionaries(model_keys, json_values, max_size=5))
def test_model_config_fuzz_only_raises_config_errors(d):
    try:
        cfg = ModelConfig.from_dict(d)
    except ConfigError:
        return
    assert cfg.num_params() > 0 and cfg == ModelConfig.from_json(cfg.to_json())


@given(st.dictionaries(st.sampled_from(["model", "train", "augment", "normalize", "extra"]),
                       st.dictionaries(st.sampled_from(["epochs", "lr", "batch_size", "kind", "copies",
                                                        "dense_units", "patience", "zoom"]), json_values,
                                       max_size=3) | json_values, max_size=4))
def test_experiment_config_fuzz_only_raises_config_errors(tmp_path_factory, d):
    path = tmp_path_factory.mktemp("cfg") / "c.json"
    path.write_text(json.dumps(d))
    try:
        cfg = ExperimentConfig.from_file(str(path))
    except ConfigError as exc:
        assert "c.json" in str(exc)
        return
    assert ExperimentConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_ctrl_c_during_training_saves_the_step_and_exits_cleanly(tmp_path):
    """SIGINT mid-run: the step in progress finishes, the state is saved, exit
    status 130 with one line naming where, no traceback; --resume continues
    from that step."""
    from fixtures import make_dataset, tiny_config
    data = str(tmp_path / "data")
    make_dataset(data, people=8, per_person=4, pairs_per_class=10)
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=400, patience=400)
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "cli.py"), "train", "--config", cfg, "--out", str(out),
           "--data-dir", data, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    import re
    m = re.search(r"interrupted at epoch (\d+), step (\d+): the state is saved in .*checkpoint.npz; "
                  r"continue with --resume", stderr)
    assert m, stderr
    state = load_arrays(out / "checkpoint.npz")
    partial = json.loads(str(state["partial"]))
    assert (partial["epoch"] + 1, partial["step"] + 1) == (int(m.group(1)), int(m.group(2)))
    from minisiamese.runconfig import ExperimentConfig
    from minisiamese.train import Trainer
    tr = Trainer(ExperimentConfig.from_file(cfg), str(out), data, cache_dir=str(tmp_path / "cache"),
                 log=lambda m: None, progress=False)
    tr.load_data()
    tr._load_checkpoint()
    assert tr.start_epoch == partial["epoch"] and tr.partial["step"] == partial["step"]


def test_example_configs_load():
    folder = os.path.join(ROOT, "docs", "configs")
    names = sorted(os.listdir(folder))
    assert "baseline.json" in names
    for name in names:
        cfg = ExperimentConfig.from_file(os.path.join(folder, name))
        assert cfg.model.num_params() > 0
    for preset in ("baseline", "best", "bn512"):         # a preset's documented config is the preset
        assert ExperimentConfig.from_file(os.path.join(folder, f"{preset}.json")) == ExperimentConfig.preset(preset)


def _corrupt(root, how):
    """Damage a copy of the fixture data set in one way; returns the text the error must contain."""
    pairs = os.path.join(root, "pairsDevTrain.txt")
    lines = open(pairs).read().splitlines()
    first = lines[1].split("\t")
    img = os.path.join(root, "lfw2", first[0], f"{first[0]}_{int(first[1]):04d}.jpg")
    if how == "malformed line":
        lines[3] = "just-a-name"
        open(pairs, "w").write("\n".join(lines) + "\n")
        return "pairsDevTrain.txt:4: expected 'name i j'"
    if how == "wrong count":
        lines[0] = "11"
        open(pairs, "w").write("\n".join(lines) + "\n")
        return "header promises 11 same + 11 different pairs"
    if how == "unknown person":
        lines[2] = "Nobody_Known\t1\t2"
        open(pairs, "w").write("\n".join(lines) + "\n")
        return "Nobody_Known_0001.jpg: image file missing (named in"
    if how == "image number out of range":
        lines[2] = f"{first[0]}\t1\t99"
        open(pairs, "w").write("\n".join(lines) + "\n")
        return f"{first[0]}_0099.jpg: image file missing (named in"
    if how == "truncated jpeg":
        data = open(img, "rb").read()
        open(img, "wb").write(data[:len(data) // 3])
        return f"{first[0]}_{int(first[1]):04d}.jpg: cannot decode image"
    if how == "not a jpeg":
        open(img, "wb").write(b"<html>not found</html>")
        return f"{first[0]}_{int(first[1]):04d}.jpg: cannot decode image"
    if how == "empty image":
        open(img, "wb").write(b"")
        return f"{first[0]}_{int(first[1]):04d}.jpg: cannot decode image"
    if how == "missing pairs file":
        os.unlink(pairs)
        return "pairsDevTrain.txt: pairs file missing"
    test_pairs = os.path.join(root, "pairsDevTest.txt")
    if how == "damaged test file":
        test_lines = open(test_pairs).read().splitlines()
        open(test_pairs, "w").write("\n".join(test_lines[:5]) + "\n")   # cut short: fewer lines than promised
        return "pairsDevTest.txt:"
    if how == "empty test file":
        open(test_pairs, "w").write("")
        return "pairsDevTest.txt: empty pairs file"
    if how == "tiny training file":
        same = [line for line in lines[1:] if len(line.split("\t")) == 3][:2]
        different = [line for line in lines[1:] if len(line.split("\t")) == 4][:2]
        open(pairs, "w").write("\n".join(["2"] + same + different) + "\n")
        return ("pairsDevTrain.txt: 2 same-person and 2 different-person pairs are too few for a 0.2 validation "
                "split: it needs at least 3 of each (6 pairs)")
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["malformed line", "wrong count", "unknown person", "image number out of range",
                                 "truncated jpeg", "not a jpeg", "empty image", "missing pairs file",
                                 "damaged test file", "empty test file", "tiny training file"])
def test_cli_battery_bad_data_gives_one_line_and_status_2(tmp_path, how, capsys):
    """Every fault is found before the first training step: no checkpoint is written."""
    import cli
    from fixtures import make_dataset, tiny_config
    root = str(tmp_path / "data")
    make_dataset(root, people=8, per_person=4, pairs_per_class=10)
    expected = _corrupt(root, how)
    code = cli.main(["train", "--config", tiny_config(str(tmp_path / "c.json"), epochs=1), "--data-dir", root,
                     "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected in err, err
    assert not os.path.exists(tmp_path / "run" / "checkpoint.npz")


def test_a_second_run_into_a_busy_folder_is_refused_and_a_killed_holder_does_not_block(tmp_path, capsys):
    """One run per folder: a live holder of RUN/.lock refuses the second run with
    one line naming the folder and its pid; once the holder is SIGKILLed the
    lock is gone (the kernel drops it) and --resume goes ahead."""
    import cli
    from fixtures import make_dataset, tiny_config
    root, run = str(tmp_path / "data"), str(tmp_path / "run")
    make_dataset(root, people=8, per_person=4, pairs_per_class=10)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from minisiamese.runlock import run_lock\n"
                               f"with run_lock({run!r}):\n    print('held', flush=True); sys.stdin.read()"],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["train", "--config", tiny_config(str(tmp_path / "c.json"), epochs=1), "--data-dir", root,
                "--out", run, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{run}: another process (pid {holder.pid}) is running in this run folder" in err[0]
        assert not os.path.exists(os.path.join(run, "checkpoint.npz"))
    finally:
        holder.kill()
        holder.wait()
    assert os.path.exists(os.path.join(run, ".lock"))           # the stale file is still there ...
    assert cli.main(argv + ["--resume"]) == 0                   # ... and blocks nothing
    assert os.path.exists(os.path.join(run, "results.json"))


def test_atomic_write_honours_the_umask(tmp_path):
    """Files come out as a plain open() would make them (0666 less the umask),
    not with the temporary file's private 0600, so a shared runs/ stays readable."""
    from minisiamese.fileio import atomic_write
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", lambda f: f.write(b"{}"))
        os.umask(0o077)
        atomic_write(tmp_path / "b.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "b.json").st_mode & 0o777 == 0o600


def test_a_text_file_given_as_arrays_is_not_called_pickled(tmp_path):
    """np.load falls back to unpickling anything that is not a zip or .npy and then
    suggests allow_pickle; a stray text file must be named as what it is instead."""
    path = tmp_path / "README.npz"
    path.write_text("# not arrays\n")
    with pytest.raises(CheckpointError, match="README.npz: not a readable .npz file \\(not a zip archive") as info:
        load_arrays(path)
    assert "pickle" not in str(info.value)
