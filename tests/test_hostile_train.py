"""A hostile world around training: a reused run folder, SIGTERM, resuming
on other data or settings, a bad seed, an unwritable folder, a full disk.
Each gets one line (status 2, or 143 for SIGTERM), never a traceback, and
no finished or saved work is lost."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cli
from fixtures import make_dataset, tiny_config
from minisiamese import fileio, pipeline, runfiles
from minisiamese.fileio import load_arrays, save_arrays
from minisiamese.train import TrainingError, config_differences

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lfw"))
    make_dataset(root, people=8, per_person=4, pairs_per_class=10)
    return root


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished one-epoch run: (argv that made it, its folder), to copy before changing it."""
    tmp = tmp_path_factory.mktemp("finished")
    out = str(tmp / "run")
    argv = ["train", "--config", tiny_config(str(tmp / "cfg.json"), epochs=1), "--data-dir", data, "--out", out,
            "--cache-dir", str(tmp / "cache"), "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 0
    return argv, out


def copy_run(finished, tmp_path):
    """The finished run copied to tmp_path/run, and the argv that trains into the copy."""
    argv, out = finished
    shutil.copytree(out, tmp_path / "run")
    return [str(tmp_path / "run") if a == out else a for a in argv], str(tmp_path / "run")


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- 1. a used run folder

@pytest.mark.parametrize("extra", [[], ["--validation-only"]], ids=["train", "validation-only"])
def test_training_again_into_a_finished_run_is_refused_and_the_model_kept(finished, tmp_path, capsys, extra):
    argv, out = copy_run(finished, tmp_path)
    model = open(os.path.join(out, "model.npz"), "rb").read()
    assert cli.main(argv + extra) == 2
    line = one_error_line(capsys)
    assert f"{out} holds a finished run (results.json, model.npz); continue it with --resume, choose another " \
           f"--out, or pass --overwrite to start over" in line
    assert open(os.path.join(out, "model.npz"), "rb").read() == model
    argv[argv.index("--data-dir") + 1] = str(tmp_path / "none")
    assert cli.main(argv + extra) == 2                 # the data is checked first: a bad --data-dir is named
    assert "LFW-a not found" in one_error_line(capsys)


def test_resume_with_nothing_to_resume_does_not_overwrite_a_finished_run(finished, tmp_path, capsys):
    """--resume where the checkpoint is gone but the finished run's files are there must not start afresh over them."""
    argv, out = copy_run(finished, tmp_path)
    os.remove(os.path.join(out, "checkpoint.npz"))
    model = open(os.path.join(out, "model.npz"), "rb").read()
    assert cli.main(argv + ["--resume"]) == 2
    assert f"{out} holds a finished run (results.json, model.npz) but no checkpoint.npz to resume from; choose " \
           f"another --out, or pass --overwrite" in one_error_line(capsys)
    assert open(os.path.join(out, "model.npz"), "rb").read() == model


def test_overwrite_removes_the_old_figures_and_config_too(finished, tmp_path, capsys):
    argv, out = copy_run(finished, tmp_path)
    stale = os.path.join(out, "figures", "stale.png")
    open(stale, "w").write("old")
    assert cli.main(argv + ["--overwrite", "--validation-only"]) == 0
    assert not os.path.exists(stale) and not os.path.exists(os.path.join(out, "figures", "roc.png"))


def test_overwrite_starts_over_and_resume_and_overwrite_exclude_each_other(finished, tmp_path, capsys):
    argv, out = copy_run(finished, tmp_path)
    before = load_arrays(os.path.join(out, "checkpoint.npz"))
    assert cli.main(argv + ["--overwrite", "--seed", "1"]) == 0
    assert f"--overwrite: starting over, removing {os.path.join(out, 'results.json')}" in capsys.readouterr().out
    after = load_arrays(os.path.join(out, "checkpoint.npz"))
    assert int(before["seed"]) == 0 and int(after["seed"]) == 1
    assert json.load(open(os.path.join(out, "results.json")))["seed"] == 1
    with pytest.raises(SystemExit):
        cli.main(argv + ["--overwrite", "--resume"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "--overwrite  " in capsys.readouterr().out


def test_a_stopped_run_is_refused_with_its_epoch_and_step(data, tmp_path, capsys, monkeypatch):
    """A run stopped mid-epoch (a Ctrl-C saved it) is not restarted over: the
    refusal names where it stopped, read from the checkpoint; --resume goes on."""
    from minisiamese.model import SiameseNet
    from minisiamese.train import Trainer, TrainingInterrupted
    from minisiamese.runconfig import ExperimentConfig
    cfg_path = tiny_config(str(tmp_path / "cfg.json"), epochs=2)
    out = str(tmp_path / "run")
    tr = Trainer(ExperimentConfig.from_file(cfg_path), out, data, cache_dir=str(tmp_path / "cache"),
                 log=lambda m: None, progress=False)
    real, calls = SiameseNet.loss_and_grads, {"n": 0}

    def stop_at_epoch_2_step_2(self, *args, **kwargs):
        calls["n"] += 1
        tr._stop_requested = calls["n"] == 4 + 2               # 4 steps per epoch
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SiameseNet, "loss_and_grads", stop_at_epoch_2_step_2)
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 2, step 3"):
        tr.fit()
    monkeypatch.setattr(SiameseNet, "loss_and_grads", real)
    argv = ["train", "--config", cfg_path, "--data-dir", data, "--out", out, "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 2
    assert f"{out} holds a run stopped at epoch 2, step 3 ({os.path.join(out, 'checkpoint.npz')}); continue it " \
           f"with --resume" in one_error_line(capsys)
    assert cli.main(argv + ["--resume"]) == 0
    assert "resuming at epoch 2, step 3" in capsys.readouterr().out


# ---------------------------------------------------------------- 2. SIGTERM

def test_sigterm_during_training_saves_the_step_and_exits_143(data, tmp_path, capsys):
    """What timeout, kill, Slurm and docker stop send: the step in progress
    finishes, the state is saved, one line on stderr, status 143; --resume
    continues from that step."""
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=400, patience=400)
    out = tmp_path / "run"
    argv = ["train", "--config", cfg, "--out", str(out), "--data-dir", data, "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--quiet"]
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "cli.py")] + argv,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:                           # inside an epoch after the first one's log line
        if line.startswith("epoch 1/400"):
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "SIGTERM: saving after this step" in stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    m = re.fullmatch(r"terminated by SIGTERM at epoch (\d+), step (\d+): the state is saved in (.*); "
                     r"continue with --resume", lines[0])
    assert m and m.group(3) == str(out / "checkpoint.npz"), stderr
    partial = json.loads(str(load_arrays(out / "checkpoint.npz")["partial"]))
    epoch, step = partial["epoch"] + 1, partial["step"] + 1
    assert (epoch, step) == (int(m.group(1)), int(m.group(2))) and epoch >= 2
    assert cli.main(argv + ["--resume", "--epochs", str(epoch)]) == 0
    stdout = capsys.readouterr().out
    assert f"resuming at epoch {epoch}, step {step} from" in stdout and f"epoch {epoch}/{epoch}: loss" in stdout
    assert int(load_arrays(out / "checkpoint.npz")["epoch"]) == epoch - 1


