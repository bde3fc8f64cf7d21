"""End to end on the real LFW-a (a small stratified subset, a tiny network).
Skipped where ../shared/data/lfw-a is absent."""
import json
import os

import pytest

import cli
from fixtures import tiny_config
from minisiamese.data import DEFAULT_DATA_DIR, read_pairs, read_pairs_folds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.normpath(os.path.join(ROOT, DEFAULT_DATA_DIR))
needs_data = pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "lfw2")), reason=f"no LFW-a at {DATA}")


@needs_data
def test_official_pairs_files_parse_with_their_counts():
    train, test = read_pairs(os.path.join(DATA, "pairsDevTrain.txt")), read_pairs(os.path.join(DATA, "pairsDevTest.txt"))
    assert len(train) == 2200 and sum(p.label for p in train) == 1100
    assert len(test) == 1000 and sum(p.label for p in test) == 500
    people_train = {p.name1 for p in train} | {p.name2 for p in train}
    people_test = {p.name1 for p in test} | {p.name2 for p in test}
    assert not people_train & people_test                      # View 1 keeps identities apart
    folds = read_pairs_folds(os.path.join(DATA, "pairs.txt"))
    assert len(folds) == 10 and all(len(f) == 600 for f in folds)


@needs_data
def test_cli_train_on_a_real_subset(tmp_path, capsys):
    cfg = tiny_config(str(tmp_path / "cfg.json"), epochs=2, batch_size=16, oneshot_way=10)
    out = str(tmp_path / "run")
    code = cli.main(["train", "--config", cfg, "--out", out, "--data-dir", DATA, "--max-pairs", "80",
                     "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["pairs"] == 80 and res["oneshot_tasks"] == 40 and res["epochs_run"] == 2
    assert 0 <= res["accuracy"] <= 1 and 0 <= res["auc"] <= 1
