"""The command line against a hostile user (issue 24): every bad value -- out of
range, NaN, empty, a file where a folder belongs, a training checkpoint for a
model, a bundle of the wrong size -- is one line naming the option or file,
exit status 2, never a traceback and never a silently wrong answer."""
import os
import threading

import numpy as np
import pytest

from fixtures import make_dataset
from minisiamese import ModelConfig, SiameseNet, cli, convplan, evaluate, runfiles, save_model
from minisiamese.fileio import cache_root, save_arrays

CFG = ModelConfig(input_size=20, conv_filters=(3, 4), conv_kernels=(3, 3), dense_units=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny data set, a model for it, and a training checkpoint beside the model."""
    root = tmp_path_factory.mktemp("hostile")
    data = str(root / "lfw")
    names = make_dataset(data, people=8, per_person=4, pairs_per_class=8)
    run = root / "run"
    run.mkdir()
    save_model(str(run / "model.npz"), SiameseNet(CFG, seed=0), extra={"threshold": np.array(0.5)})
    save_arrays(str(run / "checkpoint.npz"), {"format": np.array(runfiles.TRAIN_FORMAT)})
    query = os.path.join(data, "lfw2", names[0], f"{names[0]}_0001.jpg")
    return {"data": data, "model": str(run / "model.npz"), "run": str(run), "query": query,
            "gallery": os.path.join(data, "lfw2"), "root": root}


def refused(capsys, argv, expected):
    """argv exits with status 2 and one line 'error: ...' holding ``expected``."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], captured.err
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


def evaluate_args(f, *extra):
    return ["evaluate", "--checkpoint", f["model"], "--data-dir", f["data"], "--device", "cpu", "--quiet",
            "--n-way", "3", "--cache-dir", str(f["root"] / "cache"), *extra]


def identify_args(f, *extra):
    return ["identify", f["query"], "--gallery", f["gallery"], "--checkpoint", f["model"], "--device", "cpu",
            "--cache-dir", str(f["root"] / "cache"), *extra]


def pack_args(f, out, *extra):
    return ["pack", "--data-dir", f["data"], "--out", out, "--cache-dir", str(f["root"] / "cache"), *extra]


@pytest.mark.parametrize("command, option, value, expected", [
    ("evaluate", "--n-way", "1", "--n-way must be >= 2, got 1"),
    ("evaluate", "--n-way", "-4", "--n-way must be >= 2, got -4"),
    ("evaluate", "--batch-size", "0", "--batch-size must be >= 1, got 0"),
    ("evaluate", "--batch-size", "-128", "--batch-size must be >= 1, got -128"),
    ("evaluate", "--seed", "-1", "--seed must be an integer in [0, 4294967295], got -1"),
    ("evaluate", "--seed", str(2 ** 32), f"--seed must be an integer in [0, 4294967295], got {2 ** 32}"),
    ("evaluate", "--seed", "9" * 30, "--seed must be an integer in [0, 4294967295], got 999"),
    ("evaluate", "--seed", "1_0", "--seed must be an integer in [0, 4294967295], got 1_0"),     # int() reads 10
    ("evaluate", "--seed", "\u0663", "--seed must be an integer in [0, 4294967295], got \u0663"),  # int() reads 3
    ("evaluate", "--seed", " 7", "--seed must be an integer in [0, 4294967295], got  7"),
    ("identify", "--threshold", "nan", "--threshold must be in [0, 1], got nan (a probability)"),
    ("identify", "--threshold", "inf", "--threshold must be in [0, 1], got inf"),
    ("identify", "--threshold", "2", "--threshold must be in [0, 1], got 2.0"),
    ("identify", "--threshold", "-0.1", "--threshold must be in [0, 1], got -0.1"),
    ("identify", "--top", "0", "--top must be >= 1, got 0"),
    ("identify", "--top", "-3", "--top must be >= 1, got -3"),
    ("pack", "--size", "0", "--size must be in [20, 1000], got 0 (a face needs at least 20 pixels"),
    ("pack", "--size", "19", "--size must be in [20, 1000], got 19"),
    ("pack", "--size", "1001", "--size must be in [20, 1000], got 1001"),
    ("pack", "--crop", "0", "--crop must be in (0, 1], got 0.0"),
    ("pack", "--crop", "nan", "--crop must be in (0, 1], got nan"),
    ("pack", "--crop", "1.5", "--crop must be in (0, 1], got 1.5"),
])
def test_every_numeric_option_out_of_range_is_one_line(files, tmp_path, capsys, command, option, value, expected):
    base = {"evaluate": evaluate_args(files), "identify": identify_args(files),
            "pack": pack_args(files, str(tmp_path / "packed"))}[command]
    refused(capsys, base + [option, value], expected)
    assert not os.path.exists(tmp_path / "packed")                  # refused before doing anything


def test_the_ranges_include_their_ends(files, tmp_path, capsys):
    """The checks refuse only what is out of range: the ends are answers."""
    assert cli.main(evaluate_args(files, "--seed", str(2 ** 32 - 1), "--batch-size", "1", "--n-way", "2")) == 0
    for threshold, unknown in (("0", False), ("1", True)):           # p >= 0 always, p >= 1 never here
        assert cli.main(identify_args(files, "--threshold", threshold, "--top", "1000")) == 0
        assert (f"{files['query']}: unknown" in capsys.readouterr().out) == unknown
    assert cli.main(pack_args(files, str(tmp_path / "p"), "--size", "20", "--crop", "0.5")) == 0
    assert os.path.isfile(tmp_path / "p" / "faces-20-crop0.5.npz")


def test_n_way_the_test_file_cannot_serve_names_the_file(files, capsys):
    """8 people, 4 of them in pairsDevTest: a 10-way task cannot be built from it."""
    line = refused(capsys, evaluate_args(files, "--n-way", "10"), "pairsDevTest.txt: a 10-way one-shot task needs 9")
    assert "--n-way to 4 or less" in line


@pytest.mark.parametrize("command", ["train", "experiments", "evaluate", "identify", "pack"])
def test_cache_dir_that_is_a_file_is_refused_by_every_command(files, tmp_path, capsys, monkeypatch, command):
    for name in ("train_and_evaluate", "run_experiment"):           # should a check be missing: fail, not train
        monkeypatch.setattr(f"minisiamese.pipeline.{name}", lambda *a, **k: pytest.fail("not refused"))
    a_file = files["model"]
    argv = {"train": ["train", "--data-dir", files["data"], "--out", str(tmp_path / "r")],
            "experiments": ["experiments", "--data-dir", files["data"], "--out", str(tmp_path / "r"),
                            "--results", str(tmp_path / "results.md")],
            "evaluate": evaluate_args(files), "identify": identify_args(files),
            "pack": pack_args(files, str(tmp_path / "p"))}[command]
    refused(capsys, argv + ["--cache-dir", a_file], f"--cache-dir {a_file!r} is not a folder")
    below = os.path.join(a_file, "sub", "cache")                    # a file further up the path
    refused(capsys, argv + ["--cache-dir", below], f": {a_file} is not a folder")


@pytest.mark.parametrize("command", ["evaluate", "pack"])
def test_out_that_is_a_file_is_refused(files, tmp_path, capsys, command):
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    argv = evaluate_args(files, "--out", str(a_file)) if command == "evaluate" else pack_args(files, str(a_file))
    refused(capsys, argv, f"--out {str(a_file)!r} is not a folder")
    assert a_file.read_text() == "mine"


def test_gallery_that_is_a_file_says_so(files, capsys):
    argv = identify_args(files)
    argv[argv.index("--gallery") + 1] = files["query"]
    refused(capsys, argv, f"{files['query']}: not a folder; the gallery is a folder of people's images")


def test_pack_never_writes_over_the_data_folder(files, tmp_path, capsys):
    pairs = os.path.join(files["data"], "pairsDevTrain.txt")
    before = open(pairs).read()
    for out in (files["data"], os.path.join(files["data"], "lfw2", "..") + os.sep):
        refused(capsys, pack_args(files, out), "is the data folder: packing would write over its pairs files")
    # nor a pairs file given by a path inside --out
    out = tmp_path / "packed"
    out.mkdir()
    inside = out / "pairsDevTest.txt"
    inside.write_text(open(os.path.join(files["data"], "pairsDevTest.txt")).read())
    refused(capsys, pack_args(files, str(out), "--pairs", str(inside)), "would copy it over itself")
    assert open(pairs).read() == before and not os.path.exists(os.path.join(files["data"], "faces-105.npz"))


def test_a_failed_pack_leaves_no_half_packed_folder(files, tmp_path, capsys):
    """A pairs file that names a missing image fails before --out is created, even
    when a good pairs file is listed first (it used to be copied before the images
    were read)."""
    bad = tmp_path / "pairsBad.txt"
    bad.write_text("1\nNobody_Known\t1\t2\nNobody_Known\t1\tNobody_Else\t1\n")
    out = tmp_path / "packed"
    refused(capsys, pack_args(files, str(out), "--pairs", "pairsDevTest.txt", str(bad)),
            "Nobody_Known_0001.jpg: image file missing")
    assert not out.exists()
    assert cli.main(pack_args(files, str(out), "--size", "20", "--pairs", "pairsDevTest.txt")) == 0
    assert sorted(os.listdir(out)) == ["faces-20.npz", "pairsDevTest.txt"]           # no temporary left behind
    assert (out / "pairsDevTest.txt").read_text() == open(os.path.join(files["data"], "pairsDevTest.txt")).read()


@pytest.mark.parametrize("argv, expected", [
    (["evaluate", "--checkpoint", ""], "--checkpoint is empty"),
    (["evaluate", "--pairs", ""], "--pairs is empty"),
    (["train", "--config", "", "--data-dir", "/nonexistent"], "--config is empty"),   # trained the baseline
    (["evaluate", "--cache-dir", ""], "--cache-dir is empty"),        # used to switch the cache off
    (["verify", "", "b.jpg"], "IMAGE1 is empty"),
    (["identify", "q.jpg", "", "--gallery", "g"], "QUERY is empty"),
    (["pack", "--out", "o", "--pairs", "a.txt", ""], "--pairs is empty"),
])
def test_empty_values_are_refused(capsys, argv, expected):
    refused(capsys, argv, expected)


@pytest.mark.parametrize("command", ["evaluate", "verify", "identify"])
def test_a_training_checkpoint_given_as_the_model_says_which_file_to_use(files, capsys, command):
    ckpt = os.path.join(files["run"], "checkpoint.npz")
    argv = {"evaluate": evaluate_args(files), "identify": identify_args(files),
            "verify": ["verify", files["query"], files["query"], "--checkpoint", files["model"]]}[command]
    argv[argv.index("--checkpoint") + 1] = ckpt
    refused(capsys, argv, f"{ckpt}: is a training state (checkpoint.npz); use the model.npz beside it")


def test_a_run_folder_or_a_pipe_given_as_the_model(files, tmp_path, capsys):
    argv = evaluate_args(files)
    argv[argv.index("--checkpoint") + 1] = files["run"]
    refused(capsys, argv, f"{files['run']}: a folder, not a weights file; use {files['model']}")
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    argv[argv.index("--checkpoint") + 1] = fifo
    refused(capsys, argv, f"{fifo}: a special file, not a weights file")


def test_a_bundle_of_another_size_names_the_bundles_there_and_the_one_needed(files, tmp_path, capsys):
    out = str(tmp_path / "packed")
    assert cli.main(pack_args(files, out, "--size", "24", "--pairs", "pairsDevTest.txt")) == 0
    capsys.readouterr()
    argv = evaluate_args(files)
    argv[argv.index("--data-dir") + 1] = out
    refused(capsys, argv, f"{out}: holds the face bundle(s) faces-24.npz, but the model needs faces-20.npz "
                          f"(size 20, crop 1)")
    assert cli.main(pack_args(files, out, "--size", "20", "--pairs", "pairsDevTest.txt")) == 0
    assert cli.main(argv) == 0                                       # the bundle it needs: evaluated


def test_paths_with_spaces_work(files, tmp_path, capsys):
    out, cache = tmp_path / "my results", tmp_path / "my cache"
    assert cli.main(evaluate_args(files, "--out", str(out), "--cache-dir", str(cache))) == 0
    assert (out / "results.json").is_file() and any(cache.iterdir())


def test_conv_plan_timings_go_under_the_cache_dir_given(files, tmp_path, monkeypatch):
    probe = ({"im2col": 1.0, "fft": 0.2, "fft_fixed": 0.1}, {"im2col": 32, "fft": 64})
    monkeypatch.setattr(convplan, "_probe", lambda *a: probe)
    monkeypatch.setattr(convplan, "DECISIONS", {})
    monkeypatch.setattr(convplan, "_PROBES", {})
    cache = tmp_path / "cache"
    assert cli.main(evaluate_args(files, "--cache-dir", str(cache))) == 0
    assert (cache / "convplan.json").is_file()
    assert convplan.store_path() == os.path.join(cache_root(), "convplan.json")   # the default again after


@pytest.mark.parametrize("command", ["train", "experiments", "evaluate", "identify", "pack"])
def test_every_cache_dir_help_names_the_environment_variable(capsys, command):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "$MINISIAMESE_CACHE when set, else ~/.cache/minisiamese" in text and "convplan.json" in text


@pytest.mark.parametrize("option", ["--config", "--pairs"])
def test_an_input_file_that_is_a_pipe_or_a_folder_is_refused_not_read(files, tmp_path, capsys, request, option):
    """A named pipe as --config or --pairs hung the command (reading waits for a writer)."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    # writers that end at once, so that a missing check reads nothing and fails rather than hangs
    stop = threading.Event()

    def writers():
        while not stop.is_set():
            open(fifo, "wb").close()

    def release():
        stop.set()
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))          # frees the writer waiting for a reader

    threading.Thread(target=writers, daemon=True).start()
    request.addfinalizer(release)
    argv = (["train", "--data-dir", files["data"], "--out", str(tmp_path / "r")] if option == "--config"
            else evaluate_args(files))
    refused(capsys, argv + [option, fifo], f"{option} {fifo!r}: not a regular file (a named pipe or device)")
    refused(capsys, argv + [option, str(tmp_path)], f"{option} {str(tmp_path)!r}: not a regular file (a folder)")
    inside = "lfw2"                                                   # a name inside --data-dir, as --pairs takes
    if option == "--pairs":
        refused(capsys, pack_args(files, str(tmp_path / "p"), "--pairs", "pairsDevTest.txt", inside),
                "not a regular file (a folder)")


def test_output_files_and_the_data_folder_in_the_wrong_place(files, tmp_path, capsys):
    a_file = files["model"]
    refused(capsys, identify_args(files, "--figure", files["gallery"]), "is a folder; give a file name")
    refused(capsys, identify_args(files, "--figure", os.path.join(a_file, "id.png")), f": {a_file} is not a folder")
    refused(capsys, ["experiments", "--results", os.path.join(a_file, "r.md")], f": {a_file} is not a folder")
    refused(capsys, evaluate_args(files, "--data-dir", a_file), f"--data-dir {a_file!r} is not a folder")


def test_a_config_nested_too_deeply_is_one_line(files, tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    refused(capsys, ["train", "--config", str(deep), "--data-dir", files["data"], "--out", str(tmp_path / "r")],
            f"{deep}: nested too deeply to be a config")


@pytest.mark.parametrize("damage", ["{bad", "[1, 2]", "[" * 100000 + "]" * 100000])
def test_a_damaged_finished_run_is_named_not_read_into_a_traceback(files, tmp_path, capsys, damage):
    """experiments skips a run whose results.json is there: a damaged one is
    named, with what to do, instead of a JSON traceback."""
    out = tmp_path / "runs"
    (out / "baseline").mkdir(parents=True)
    (out / "baseline" / "results.json").write_text(damage)
    line = refused(capsys, ["experiments", "--only", "baseline", "--out", str(out), "--data-dir", files["data"],
                            "--results", str(tmp_path / "report" / "results.md"), "--quiet"],
                   f"{out / 'baseline' / 'results.json'}: ")
    assert "damaged results" in line or "cannot read the results" in line
    assert "--force" in line


@pytest.mark.parametrize("setting", ["train.lr=" + "9" * 100000, "model.head=" + "x" * 100000,
                                     "y" * 100000 + "=3", "train.epochs=" + "9" * 4000],
                         ids=["number", "name", "key", "integer"])
def test_a_huge_value_is_named_in_a_line_of_readable_length(files, tmp_path, capsys, setting):
    """A value pasted by mistake is cut in the middle of the error line, which
    still names the setting at fault and says how much was left out."""
    assert cli.main(["train", "--data-dir", files["data"], "--out", str(tmp_path / "r"), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert len(err) < cli.ERROR_CHARS + 100 and err.count("\n") == 1
    assert err.startswith("error: --set") and ("characters left out" in err or "an integer of about 4000 digits" in err)


def test_a_config_file_with_a_number_too_long_to_convert_is_one_line(files, tmp_path, capsys):
    cfg = tmp_path / "long.json"
    cfg.write_text('{"train": {"lr": ' + "9" * 5000 + "}}")
    assert cli.main(["train", "--data-dir", files["data"], "--out", str(tmp_path / "r"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg}: not a readable config") and err.count("\n") == 1


@pytest.mark.parametrize("stored", ['{"dense_units": ' + "9" * 5000 + "}", "[" * 100000 + "]" * 100000])
def test_a_model_file_whose_stored_config_cannot_be_read_is_named(files, tmp_path, capsys, stored):
    """A weights file with a stored config JSON cannot turn into a Python value
    (a number too long to convert, nesting too deep) is a one-line error."""
    from minisiamese.fileio import load_arrays
    arrays = load_arrays(files["model"])
    arrays["config"] = np.array(stored)
    bad = tmp_path / "model.npz"
    save_arrays(str(bad), arrays)
    refused(capsys, ["verify", files["query"], files["query"], "--checkpoint", str(bad), "--device", "cpu"],
            f"{bad}: bad stored config")


def test_pack_refuses_a_pipe_for_people_of_and_two_pairs_files_of_one_name(files, tmp_path, capsys):
    """--people-of is checked like --pairs (a named pipe used to hang pack), and
    two pairs files of the same name are refused instead of one silently
    overwriting the other in the bundle's folder."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    refused(capsys, pack_args(files, str(tmp_path / "a"), "--people-of", fifo),
            f"--people-of {fifo!r}: not a regular file (a named pipe or device)")
    other = tmp_path / "other"
    other.mkdir()
    (other / "pairsDevTest.txt").write_bytes(open(os.path.join(files["data"], "pairsDevTrain.txt"), "rb").read())
    refused(capsys, pack_args(files, str(tmp_path / "b"), "--pairs", "pairsDevTest.txt",
                              str(other / "pairsDevTest.txt")),
            f"{other / 'pairsDevTest.txt'}: has the same name as {os.path.join(files['data'], 'pairsDevTest.txt')}")
    assert not (tmp_path / "b").exists()