def test_sigterm_during_the_evaluation_names_the_run_and_exits_143(data, tmp_path, capsys, monkeypatch):
    """After training, the evaluation has no step to save: SIGTERM there is one
    line naming the run folder (it used to end the process without a word), and
    --resume then evaluates the trained model."""
    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)                                  # the handler raises before this ends
        raise AssertionError("SIGTERM was not acted on")

    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=1)
    out = tmp_path / "run"
    argv = ["train", "--config", cfg, "--out", str(out), "--data-dir", data, "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--quiet"]
    monkeypatch.setattr(pipeline, "evaluate_pairset", killed)
    assert cli.main(argv) == 143
    err = capsys.readouterr().err
    assert err.strip() == (f"terminated by SIGTERM: the last saved state is in {out} (checkpoint.npz); "
                           f"continue with --resume (experiments resume by themselves)"), err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL                 # main() put the handler back
    monkeypatch.undo()                                                      # the real evaluation again
    assert cli.main(argv + ["--resume"]) == 0
    assert (out / "results.json").is_file()


# ---------------------------------------------------------------- 3. other data

@pytest.mark.parametrize("name", ["pairsDevTrain.txt", "pairsDevTest.txt"])
def test_resume_on_other_pairs_is_refused_naming_the_file(finished, data, tmp_path, capsys, name):
    """Other pairs of the same people, in the same numbers: a resume would go on silently on other data."""
    argv, out = copy_run(finished, tmp_path)
    other = str(tmp_path / "other")
    shutil.copytree(data, other)
    make_dataset(str(tmp_path / "reshuffled"), people=8, per_person=4, pairs_per_class=10, seed=1)
    shutil.copy(tmp_path / "reshuffled" / name, os.path.join(other, name))
    argv[argv.index(data)] = other
    assert cli.main(argv + ["--resume"]) == 2
    line = one_error_line(capsys)
    assert f"{os.path.join(other, name)} is not the file this run was trained on" in line
    assert "resume with the same --data-dir" in line


