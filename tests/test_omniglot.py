"""Omniglot (issue 35): the loader and its checks, Lake's runs, within-alphabet tasks and pairs, the final
figures, and train/evaluate --dataset omniglot end to end -- on a tiny Omniglot-layout tree the tests make,
and on a few real runs from ../shared/data/omniglot (skipped where it is absent)."""
import json
import os
import shutil

import numpy as np
import pytest

import cli
from fixtures import TINY_MODEL
from minisiamese import omniglot, oneshot
from minisiamese.config import ConfigError
from minisiamese.data import DataError, Normalizer, PairSet
from minisiamese.evaluate import evaluate_omniglot
from minisiamese.pairsampler import IdentityPool
from minisiamese.runconfig import RUN_PRESETS, ExperimentConfig, build_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.normpath(os.path.join(ROOT, omniglot.DEFAULT_DATA_DIR))


def _drawing(pattern, rng, side=105):
    """Black strokes (False) on white: a character's 7x7 pattern of 15-pixel cells, shifted a little per image."""
    img = ~np.kron(pattern, np.ones((15, 15), dtype=bool))
    return np.roll(img, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))


def _save(path, arr):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).convert("1").save(path)


def make_omniglot(root, per_char=2, seed=0):
    """A tiny tree with Omniglot's layout: 2 background alphabets (4 and 3 characters, 3 images each, named
    as no real file is), the 10 validation alphabets (3 characters), the 10 run alphabets (2 characters, one
    with 20), and one run of 20 classes."""
    rng = np.random.default_rng(seed)

    def character(folder, n):
        pattern = rng.random((7, 7)) < 0.35
        for k in range(n):
            _save(os.path.join(folder, f"img_{k}_x.png"), _drawing(pattern, rng))
        return pattern

    for alphabet, chars in (("Alpha", 4), ("Beta", 3)):
        for c in range(chars):
            character(os.path.join(root, omniglot.BACKGROUND, alphabet, f"character{c + 1:02d}"), 3)
    for alphabet in omniglot.VALIDATION_ALPHABETS:
        for c in range(3):
            character(os.path.join(root, omniglot.EVALUATION, alphabet, f"character{c + 1:02d}"), per_char)
    for alphabet in omniglot.RUN_ALPHABETS:
        for c in range(20 if alphabet == "Atlantean" else 2):
            character(os.path.join(root, omniglot.EVALUATION, alphabet, f"character{c + 1:02d}"), per_char)
    run = os.path.join(root, omniglot.RUNS, "run01")
    order = rng.permutation(20)
    lines = []
    for k in range(20):
        pattern = rng.random((7, 7)) < 0.35
        _save(os.path.join(run, "training", f"class{k + 1:02d}.png"), _drawing(pattern, rng))
        _save(os.path.join(run, "test", f"item{order[k] + 1:02d}.png"), _drawing(pattern, rng))
        lines.append((order[k] + 1, k + 1))
    with open(os.path.join(run, "class_labels.txt"), "w") as f:
        f.write("".join(f"run01/test/item{i:02d}.png run01/training/class{c:02d}.png\n" for i, c in sorted(lines)))
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_omniglot(str(tmp_path_factory.mktemp("omniglot")))


def tiny_omniglot_config(path, epochs=2, **train):
    cfg = {"dataset": "omniglot", "model": TINY_MODEL, "augment": {"kind": "koch", "copies": 1},
           "train": dict({"epochs": epochs, "batch_size": 8, "lr": 1e-3, "patience": 5, "pairs": "identities",
                          "pairs_per_epoch": 32, "val_pairs": 20, "val_tasks": 12, "oneshot_way": 3,
                          "monitor": "val_oneshot"}, **train)}
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