def test_a_bundle_with_faces_of_another_size_than_its_name_is_named(files, tmp_path, capsys):
    from minisiamese.fileio import load_arrays
    out = tmp_path / "packed"
    assert cli.main(pack_args(files, str(out), "--size", "24", "--pairs", "pairsDevTest.txt")) == 0
    capsys.readouterr()
    arrays = load_arrays(out / "faces-24.npz")
    arrays["images"] = np.zeros((len(arrays["keys"]), 30, 30), np.uint8)
    save_arrays(str(out / "faces-24.npz"), arrays)
    argv = evaluate_args(files)
    argv[argv.index("--data-dir") + 1] = str(out)
    model = str(tmp_path / "m24.npz")
    save_model(model, SiameseNet(ModelConfig(input_size=24, conv_filters=(2,), conv_kernels=(3,), dense_units=4),
                                 seed=0))
    argv[argv.index("--checkpoint") + 1] = model
    refused(capsys, argv, f"{out / 'faces-24.npz'}: holds 30x30 faces, not the 24x24 its name promises")


def test_an_argparse_error_on_a_huge_value_is_clipped_too(files, tmp_path, capsys):
    """argparse's own errors (an --epochs of 5,000 digits, not an int it can
    read) are cut like the library's, not printed whole."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--data-dir", files["data"], "--out", str(tmp_path / "r"), "--epochs", "9" * 5000])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "argument --epochs: invalid int value" in err
    assert "characters left out" in err and len(err.splitlines()[-1]) < cli.ERROR_CHARS + 100