def test_resume_on_other_images_under_the_same_pairs_is_refused(finished, data, tmp_path, capsys):
    """Another copy of the images (say LFW instead of LFW-a: same names, same
    pairs files): the pairs digests agree, the faces do not; a resume would
    go on silently on other data."""
    from PIL import Image, ImageOps
    argv, out = copy_run(finished, tmp_path)
    other = str(tmp_path / "other")
    shutil.copytree(data, other)
    person = sorted(os.listdir(os.path.join(other, "lfw2")))[0]
    folder = os.path.join(other, "lfw2", person)
    for name in os.listdir(folder):                    # every image of one person, mirrored
        path = os.path.join(folder, name)
        ImageOps.mirror(Image.open(path)).save(path)
    argv[argv.index(data)] = other
    argv[argv.index("--cache-dir") + 1] = str(tmp_path / "cache")
    assert cli.main(argv + ["--resume", "--epochs", "2"]) == 2
    line = one_error_line(capsys)
    assert f"the faces read from {other} are not those this run was trained on" in line
    argv[argv.index(other)] = data                     # the run's own data: it goes on
    assert cli.main(argv + ["--resume", "--epochs", "2"]) == 0
    assert int(load_arrays(os.path.join(out, "checkpoint.npz"))["epoch"]) == 1


def _first(a, prefix):
    return sorted(k for k in a if k.startswith(prefix))[0]


@pytest.mark.parametrize("damage, expected", [
    (lambda a: a.pop("seed"), "seed is missing"),
    (lambda a: a.update(seed=np.array("x")), r"seed must be an integer in \[0, 4294967295\], got 'x'"),
    (lambda a: a.update(epoch=np.array(-7)), r"epoch must be an integer in \[-1, 100000\], got -7"),
    (lambda a: a.update(epoch=np.array(10 ** 15)), "epoch must be an integer"),
    (lambda a: a.update(history=np.array("[{")), "history is not valid JSON"),
    (lambda a: a.update(history=np.array("[1, 2, 3]")), "history must hold one record of numbers per finished"),
    (lambda a: a.update(partial=np.array('{"step": 1}')), r"partial.epoch must be an integer in \[1, 1\], got None"),
    (lambda a: a.update(best_val=np.array("x")), "best_val must be a number"),
    (lambda a: a.update(data=np.array('{"pairsDevTrain.txt": 5}')), "data must map each pairs file"),
    (lambda a: a.update(conv_algos=np.array("5")), "conv_algos must be a JSON list, got int"),
    (lambda a: a.update(conv_algos=np.array(json.dumps(["auto"] * len(json.loads(str(a["conv_algos"])))))),
     r"conv_algos must name one of \['im2col', 'fft'\] per conv layer"),
    (lambda a: a.pop(_first(a, "param/")), r"parameter \S+ is missing"),
    (lambda a: a.update({_first(a, "param/"): np.full_like(a[_first(a, "param/")], np.nan)}),
     r"parameter \S+ is not finite floating point"),
    (lambda a: a.pop(_first(a, "opt/m/")), "opt/m/ must hold one array per parameter after step"),
    (lambda a: a.update({_first(a, "opt/v/"): np.zeros(3)}), "opt/v/.* must be finite floating point of shape"),
    (lambda a: a.update({"opt/lr_scale": np.array(7.0)}), r"opt/lr_scale must be in \[0, 1\], got 7.0"),
    (lambda a: a.update(norm_std=np.array(0.0)), "bad normalisation .*norm_std 0.0"),
    (lambda a: a.update(faces_digest=np.array(5)), "faces_digest must be a SHA-256 in hex"),
])
def test_a_damaged_checkpoint_is_one_line_naming_the_array(finished, tmp_path, capsys, damage, expected):
    """Each array of checkpoint.npz is checked before the run goes on: a damaged
    one is one error line naming the file and the array, not a traceback from
    deep inside, and nothing is written (the checkpoint stays as it was)."""
    argv, out = copy_run(finished, tmp_path)
    path = os.path.join(out, "checkpoint.npz")
    arrays = load_arrays(path)
    damage(arrays)
    save_arrays(path, arrays)
    before = open(path, "rb").read()
    assert cli.main(argv + ["--resume", "--epochs", "2"]) == 2
    line = one_error_line(capsys)
    assert re.search(f"{re.escape(path)}: (damaged training checkpoint \\()?" + expected, line), line
    assert open(path, "rb").read() == before