# ----------------------------------------------------------------------------- the loader
def test_the_loader_reads_any_file_names_inverted_and_resized(tree, tmp_path):
    pool = omniglot.load_characters(tree, omniglot.BACKGROUND, 105, str(tmp_path))
    assert pool.images.shape == (21, 105, 105) and pool.images.dtype == np.uint8
    assert pool.names[0] == "Alpha/character01" and pool.group_names == ["Alpha", "Beta"]
    assert list(pool.counts) == [3] * 7 and list(pool.group[:4]) == [0] * 4
    frac = (pool.images == 255).mean()                    # strokes are 255 (1.0) on 0, and the rarer
    assert 0.1 < frac < 0.5 and set(np.unique(pool.images)) == {0, 255}
    small = omniglot.load_characters(tree, omniglot.BACKGROUND, 28, str(tmp_path))
    assert small.images.shape == (21, 28, 28)
    again = omniglot.load_characters(tree, omniglot.BACKGROUND, 28, str(tmp_path))      # from the cache
    np.testing.assert_array_equal(again.images, small.images)


def _copy(tree, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(tree, root)
    return root


def _break_set(root):
    shutil.rmtree(os.path.join(root, omniglot.EVALUATION))
    return os.path.join(root, omniglot.EVALUATION), "folder missing"


def _break_alphabet(root):
    shutil.rmtree(os.path.join(root, omniglot.EVALUATION, "Keble"))
    return os.path.join(root, omniglot.EVALUATION, "Keble"), "alphabet folder missing"


def _break_character(root):
    folder = os.path.join(root, omniglot.BACKGROUND, "Beta", "character02")
    for name in sorted(os.listdir(folder))[1:]:
        os.remove(os.path.join(folder, name))
    return folder, "1 PNG image(s); a character needs at least 2"


def _break_size(root):
    path = os.path.join(root, omniglot.BACKGROUND, "Alpha", "character03", "img_1_x.png")
    _save(path, np.ones((100, 104), dtype=bool))
    return path, "104x100 pixels; an Omniglot image is 105x105"


def _break_labels(root):
    os.remove(os.path.join(root, omniglot.RUNS, "run01", "training", "class07.png"))
    labels = os.path.join(root, omniglot.RUNS, "run01", "class_labels.txt")
    line = next(k for k, text in enumerate(open(labels), 1) if "class07" in text)
    return f"{labels}:{line}", "names run01/training/class07.png, which is missing"


def _break_labels_file(root):
    labels = os.path.join(root, omniglot.RUNS, "run01", "class_labels.txt")
    os.remove(labels)
    return labels, "missing"


def _break_labels_line(root):
    labels = os.path.join(root, omniglot.RUNS, "run01", "class_labels.txt")
    with open(labels, "a") as f:
        f.write("run01/test/item01.png\n")
    return f"{labels}:21", "expected 'test image' 'training image'"


@pytest.mark.parametrize("damage", [_break_set, _break_alphabet, _break_character, _break_size, _break_labels,
                                    _break_labels_file, _break_labels_line])
def test_every_bad_input_is_one_line_naming_it_before_training(tree, tmp_path, capsys, damage):
    root = _copy(tree, tmp_path)
    where, what = damage(root)
    out = str(tmp_path / "run")
    code = cli.main(["train", "--dataset", "omniglot", "--config", tiny_omniglot_config(str(tmp_path / "c.json")),
                     "--data-dir", root, "--out", out, "--cache-dir", str(tmp_path / "cache"), "--quiet",
                     "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert where in err and what in err, err
    assert not os.path.exists(os.path.join(out, "checkpoint.npz"))          # refused before the first step


def test_a_missing_data_folder_says_where_omniglot_was_looked_for(tmp_path):
    from minisiamese.train import Trainer
    cfg = ExperimentConfig.from_file(tiny_omniglot_config(str(tmp_path / "c.json")))
    with pytest.raises(DataError, match="Omniglot not found in .*nowhere"):
        Trainer(cfg, str(tmp_path / "run"), str(tmp_path / "nowhere"), log=lambda m: None, progress=False).load_data()


# ----------------------------------------------------------------------------- runs, tasks, pairs
def test_lake_runs_are_parsed_from_class_labels(tree):
    runs = omniglot.load_runs(tree, 28)
    assert runs.names == ["run01"] and len(runs.tasks) == 20 and runs.table.images.shape == (40, 28, 28)
    lines = [line.split() for line in open(os.path.join(tree, omniglot.RUNS, "run01", "class_labels.txt"))]
    for (test, train), task in zip(lines, runs.tasks):
        assert runs.table.keys[task.anchor] == ("run01", test)
        names = [runs.table.keys[c][1] for c in task.candidates]
        assert names == [f"run01/training/class{k:02d}.png" for k in range(1, 21)]       # sorted, 20-way
        assert names[task.answer] == train


def test_within_alphabet_tasks_are_n_way_of_one_alphabet_and_deterministic_by_seed():
    classes = np.repeat(np.arange(12), 3)                      # 12 classes of 3 images
    groups = np.repeat([0] * 5 + [1] * 7, 3)                  # alphabets of 5 and 7 classes
    tasks = oneshot.group_tasks(classes, groups, 200, 6, np.random.default_rng(1))
    for t in tasks:
        assert len(set(classes[t.candidates])) == 6 and set(groups[t.candidates]) == {1}     # only 7 >= 6
        assert classes[t.anchor] == classes[t.candidates[t.answer]] and t.anchor != t.candidates[t.answer]
    assert len({t.answer for t in tasks}) == 6
    again = oneshot.group_tasks(classes, groups, 200, 6, np.random.default_rng(1))
    other = oneshot.group_tasks(classes, groups, 200, 6, np.random.default_rng(2))
    assert all(a.anchor == b.anchor and (a.candidates == b.candidates).all() for a, b in zip(tasks, again))
    assert any(a.anchor != b.anchor for a, b in zip(tasks, other))
    with pytest.raises(ValueError, match="needs a group with 8 classes; the largest has 7"):
        oneshot.group_tasks(classes, groups, 1, 8, np.random.default_rng(0))


def test_pairs_are_balanced_and_half_the_different_ones_within_an_alphabet():
    keys = [(f"{a}/c{c}", f"{k}.png") for a in "ABCD" for c in range(5) for k in range(3)]
    pool = IdentityPool(np.zeros((len(keys), 2, 2), np.uint8), keys, {k[0]: k[0][0] for k in keys})
    s = pool.draw(4000, np.random.default_rng(0))
    person, group = pool.person, pool.group[pool.person]
    pos, neg = s.labels == 1, s.labels == 0
    assert pos.sum() == neg.sum() == 2000
    assert (person[s.idx1[pos]] == person[s.idx2[pos]]).all() and (s.idx1[pos] != s.idx2[pos]).all()
    assert (person[s.idx1[neg]] != person[s.idx2[neg]]).all()
    within = (group[s.idx1[neg]] == group[s.idx2[neg]]).mean()
    assert abs(within - (0.5 + 0.5 * 4 / 19)) < 0.03           # half by design, and the uniform half by chance


# ----------------------------------------------------------------------------- the final figures
class _ClassNet:
    """A stand-in net whose code is the class number written in each image's first pixel: ``perfect`` scores
    same-class pairs highest; otherwise every pair scores the same."""
    xp = np

    def __init__(self, perfect):
        self.perfect, self.calibration = perfect, None
        self.config = type("C", (), {"input_size": 4, "flip_average": False})()

    def embed(self, x, batch_size=None):
        return np.round(x[:, 0, 0, :1] * 255)

    def head_logits(self, h1, h2):
        return -np.abs(h1 - h2).sum(1) if self.perfect else np.zeros(len(h1))

    def score(self, h1, h2):
        return 1 / (1 + np.exp(-(self.head_logits(h1, h2) + 0.5)))


def _synthetic_finals():
    """Finals whose image table writes each image's class in its first pixel: 3 alphabets of 25 characters
    of 2 images, and 2 runs of 20 classes."""
    n = 75
    images = np.zeros((2 * n, 4, 4), np.uint8)
    images[:, 0, 0] = np.repeat(np.arange(n), 2)
    keys = [(f"A{c // 25}/c{c}", f"{k}.png") for c in range(n) for k in range(2)]
    pool = IdentityPool(images, keys, {k[0]: k[0].split("/")[0] for k in keys})
    rng = np.random.default_rng(0)
    tasks = omniglot.draw_tasks(pool, 2000, 20, rng, "synthetic")
    table = np.zeros((80, 4, 4), np.uint8)
    table[:, 0, 0] = np.arange(80) % 40                 # run r: training rows 40r..40r+19, test rows 40r+20..
    run_tasks, run_of = [], []
    for r in range(2):
        for i in range(20):
            answer = (7 * i) % 20
            table[40 * r + 20 + i, 0, 0] = table[40 * r + answer, 0, 0]
            run_tasks.append(oneshot.OneShotTask(40 * r + 20 + i, np.arange(40 * r, 40 * r + 20), answer))
            run_of.append(r)
    runs = omniglot.LakeRuns(PairSet(table, [], [], [], keys=[("r", str(i)) for i in range(80)]), run_tasks,
                             np.array(run_of), ["run01", "run02"])
    return omniglot.Finals(runs, pool, tasks, pool.draw(2000, rng))


def test_a_perfect_scorer_gets_everything_and_a_constant_one_gets_chance(tmp_path):
    finals = _synthetic_finals()
    best = evaluate_omniglot(_ClassNet(True), Normalizer(), finals, figures_dir=str(tmp_path))
    assert best["lake20"]["accuracy"] == best["within20"]["accuracy"] == 1.0
    assert best["lake20"]["trials"] == 40 and best["lake20"]["per_run"] == {"run01": 1.0, "run02": 1.0}
    assert best["verification"]["auc"] == 1.0 and best["verification"]["accuracy"] == 1.0
    assert best["verification"]["pairs"] == 2000 and best["input_size"] == 4
    assert os.path.getsize(tmp_path / "lake_runs.png") > 0
    flat = evaluate_omniglot(_ClassNet(False), Normalizer(), finals)
    assert abs(flat["within20"]["accuracy"] - 0.05) < 3 * 0.0049           # ties broken at random: 1 / 20
    assert flat["within20"]["se"] == pytest.approx(np.sqrt(flat["within20"]["accuracy"] * (1 - flat["within20"]
                                                                                            ["accuracy"]) / 2000))
    assert flat["lake20"]["accuracy"] < 0.3 and flat["verification"]["auc"] == 0.5
    assert flat["verification"]["accuracy"] == 0.5                          # every pair called "same"


# ----------------------------------------------------------------------------- configs and the CLI
def test_omniglot_configs_are_checked():
    koch, small = RUN_PRESETS["omniglot-koch"], RUN_PRESETS["omniglot-small"]
    assert koch.model.input_size == 105 and koch.model.conv_filters == (64, 128, 128, 256)
    assert koch.model.conv_kernels == (10, 7, 4, 4) and koch.model.dense_units == 4096 and koch.model.head == ("abs",)
    assert koch.augment.kind == "koch" and koch.train.monitor == "val_oneshot" and koch.train.oneshot_way == 20
    assert small.model.input_size == 28 and small.model.batch_norm and small.dataset == "omniglot"
    assert build_config(dataset="omniglot") == koch and build_config() == RUN_PRESETS["baseline"]
    with pytest.raises(ConfigError, match="dataset omniglot: train.pairs must be \"identities\""):
        build_config(preset="baseline", dataset="omniglot")
    with pytest.raises(ConfigError, match="val_oneshot.*LFW-a's validation has none"):
        build_config(preset="omniglot-small", dataset="lfw-a")
    with pytest.raises(ConfigError, match="dataset must be one of"):
        build_config(settings=["dataset=mnist"])
    with pytest.raises(ConfigError, match="--max-pairs"):
        build_config(preset="omniglot-small", max_pairs=10)


def test_cli_train_and_evaluate_dataset_omniglot_end_to_end(tree, tmp_path, capsys):
    out, cache = str(tmp_path / "run"), str(tmp_path / "cache")
    code = cli.main(["train", "--dataset", "omniglot", "--config", tiny_omniglot_config(str(tmp_path / "c.json")),
                     "--data-dir", tree, "--out", out, "--cache-dir", cache, "--quiet", "--device", "cpu",
                     "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Lake's runs: 20-way accuracy" in captured.out and "at 24x24" in captured.out
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["dataset"] == "omniglot" and res["seed"] == 3 and res["device"] and res["train_seconds"] > 0
    assert res["lake20"]["trials"] == 20 and res["lake20"]["way"] == 20 and 0 <= res["lake20"]["accuracy"] <= 1
    assert res["within20"]["trials"] == omniglot.WITHIN_TRIALS and res["within20"]["way"] == 20
    assert res["verification"]["pairs"] == omniglot.TEST_PAIRS and 0 <= res["verification"]["auc"] <= 1
    assert res["input_size"] == 24 and "12" in res["protocol"]
    history = json.load(open(os.path.join(out, "history.json")))
    assert len(history) == 2 and all(0 <= h["val_oneshot"] <= 1 for h in history)
    assert res["val"]["oneshot_tasks"] == 12 and res["val"]["oneshot_way"] == 3
    assert os.path.isfile(os.path.join(out, "figures", "lake_runs.png"))
    # --batch-size as the run's: the same images in the same batches, so the same float32 sums and the same argmaxes
    batch = ["--batch-size", str(json.load(open(os.path.join(out, "config.json")))["train"]["batch_size"])]
    code = cli.main(["evaluate", "--dataset", "omniglot", "--checkpoint", os.path.join(out, "model.npz"),
                     "--data-dir", tree, "--cache-dir", cache, "--device", "cpu", "--seed", "3"] + batch)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    again = json.loads(captured.out)
    assert again["lake20"] == res["lake20"] and again["within20"] == res["within20"]
    assert "Lake's runs: 20-way accuracy" in captured.err
    code = cli.main(["evaluate", "--dataset", "omniglot", "--validation", "--checkpoint",
                     os.path.join(out, "model.npz"), "--data-dir", tree, "--cache-dir", cache, "--device", "cpu"]
                    + batch)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    val = json.loads(captured.out)
    assert val["oneshot"] == pytest.approx(res["val"]["oneshot"]) and val["auc"] == pytest.approx(res["val"]["auc"])
    # without --dataset, evaluate takes the model's own; another is refused in one line, before any reading
    code = cli.main(["evaluate", "--checkpoint", os.path.join(out, "model.npz"), "--data-dir", tree,
                     "--cache-dir", cache, "--device", "cpu", "--seed", "3"] + batch)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["lake20"] == res["lake20"]
    code = cli.main(["evaluate", "--dataset", "lfw-a", "--checkpoint", os.path.join(out, "model.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "was trained on omniglot; evaluate it with --dataset omniglot" in err[0]


def test_the_cli_names_the_datasets_the_library_has():
    from minisiamese import cli as minisiamese_cli
    from minisiamese.runconfig import DATASETS
    assert tuple(minisiamese_cli.DATASETS) == tuple(DATASETS)


# ----------------------------------------------------------------------------- the real data
@pytest.mark.skipif(not os.path.isdir(os.path.join(REAL, omniglot.RUNS)), reason=f"no Omniglot at {REAL}")
def test_real_runs_parse_and_their_images_load(tmp_path):
    root = os.path.join(REAL, omniglot.RUNS)
    for run in ("run01", "run13"):
        labelled = omniglot.read_run(root, run)
        assert len(labelled) == 20 and all(len(c) == 20 for _, c, _ in labelled)
        assert sorted(a for _, _, a in labelled) == list(range(20))            # each class asked once
    path = labelled[0][0]
    img = omniglot.load_image(path)
    assert img.shape == (105, 105) and (img == 255).mean() < 0.3           # strokes, inverted, are the few
    alphabet = omniglot.scan_set(REAL, omniglot.EVALUATION, ["Angelic"])
    assert len(alphabet) == 20 and all(len(paths) == 20 for _, _, paths in alphabet)


def _omniglot_result(seed, lake):
    """What an Omniglot run's results.json holds, as the report reads it."""
    history = [{"epoch": e, "loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9, "val_auc": 0.95,
                "val_oneshot": 0.5 + 0.1 * e, "lr": 1e-3, "seconds": 30.0} for e in (1, 2)]
    return {"dataset": "omniglot", "seed": seed, "device": "cpu", "epochs_run": 2, "best_epoch": 2,
            "train_seconds": 600.0, "wall_seconds": 660.0, "history": history,
            "val": {"loss": 0.4, "accuracy": 0.9, "auc": 0.95, "oneshot": 0.7, "oneshot_tasks": 320,
                    "oneshot_way": 20},
            "lake20": {"accuracy": lake, "se": 0.024, "se_binomial": 0.02, "trials": 400, "runs": 20, "way": 20},
            "within20": {"accuracy": lake - 0.1, "se": 0.005, "trials": 10000, "way": 20},
            "verification": {"pairs": 10000, "accuracy": 0.9, "accuracy_se": 0.003, "auc": 0.96, "auc_se": 0.002,
                             "threshold": 0.6, "accuracy_at_threshold": 0.9, "accuracy_at_threshold_se": 0.003},
            "config": RUN_PRESETS["omniglot-small"].to_dict()}


def test_experiments_run_omniglot_presets_over_seeds_in_their_own_section(tmp_path, monkeypatch):
    """`experiments --only omniglot-small --seeds 0 1` trains each seed in OUT/seeds/NAME-sSEED on Omniglot's
    default folder, keeps it beside LFW-a's seeds, and the table gets an Omniglot section (mean ± SD over
    seeds, each seed's SE, the published figures), not a row of LFW-a's seeds table."""
    from minisiamese import pipeline, report
    trained = []

    def fake(config, out_dir, data_dir, device, seed, cache_dir, **kwargs):
        res = _omniglot_result(seed, (0.8, 0.9)[seed])
        os.makedirs(out_dir, exist_ok=True)
        json.dump(res, open(os.path.join(out_dir, "results.json"), "w"))
        json.dump(res.pop("history"), open(os.path.join(out_dir, "history.json"), "w"))
        trained.append((os.path.basename(out_dir), data_dir, config.dataset))
        return res
    monkeypatch.setattr(pipeline, "train_and_evaluate", fake)
    results = tmp_path / "docs" / "results.md"
    report.run_experiments(["omniglot-small"], [0, 1], str(tmp_path / "runs"), str(results),
                           lambda name: ExperimentConfig.preset(name), None, "cpu", 0, None, log=lambda m: None,
                           progress=False)
    assert trained == [(f"omniglot-small-s{s}", omniglot.DEFAULT_DATA_DIR, "omniglot") for s in (0, 1)]
    assert sorted(os.listdir(tmp_path / "docs" / "results" / "seeds")) == ["omniglot-small-s0.json",
                                                                          "omniglot-small-s1.json"]
    table = results.read_text()
    section = table[table.index("## Omniglot"):]
    row = next(line for line in section.splitlines() if line.startswith("| **omniglot-small**"))
    assert "| 28x28 | 0, 1 | cpu | 0.850 ± 0.071 | 0.750 ± 0.071 | 0.900 ± 0.000 |" in row, row
    assert "| omniglot-small seed 1 | | | | 0.900 (SE 0.024) | 0.800 (SE 0.005) |" in section
    assert "| Koch et al. 2015, Siamese net | 105x105, 12 of the 20 drawers" in section
    assert "| omniglot-small |" not in table[table.index("## Over seeds"):table.index("## Omniglot")]
    assert os.path.isfile(tmp_path / "docs" / "figures" / "results" / "omniglot.png")


def test_experiments_refuse_omniglot_without_seeds_and_one_folder_for_two_datasets(tmp_path):
    from minisiamese import report
    args = (str(tmp_path / "runs"), str(tmp_path / "results.md"), ExperimentConfig.preset)
    with pytest.raises(ConfigError, match="omniglot-small: an Omniglot preset runs over seeds"):
        report.run_experiments(["omniglot-small"], None, *args, None, "cpu", 0, None)
    with pytest.raises(ConfigError, match="is one folder, but the experiments train on lfw-a and omniglot"):
        report.run_experiments(["baseline", "omniglot-small"], [0], *args, "data", "cpu", 0, None)
    assert not os.path.exists(tmp_path / "runs")                   # refused before anything was written
