"""``experiments`` tried as a hostile user would: kept results that lie about
their figures or their seed, named pipes and folders where results belong, a
folder it cannot write, options that contradict each other.  Each is one error
line naming the file, folder or option, before any training."""
import json
import os
import re
import shutil
import signal

import pytest

import cli
from minisiamese import pipeline, report
from minisiamese.pipeline import kept_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEPT = os.path.join(ROOT, "docs", "results")
TEMPLATE = os.path.join(KEPT, "seeds", "baseline-s0.json")


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(pipeline, "train_and_evaluate", lambda *a, **k: pytest.fail("trained before checking"))


@pytest.fixture(autouse=True)
def no_hang():
    """A test that would hang (a named pipe read) fails instead."""
    def stop(signum, frame):
        pytest.fail("hung")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def experiments(tmp_path, *extra):
    return ["experiments", "--only", "dropout", "--out", str(tmp_path / "runs"), "--results",
            str(tmp_path / "docs" / "results.md"), "--data-dir", str(tmp_path / "no-data"), "--device", "cpu", *extra]


def refused(capsys, argv, expected):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and expected in err, err
    return err


def kept_copy(tmp_path):
    shutil.copytree(KEPT, tmp_path / "docs" / "results")
    return tmp_path / "docs" / "results"


def write_seed(kept, name, change):
    res = json.load(open(TEMPLATE))
    change(res)
    (kept / "seeds" / name).write_text(json.dumps(res))              # json writes NaN and Infinity as JSON does not
    return kept / "seeds" / name


@pytest.mark.parametrize("field, change", [
    ("accuracy", lambda r: r.update(accuracy=float("nan"))),
    ("accuracy", lambda r: r.update(accuracy=7.5)),
    ("auc", lambda r: r.update(auc=float("inf"))),
    ("oneshot", lambda r: r.update(oneshot=-0.1)),
    ("precision", lambda r: r.update(precision=1.01)),
    ("recall", lambda r: r.update(recall=float("-inf"))),
    ("tuned.accuracy", lambda r: r["tuned"].update(accuracy=float("nan"))),
    ("view2 accuracy_mean", lambda r: r["view2"]["leak_free"].update(accuracy_mean=4.05)),
    ("view2 auc_mean", lambda r: r["view2"].update(auc_mean=float("nan"))),
    ("view2 fold accuracy", lambda r: r["view2"]["leak_free"]["folds"][0].update(accuracy=2.0)),
])
def test_a_kept_seed_result_out_of_range_is_damaged(tmp_path, capsys, no_training, field, change):
    """NaN, infinity or a figure outside [0, 1] never reaches the seeds table (once
    it showed 'nan ± nan' and a mean accuracy of 4.050)."""
    kept = kept_copy(tmp_path)
    (kept / "dropout.json").unlink()
    path = write_seed(kept, "baseline-s7.json", lambda r: (r.update(seed=7), change(r)))
    err = refused(capsys, experiments(tmp_path), f"{path}: damaged results ({field} must be a number in [0, 1], got ")
    assert not (tmp_path / "docs" / "results.md").exists()
    with pytest.raises(pipeline.DataError, match="damaged results"):                 # the table refuses it too
        report.collect_seeds(str(tmp_path / "runs" / "seeds"), str(kept / "seeds"))
    assert re.search(r"got (nan|-?inf|-?[0-9.]+)\)", err), err                       # the bad value is shown


def test_a_seed_result_copied_under_another_seeds_name_is_refused(tmp_path, capsys, no_training):
    """baseline-s0.json saved as baseline-s9.json (its fields still say seed 0)
    does not count as a second seed."""
    kept = kept_copy(tmp_path)
    (kept / "dropout.json").unlink()
    shutil.copyfile(kept / "seeds" / "baseline-s0.json", kept / "seeds" / "baseline-s9.json")
    refused(capsys, experiments(tmp_path), f"{kept / 'seeds' / 'baseline-s9.json'}: damaged results (its name says "
                                           f"seed 9, its seed field 0")
    with pytest.raises(pipeline.DataError, match="baseline-s9.json: damaged results"):
        report.collect_seeds(str(tmp_path / "runs" / "seeds"), str(kept / "seeds"))
    run = tmp_path / "runs" / "seeds" / "best-s4"                          # a run folder's results alike
    os.remove(kept / "seeds" / "baseline-s9.json")
    run.mkdir(parents=True)
    shutil.copyfile(kept / "seeds" / "best-s1.json", run / "results.json")
    refused(capsys, experiments(tmp_path), f"{run / 'results.json'}: damaged results (its name says seed 4")