def test_a_checkpoint_without_data_digests_resumes_with_a_warning(finished, tmp_path, capsys):
    argv, out = copy_run(finished, tmp_path)
    path = os.path.join(out, "checkpoint.npz")
    old = load_arrays(path)
    del old["data"]                                    # as written before the digests were stored
    save_arrays(path, old)
    assert cli.main(argv + ["--resume", "--epochs", "2"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {path} does not record which data it was trained on (an older checkpoint); "
                        f"resuming without checking --data-dir"]
    assert "data" in load_arrays(path)                 # epoch 2 is saved with them


# ---------------------------------------------------------------- 4. other settings

@pytest.mark.parametrize("extra, difference", [
    (["--batch-size", "8"], "train.batch_size: checkpoint 4, now 8"),
    (["--max-pairs", "16"], "train.max_pairs: checkpoint 0, now 16"),
    (["--set", "model.dense_units=8"], "model.dense_units: checkpoint 16, now 8"),
])
def test_resume_with_other_settings_names_the_setting(finished, capsys, extra, difference):
    argv, out = finished
    assert cli.main(argv + ["--resume"] + extra) == 2
    line = one_error_line(capsys)
    assert f"different configuration ({difference}); resume with the same settings" in line


def test_config_differences_names_every_key_path():
    stored = {"model": {"conv_filters": [4, 8], "dropout": 0.0}, "train": {"lr": 0.001}, "normalize": False}
    now = {"model": {"conv_filters": [4, 16], "dropout": 0.0}, "train": {"lr": 0.001}, "normalize": True}
    assert config_differences(stored, now) == ["model.conv_filters: checkpoint [4, 8], now [4, 16]",
                                               "normalize: checkpoint false, now true"]
    assert config_differences(stored, stored) == []


# ---------------------------------------------------------------- 5. the seed

@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1", "4294967296", "abc", "1.5"])
@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["experiments", "--only", "baseline"]])
def test_a_seed_out_of_range_is_one_line(tmp_path, capsys, monkeypatch, command, seed):
    monkeypatch.chdir(tmp_path)                        # nothing may be written, but never into the checkout
    assert cli.main(command + ["--seed", seed, "--data-dir", str(tmp_path / "none"),
                               "--out", str(tmp_path / "out")]) == 2
    assert f"error: --seed must be an integer in [0, 4294967295], got {seed}" == one_error_line(capsys)
    assert not os.path.exists(tmp_path / "out")


def test_the_largest_seed_trains_and_is_stored(finished, tmp_path):
    argv, out = copy_run(finished, tmp_path)
    assert cli.main(argv + ["--overwrite", "--seed", str(2 ** 32 - 1)]) == 0
    assert int(load_arrays(os.path.join(out, "checkpoint.npz"))["seed"]) == 2 ** 32 - 1


