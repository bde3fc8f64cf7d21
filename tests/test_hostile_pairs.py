"""Pairs files that are well formed but wrong in meaning (issue 24): a
different-person pair naming one person, a pair listed twice, a test file that
shares people with the training file, a View 2 file with one fold; and the
messages for a pairs path that is a folder and for a data folder without lfw2/.
Each is one DataError naming the file (and line); through the CLI, exit status 2
and one line, before any training."""
import os

import pytest

from fixtures import make_dataset, tiny_config
from minisiamese.cli import main
from minisiamese.data import DEFAULT_DATA_DIR, DataError, check_disjoint, read_pairs, read_pairs_folds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.normpath(os.path.join(ROOT, DEFAULT_DATA_DIR))


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def data(tmp_path):
    """A small data set (people Person_Aa..Person_Dd in training, Person_Ee..Person_Hh in test)."""
    root = tmp_path / "data"
    make_dataset(str(root), people=8, per_person=4, pairs_per_class=10)
    return root


def train_cli(tmp_path, data, capsys, *extra):
    """Run 'train' on ``data``; returns (exit status, stderr).  A run refused
    before training writes no checkpoint."""
    out = tmp_path / "run"
    code = main(["train", "--config", tiny_config(str(tmp_path / "cfg.json"), epochs=1), "--data-dir", str(data),
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet", *extra])
    err = capsys.readouterr().err
    if code != 0:
        assert not (out / "checkpoint.npz").exists()
    return code, err


def one_error_line(err):
    """The message of the CLI's one 'error: ...' line (and nothing else on stderr)."""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err[len("error: "):].strip()


def replace_line(path, lineno, text):
    """Put ``text`` at 1-based line ``lineno`` of a pairs file."""
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    write(path, lines)


# ----------------------------------------------------------------------------- 1. one person as a negative
def test_different_person_line_naming_one_person_twice(tmp_path, data, capsys):
    path = write(tmp_path / "p.txt", ["1", "Abel_Pacheco\t1\t2", "Abel_Pacheco\t1\tAbel_Pacheco\t3"])
    with pytest.raises(DataError, match=r"p.txt:3: a different-person pair names Abel_Pacheco twice"):
        read_pairs(path)
    replace_line(data / "pairsDevTrain.txt", 13, "Person_Aa\t1\tPerson_Aa\t3")
    code, err = train_cli(tmp_path, data, capsys)
    assert code == 2
    assert one_error_line(err) == (f"{data / 'pairsDevTrain.txt'}:13: a different-person pair names Person_Aa "
                                   f"twice")


# ----------------------------------------------------------------------------- 2. a pair listed twice
@pytest.mark.parametrize("first, second", [
    ("A\t1\t2", "A\t1\t2"),                          # same-person pair, same order
    ("A\t1\t2", "A\t2\t1"),                          # same-person pair, reversed
    ("A\t1\tB\t2", "A\t1\tB\t2"),                    # different-person pair, same order
    ("A\t1\tB\t2", "B\t2\tA\t1"),                    # different-person pair, reversed
])
def test_a_pair_listed_twice_names_both_lines(tmp_path, first, second):
    same, different = ["A\t1\t2", "A\t3\t4"], ["A\t1\tB\t2", "C\t1\tD\t1"]
    if len(first.split()) == 3:
        same = [first, second]
    else:
        different = [first, second]
    path = write(tmp_path / "p.txt", ["2"] + same + different)
    line = 2 if len(first.split()) == 3 else 4                 # where the first of the two is
    with pytest.raises(DataError, match=rf"p.txt:{line + 1}: the same pair as line {line} \("):
        read_pairs(path)
    other = write(tmp_path / "ok.txt", ["2", "A\t1\t2", "A\t1\t3", "A\t1\tB\t2", "A\t2\tB\t1"])
    assert len(read_pairs(other)) == 4                          # sharing one image is not a repeat


def test_a_pair_repeated_in_another_view2_fold_is_refused(tmp_path):
    path = write(tmp_path / "pairs.txt", ["2\t1", "A\t1\t2", "A\t1\tB\t1", "C\t1\t2", "B\t1\tA\t1"])
    for read in (read_pairs_folds, read_pairs):
        with pytest.raises(DataError, match=r"pairs.txt:5: the same pair as line 3 \(B 1, A 1\)"):
            read(path)


def test_cli_refuses_a_training_file_with_a_repeated_pair(tmp_path, data, capsys):
    """The repeat could otherwise fall in training and in validation."""
    pairs = data / "pairsDevTrain.txt"
    replace_line(pairs, 9, pairs.read_text().splitlines()[1])
    code, err = train_cli(tmp_path, data, capsys)
    assert code == 2
    assert one_error_line(err).startswith(f"{pairs}:9: the same pair as line 2 (")


# ----------------------------------------------------------------------------- 3. test shares people with training
def test_check_disjoint_counts_shared_people_and_pairs(tmp_path):
    train = read_pairs(write(tmp_path / "train.txt", ["1", "A\t1\t2", "A\t1\tB\t2"]))
    test = read_pairs(write(tmp_path / "test.txt", ["2", "C\t1\t2", "D\t1\t2", "C\t3\tB\t1", "B\t2\tA\t1"]))
    with pytest.raises(DataError) as exc:
        check_disjoint("train.txt", train, "test.txt", test)
    assert str(exc.value) == ("test.txt: shares 2 people (e.g. B) and 1 pair(s) (e.g. line 5 here, line 3 in the "
                              "training file) with the training file train.txt; a test set must hold only people "
                              "never trained on")
    apart = read_pairs(write(tmp_path / "apart.txt", ["1", "C\t1\t2", "C\t1\tD\t2"]))
    assert check_disjoint("train.txt", train, "apart.txt", apart) is None


def test_cli_refuses_a_test_file_that_shares_a_person_before_training(tmp_path, data, capsys):
    test = data / "pairsDevTest.txt"
    replace_line(test, 12, "Person_Aa\t1\tPerson_Ee\t1")      # Person_Aa is a training person
    code, err = train_cli(tmp_path, data, capsys)
    assert code == 2
    assert one_error_line(err) == (f"{test}: shares 1 person (e.g. Person_Aa) and no pair with the training file "
                                   f"{data / 'pairsDevTrain.txt'}; a test set must hold only people never trained on")


def test_cli_refuses_the_training_file_as_test_file(tmp_path, data, capsys):
    code, err = train_cli(tmp_path, data, capsys, "--set", "train.test_pairs=pairsDevTrain.txt")
    assert code == 2
    assert one_error_line(err).startswith(f"{data / 'pairsDevTrain.txt'}: shares 4 people (e.g. Person_")
    assert "and 20 pair(s) (e.g. line 2 here, line 2 in the training file)" in err


# ----------------------------------------------------------------------------- 4. View 2 with one fold
def test_view2_with_one_fold_is_refused(tmp_path, data, capsys):
    path = write(tmp_path / "pairs.txt", ["1\t1", "A\t1\t2", "A\t1\tB\t1"])
    for read in (read_pairs_folds, read_pairs):
        with pytest.raises(DataError, match=r"pairs.txt:1: View 2 needs at least 2 folds \(the threshold of each fold "
                                            r"is chosen on the others\), got 1"):
            read(path)
    lines = (data / "pairsDevTest.txt").read_text().splitlines()
    write(data / "pairs.txt", ["1\t10"] + lines[1:])         # read with the test pairs, before training
    code, err = train_cli(tmp_path, data, capsys)
    assert code == 2
    assert one_error_line(err).startswith(f"{data / 'pairs.txt'}:1: View 2 needs at least 2 folds")


# ----------------------------------------------------------------------------- misleading messages
def test_a_pairs_path_that_is_a_folder_says_so_not_download(tmp_path, data, capsys):
    test = data / "pairsDevTest.txt"
    test.unlink()
    test.mkdir()
    code, err = train_cli(tmp_path, data, capsys)
    assert code == 2
    assert one_error_line(err) == f"{test}: is a folder, not a pairs file"
    with pytest.raises(DataError, match="pairsDevTest.txt: cannot read"):
        read_pairs(str(test))


def test_missing_lfw2_names_the_path_looked_for(tmp_path, data, capsys):
    os.rename(data / "lfw2", data / "faces")
    code, err = train_cli(tmp_path, data, capsys)
    assert code == 2
    message = one_error_line(err)
    first = (data / "pairsDevTrain.txt").read_text().splitlines()[1].split("\t")
    looked_for = data / first[0] / f"{first[0]}_{int(first[1]):04d}.jpg"
    assert message == (f"{looked_for}: image file missing (named in {data / 'pairsDevTrain.txt'}:2; there is no "
                       f"{data / 'lfw2'}, so images are looked for directly in {data})")


# ----------------------------------------------------------------------------- the real files
OFFICIAL = [os.path.join(REAL, name) for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt")]


@pytest.mark.skipif(not all(map(os.path.isfile, OFFICIAL)), reason=f"no LFW-a pairs files in {REAL}")
def test_the_official_files_pass_every_check():
    """pairsDevTrain and pairsDevTest share no person; View 2 has 10 folds of 600."""
    train_path, test_path, view2 = OFFICIAL
    train, test = read_pairs(train_path), read_pairs(test_path)
    assert (len(train), len(test)) == (2200, 1000)
    check_disjoint(train_path, train, test_path, test)
    assert [len(f) for f in read_pairs_folds(view2)] == [600] * 10
