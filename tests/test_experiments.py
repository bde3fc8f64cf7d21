"""The results table: built from the results kept in docs/results/, so a
checkout without runs/ regenerates it whole; View 2 with its leak-free subset."""
import json
import os
import shutil

import numpy as np
import pytest

import cli
from fixtures import make_dataset
from minisiamese import ModelConfig, SiameseNet
from minisiamese import pipeline, runfiles
from minisiamese import report as ex
from minisiamese.data import DataError
from minisiamese.evaluate import evaluate_folds, train_people
from minisiamese.data import Normalizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEPT = os.path.join(ROOT, "docs", "results")


def committed_rows():
    return {f[:-5]: json.load(open(os.path.join(KEPT, f))) for f in os.listdir(KEPT) if f.endswith(".json")}


def oneshot(r):
    """A row's one-shot cell: marked † when the result predates distinct distractors (no test_probs)."""
    return f"{r['oneshot']:.3f}" + ("" if "test_probs" in r else "†")


def test_regenerating_without_runs_keeps_every_committed_row(tmp_path, capsys):
    """A fresh checkout: no runs/, the committed docs/results/*.json only.
    Running an experiment that finished elsewhere skips it (no training), and
    the rewritten table still holds every committed row."""
    docs = tmp_path / "docs"
    shutil.copytree(KEPT, docs / "results")
    rows = committed_rows()
    assert {"baseline", "narrow"} <= set(rows)
    name = sorted(rows)[0]
    code = cli.main(["experiments", "--only", name, "--out", str(tmp_path / "runs"), "--results",
                     str(docs / "results.md"), "--data-dir", str(tmp_path / "no-data-needed"), "--device", "cpu"])
    assert code == 0
    assert "finished before" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "runs" / name)                      # nothing trained
    table = open(docs / "results.md").read()
    for n, r in rows.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {ex.TITLES[n]} |"))
        if n in ex.EXPERIMENTS:
            assert f"| {r['accuracy']:.3f} | {oneshot(r)} | {r['recall']:.3f} | {r['precision']:.3f} | " \
                   f"{r['auc']:.3f} |" in row, row
        else:                                                                   # an ablation row
            assert f"| {r['val']['accuracy']:.3f} | {r['val']['auc']:.3f} | {r['accuracy']:.3f} | " \
                   f"{r['auc']:.3f} | {oneshot(r)} |" in row, row
    missing = set(ex.EXPERIMENTS) - set(rows)                                 # seed rows with no run
    assert ("not run yet" in table) == bool(missing), sorted(missing)


def test_a_finished_run_is_kept_with_its_history(tmp_path):
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    (runs / "dropout").mkdir(parents=True)
    kept.mkdir()
    res = {"accuracy": 0.6, "oneshot": 0.3, "recall": 0.5, "precision": 0.7, "auc": 0.65, "epochs_run": 3,
           "best_epoch": 2, "parameters": 1, "wall_seconds": 60, "device": "cpu", "model": "/somewhere/model.npz",
           "conv_plan": [{"layer": "conv1", "algo": "im2col"}, {"layer": "conv2", "algo": "fft"}]}
    history = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.55}]
    json.dump(res, open(runs / "dropout" / "results.json", "w"))
    json.dump(history, open(runs / "dropout" / "history.json", "w"))
    rows = ex.collect(str(runs), str(kept))
    saved = json.load(open(kept / "dropout.json"))
    assert saved["history"] == history and "model" not in saved and saved["accuracy"] == 0.6
    assert ex.collect(str(tmp_path / "empty"), str(kept))["dropout"] == saved          # runs/ gone: still there
    table = ex.results_markdown(rows, "cmd")
    assert "| + dropout 10 % | 0.600 | 0.300† |" in table and "| fft: conv2 |" in table
    assert ex.OLD_DRAW_NOTE in table                                   # a result without test_probs: the old draw
    rows["dropout"]["test_probs"] = [0.5, 0.5]
    table = ex.results_markdown(rows, "cmd")
    assert "| + dropout 10 % | 0.600 | 0.300 |" in table and ex.OLD_DRAW_NOTE not in table
    assert ex.plot_val_curves(rows, str(tmp_path / "curves.png")) and os.path.getsize(tmp_path / "curves.png") > 0