# ---------------------------------------------------------------- 6. folders and full disks

@pytest.mark.parametrize("flag, where, why", [
    ("--out", "file", "it is a file, not a folder"),
    ("--out", "file/run", "a part of the path is a file, not a folder"),
    ("--cache-dir", "file", "it is a file, not a folder"),
    ("--cache-dir", "file/cache", "a part of the path is a file, not a folder"),
])
def test_an_out_or_cache_folder_that_cannot_be_written_is_one_line(finished, tmp_path, capsys, flag, where, why):
    argv = list(finished[0])
    (tmp_path / "file").write_text("not a folder")
    path = str(tmp_path / where)
    argv[argv.index(flag) + 1] = path
    assert cli.main(argv) == 2                                # the CLI's path check comes first
    line = one_error_line(capsys)
    assert line.startswith(f"error: {flag} {path!r}") and "not a folder; give a folder" in line
    assert (tmp_path / "file").read_text() == "not a folder"
    what = "run folder" if flag == "--out" else "cache folder"    # the pipeline's own check, for library callers
    with pytest.raises(TrainingError, match=re.escape(f"{path}: cannot write the {what} there ({why})")):
        runfiles.check_folder(path, what)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_out_folder_is_one_line(finished, tmp_path, capsys):
    argv = list(finished[0])
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    argv[argv.index("--out") + 1] = str(locked / "run")
    assert cli.main(argv) == 2
    assert "cannot write the run folder there (Permission denied)" in one_error_line(capsys)


@pytest.mark.parametrize("code, why", [(errno.ENOSPC, "the disk is full"),
                                       (errno.EIO, "the write failed (Input/output error)")])
def test_a_full_disk_during_a_checkpoint_save_keeps_the_last_good_one(finished, tmp_path, capsys, monkeypatch,
                                                                      code, why):
    """The save of epoch 2's checkpoint fails half-way through its write: one
    line naming the file, status 2, and epoch 1's checkpoint intact and loadable."""
    argv, out = copy_run(finished, tmp_path)
    path = os.path.join(out, "checkpoint.npz")
    good = open(path, "rb").read()
    real = fileio.atomic_write

    def failing(target, write):
        if os.path.basename(target) != "checkpoint.npz":
            return real(target, write)

        def half_then_full(f):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(code, os.strerror(code))
        return real(target, half_then_full)

    monkeypatch.setattr(fileio, "atomic_write", failing)
    assert cli.main(argv + ["--resume", "--epochs", "2"]) == 2
    assert one_error_line(capsys) == f"error: {path}: {why}; the last good state is kept in {path}"
    assert open(path, "rb").read() == good and int(load_arrays(path)["epoch"]) == 0
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


def test_resume_removes_what_a_killed_checkpoint_write_left(finished, tmp_path, capsys):
    """A SIGKILL during a checkpoint write leaves its temporary file (a full
    checkpoint's size); the next run in the folder, holding the lock, removes it."""
    argv, out = copy_run(finished, tmp_path)
    leftover = os.path.join(out, ".tmp-abc_1234checkpoint.npz")
    open(leftover, "wb").write(b"half a checkpoint")
    mine = os.path.join(out, ".tmp-notes.txt")                     # not a run file's temporary: kept
    open(mine, "w").write("a user's file")
    assert cli.main(argv + ["--resume", "--epochs", "2"]) == 0
    assert not os.path.exists(leftover) and os.path.exists(mine)
    assert "removed 1 temporary file(s) left by a write that was killed: .tmp-abc_1234checkpoint.npz" in \
        capsys.readouterr().out


def test_a_lock_file_that_cannot_be_opened_is_named_as_the_run_lock(finished, tmp_path, capsys):
    argv, out = copy_run(finished, tmp_path)
    lock = os.path.join(out, ".lock")
    if os.path.exists(lock):
        os.remove(lock)
    os.mkdir(lock)                                     # a folder where the lock file goes
    assert cli.main(argv + ["--resume", "--epochs", "2"]) == 2
    assert f"{lock}: cannot open this run folder's lock file (Is a directory)" in one_error_line(capsys)