@pytest.mark.parametrize("where", ["seeds/extra.json", "extra.json", "selection/extra.json",
                                   "../../runs/seeds/best-s0/results.json", "../../runs/narrow/results.json"])
@pytest.mark.parametrize("kind", ["pipe", "folder"])
def test_a_named_pipe_or_folder_among_the_results_is_refused_unread(tmp_path, capsys, no_training, where, kind):
    """A named pipe with a .json name once hung ``experiments`` forever."""
    kept = kept_copy(tmp_path)
    (kept / "dropout.json").unlink()
    path = os.path.normpath(kept / where)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path) if kind == "pipe" else os.mkdir(path)
    refused(capsys, experiments(tmp_path), f"{path}: not a regular file (a {'named pipe' if kind == 'pipe' else 'folder'})")


def test_a_results_folder_it_cannot_write_is_named_before_training(tmp_path, capsys, no_training):
    kept = kept_copy(tmp_path)
    (kept / "dropout.json").unlink()
    shutil.rmtree(kept / "seeds")
    (kept / "seeds").write_text("not a folder")                 # where the kept seed results go
    refused(capsys, experiments(tmp_path, "--seeds", "0"),
            f"{kept / 'seeds'}: cannot write the kept results folder there (it is a file, not a folder)")
    shutil.rmtree(kept)                                            # the plain experiments keep theirs in docs/results
    kept.write_text("not a folder")
    refused(capsys, experiments(tmp_path), f"{kept}: cannot write the kept results folder there")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_results_folder_is_named_before_training(tmp_path, capsys, no_training):
    kept = kept_copy(tmp_path)
    (kept / "dropout.json").unlink()
    os.chmod(tmp_path / "docs", 0o555)
    try:
        refused(capsys, experiments(tmp_path), f"{tmp_path / 'docs'}: cannot write the results table's folder there")
    finally:
        os.chmod(tmp_path / "docs", 0o755)


def test_seed_and_seeds_together_are_refused(tmp_path, capsys, no_training):
    """--seeds 0 --seed 5 once dropped --seed 5 without a word."""
    refused(capsys, experiments(tmp_path, "--seeds", "0", "--seed", "5"), "--seed 5 and --seeds conflict")
    assert not (tmp_path / "runs").exists()


def test_the_kept_results_layout():
    assert kept_path(os.path.join("docs", "results.md")) == os.path.join("docs", "results")
    assert kept_path("results.md", "best") == os.path.join(".", "results", "best.json")
    assert kept_path(os.path.join("d", "r.md"), "best", 2) == os.path.join("d", "results", "seeds", "best-s2.json")


def test_run_experiments_trains_each_preset_and_seed_in_its_place(tmp_path, monkeypatch):
    """The presets x seeds loop is the library's: each seed run trains in
    OUT/seeds/NAME-sSEED with its own seed, is kept as
    docs/results/seeds/NAME-sSEED.json, and the table is written."""
    trained = []

    def fake(config, out_dir, data_dir, device, seed, cache_dir, **kwargs):
        res = json.load(open(TEMPLATE))
        res.update(seed=seed, experiment=kwargs["experiment"])
        os.makedirs(out_dir, exist_ok=True)
        json.dump(res, open(os.path.join(out_dir, "results.json"), "w"))
        trained.append((os.path.relpath(out_dir, tmp_path), seed, config.train.epochs))
        return res
    monkeypatch.setattr(pipeline, "train_and_evaluate", fake)
    results = tmp_path / "docs" / "results.md"
    from minisiamese.runconfig import ExperimentConfig
    rows = report.run_experiments(["best", "narrow"], [3, 5], str(tmp_path / "runs"), str(results),
                                  lambda name: ExperimentConfig.preset(name), "data", "cpu", 0, None,
                                  log=lambda m: None, progress=False)
    assert trained == [(os.path.join("runs", "seeds", f"{n}-s{s}"), s, 60 if n == "best" else 25)
                       for n in ("best", "narrow") for s in (3, 5)]
    assert sorted(os.listdir(tmp_path / "docs" / "results" / "seeds")) == ["best-s3.json", "best-s5.json",
                                                                          "narrow-s3.json", "narrow-s5.json"]
    table = results.read_text()
    assert "`python3 cli.py experiments --only best narrow --seeds 3 5`" in table and "| narrow | " in table
    assert rows == {}                                              # no single-seed experiment ran
    trained.clear()                                                # finished: a rerun trains nothing
    report.run_experiments(["best"], [3], str(tmp_path / "runs"), str(results), ExperimentConfig.preset, "data",
                           "cpu", 0, None, log=lambda m: None, progress=False)
    assert trained == []