def test_view2_leak_free_subset(tmp_path):
    """pairs.txt in 2 folds over people some of whom are in pairsDevTrain: the
    leak-free part is exactly the pairs with no training person, and its
    per-fold thresholds come from the other fold's leak-free pairs."""
    root = str(tmp_path / "data")
    names = make_dataset(root, people=10, per_person=4, pairs_per_class=6)
    rng = np.random.default_rng(0)
    seen = train_people(root)
    assert seen and seen <= set(names)
    lines = ["2\t6"]
    for fold in range(2):        # each fold: both classes with and without training people; no pair listed twice
        i, j = 1 + 2 * fold, 2 + 2 * fold
        outside, inside = rng.permutation([n for n in names if n not in seen]), rng.permutation(sorted(seen))
        lines += [f"{n}\t{i}\t{j}" for n in [*outside[:3], *inside[:3]]]
        lines += [f"{a}\t{i}\t{b}\t{j}" for a, b in [*zip(outside[:3], outside[1:4]), *zip(inside[:3], outside[:3])]]
    open(os.path.join(root, "pairs.txt"), "w").write("\n".join(lines) + "\n")
    expected = sum(1 for line in lines[1:] if not set(line.split("\t")[::2][:2] if len(line.split("\t")) == 4
                                                     else [line.split("\t")[0]]) & seen)
    net = SiameseNet(ModelConfig(input_size=20, conv_filters=(3, 4), conv_kernels=(3, 3), dense_units=5), seed=1)
    res = evaluate_folds(net, Normalizer(), root, os.path.join(root, "pairs.txt"), None, 8, seen)
    assert res["pairs"] == 24 and len(res["folds"]) == 2
    clean = res["leak_free"]
    assert clean["pairs"] == expected == sum(f["pairs"] for f in clean["folds"])
    assert 0 <= clean["accuracy_mean"] <= 1 and clean["accuracy_std"] >= 0
    assert "| leak-free accuracy |" in "\n".join(ex.view2_markdown({"baseline": {"view2": res}}))
    table = "\n".join(ex.view2_markdown({"baseline": {"view2": res}, "narrow": {}}))   # narrow: no pairs.txt
    assert f"| {ex.TITLES['baseline']} |" in table and f"| {ex.TITLES['narrow']} |" not in table
    assert f"Not evaluated on View 2: {ex.TITLES['narrow']} (run without pairs.txt" in table


def test_selection_runs_are_kept_and_tabled_with_their_changes(tmp_path):
    from minisiamese.runconfig import BEST
    runs, kept = tmp_path / "runs" / "sel", tmp_path / "kept"
    config = BEST.to_dict()
    config["model"]["crop"] = 1.0
    config["augment"]["kind"] = "seed"
    val = {"loss": 0.61, "accuracy": 0.7, "auc": 0.77, "pairs": 440}
    for name, res in (("nocrop", {"val": val, "config": config}),
                      ("tested", {"val": val, "config": config, "accuracy": 0.7, "oneshot": 0.3, "recall": 0.7,
                                  "precision": 0.7, "auc": 0.8, "parameters": 10})):    # not validation-only
        (runs / name).mkdir(parents=True)
        res.update({"protocol": "unrestricted", "epochs_run": 9, "best_epoch": 4, "wall_seconds": 600,
                    "device": "cpu", "model": "/x/model.npz"})
        json.dump(res, open(runs / name / "results.json", "w"))
    json.dump([{"epoch": 1, "val_accuracy": 0.6}], open(runs / "nocrop" / "history.json", "w"))
    rows = ex.collect_selection(str(runs), str(kept))
    assert list(rows) == ["nocrop"] and rows["nocrop"]["history"][0]["val_accuracy"] == 0.6
    assert "model" not in json.load(open(kept / "nocrop.json"))
    shutil.rmtree(tmp_path / "runs")
    assert ex.collect_selection(str(runs), str(kept)) == rows                   # survives without runs/
    table = "\n".join(ex.selection_markdown(rows))
    line = next(line for line in table.splitlines() if line.startswith("| nocrop |"))
    assert "`augment.kind=\"seed\"`, `model.crop=1.0`" in line and "| 0.6100 | 0.700 | 0.770 | 9 (4) | 10 min |" in line
    page = ex.results_markdown({}, "cmd", figures_rel="figs", selection=rows, selection_notes="Crop helps.")
    assert "(figs/selection.png)" in page and "Crop helps." in page
    assert ex.plot_val_curves(rows, str(tmp_path / "sel.png"), keys=("val_loss", "val_accuracy", "val_auc"))


@pytest.mark.parametrize("where, damage", [
    ("narrow.json", b'{"accuracy": 0.6'),                                  # truncated
    ("narrow.json", b"[]"),
    ("narrow.json", b"{}"),
    ("narrow.json", b'{"accuracy": "x", "wall_seconds": 1, "epochs_run": 1, "best_epoch": 1}'),
    ("seeds/baseline-s0.json", b'{"acc'),
    ("discussion.md", b"\xff\xfe"),
])
def test_a_damaged_kept_file_is_named_before_any_training(tmp_path, capsys, monkeypatch, where, damage):
    """Every file the report will read is read first: a damaged one is one line
    naming it, before the hours of training (which used to end in a traceback
    when the table was written)."""
    monkeypatch.setattr(pipeline, "train_and_evaluate", lambda *a, **k: pytest.fail("trained before checking"))
    docs = tmp_path / "docs"
    shutil.copytree(KEPT, docs / "results")
    (docs / "results" / "dropout.json").unlink()                          # dropout would train
    (docs / "results" / where).write_bytes(damage)
    code = cli.main(["experiments", "--only", "dropout", "--out", str(tmp_path / "runs"), "--results",
                     str(docs / "results.md"), "--data-dir", str(tmp_path / "no-data"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {docs / 'results' / where}: ") and "\n" not in err, err
    assert not (docs / "results.md").exists()


def test_a_damaged_run_folder_never_replaces_its_kept_copy(tmp_path, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(KEPT, docs / "results")
    good = (docs / "results" / "baseline.json").read_bytes()
    run = tmp_path / "runs" / "baseline"
    run.mkdir(parents=True)
    res = json.loads(good)
    res["accuracy"] = "x"
    (run / "results.json").write_text(json.dumps(res))
    code = cli.main(["experiments", "--only", "narrow", "--out", str(tmp_path / "runs"), "--results",
                     str(docs / "results.md"), "--data-dir", str(tmp_path / "no-data"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"{run / 'results.json'}: damaged results (accuracy must be a number, got 'x')" in err
    assert (docs / "results" / "baseline.json").read_bytes() == good
    with pytest.raises(DataError, match="damaged results"):                  # the report itself refuses it too
        ex.write_report(str(tmp_path / "runs"), str(docs / "results.md"), "cmd")
    assert (docs / "results" / "baseline.json").read_bytes() == good


def test_results_the_pipeline_writes_for_odd_data_and_other_commands_pass_the_checks(tmp_path):
    """View 2 parts with no pair or one class (None means, no folds) are
    results the pipeline writes itself; an ``evaluate --out`` folder under
    sel/ is not a training run and is left out, not called damaged."""
    res = json.load(open(os.path.join(KEPT, "seeds", "bn512w-uncal-s0.json")))
    res["view2"]["leak_free"] = {"accuracy_mean": None, "auc_mean": None, "pairs": 0, "folds": []}
    assert runfiles.check_results(res, "x.json") is res
    res["view2"]["leak_free"] = {"accuracy_mean": 0.7, "auc_mean": None, "pairs": 4,
                                 "folds": [{"accuracy": 0.7, "auc": None}]}
    assert runfiles.check_results(res, "x.json") is res
    table = "\n".join(ex.seeds_markdown({"p": {0: res}}))
    assert "| p | unrestricted | 0 | cpu |" in table and "| 0.700 | n/a |" in table
    other = tmp_path / "runs" / "sel" / "evaluated"
    other.mkdir(parents=True)
    (other / "results.json").write_text(json.dumps({"accuracy": 0.7, "pairs_file": "pairsDevTest.txt"}))
    ex.check_report_inputs(str(tmp_path / "runs"), str(tmp_path / "docs" / "results.md"))
    assert ex.collect_selection(str(tmp_path / "runs" / "sel"), str(tmp_path / "kept")) == {}
