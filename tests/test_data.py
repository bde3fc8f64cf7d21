"""Pairs-file parsing, image loading, preprocessing and its cache."""
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures import make_dataset
from minisiamese.data import DataError, file_digest, load_image, load_images, load_pairset, read_pairs, read_pairs_folds

GOOD = "2\nAaron\t1\t2\nBea\t3\t1\nAaron\t1\tBea\t2\nCid\t4\tAaron\t2\n"


def write(tmp_path, text, name="pairs.txt", mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text)
    return str(p)


def test_reads_view1_file(tmp_path):
    pairs = read_pairs(write(tmp_path, GOOD))
    assert [(p.name1, p.num1, p.name2, p.num2, p.label, p.line) for p in pairs] == [
        ("Aaron", 1, "Aaron", 2, 1, 2), ("Bea", 3, "Bea", 1, 1, 3),
        ("Aaron", 1, "Bea", 2, 0, 4), ("Cid", 4, "Aaron", 2, 0, 5)]


def test_crlf_bom_and_trailing_blank_lines_are_accepted(tmp_path):
    raw = ("\ufeff" + GOOD.replace("\n", "\r\n") + "\r\n\r\n").encode("utf-8")
    assert len(read_pairs(write(tmp_path, raw, mode="wb"))) == 4


@pytest.mark.parametrize("text, message", [
    ("", "empty pairs file"),
    ("two\nA\t1\t2\n", r"pairs.txt:1: pair count must be an integer, got 'two'"),
    ("2\nA\t1\t2\nB\t1\t2\nA\t1\tB\t2\n", "header promises 2 same \\+ 2 different pairs"),
    ("1\nA\t1\nA\t1\tB\t2\n", r"pairs.txt:2: expected 'name i j'"),
    ("1\nA\t1\t2\nA\t1\tB\n", r"pairs.txt:3: expected 'name1 i name2 j'"),
    ("1\nA\tx\t2\nA\t1\tB\t2\n", r"pairs.txt:2: image number must be an integer, got 'x'"),
    ("1\nA\t0\t2\nA\t1\tB\t2\n", r"pairs.txt:2: image number must be >= 1, got 0"),
    ("1\nA\t1_0\t2\nA\t1\tB\t2\n", r"pairs.txt:2: image number must be an integer, got '1_0'"),   # int(): 10
    ("1\nA\t\u0663\t2\nA\t1\tB\t2\n", r"pairs.txt:2: image number must be an integer, got '\u0663'"),
    ("1\nA\t-1\t2\nA\t1\tB\t2\n", r"pairs.txt:2: image number must be an integer, got '-1'"),
    ("1\nA\t1\t2\nA\t1\tB\t2\nC\t1\t2\n", r"pairs.txt:4: 1 line\(s\) beyond"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_pairs(write(tmp_path, text))


def test_missing_and_binary_pairs_files(tmp_path):
    with pytest.raises(DataError, match="nope.txt: cannot read"):
        read_pairs(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_pairs(write(tmp_path, b"\xff\xfe\x00garbage", mode="wb"))


def test_view2_folds(tmp_path):
    text = "2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t2\nC\t1\tD\t3\n"
    folds = read_pairs_folds(write(tmp_path, text))
    assert [[p.label for p in f] for f in folds] == [[1, 0], [1, 0]]
    assert folds[1][1].line == 5
    assert len(read_pairs(write(tmp_path, text))) == 4          # View 2 flattened when read as pairs
    with pytest.raises(DataError, match="lines beyond the 2 folds"):
        read_pairs_folds(write(tmp_path, text + "E\t1\t2\n"))


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30), max_size=8))
def test_parser_fuzz_never_crashes_with_anything_but_dataerror(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "pairs.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        pairs = read_pairs(str(path))
    except DataError as exc:
        assert str(path) in str(exc)
    else:
        assert all(p.num1 >= 1 and p.num2 >= 1 for p in pairs)


def test_image_loading_resizes_converts_and_reports_bad_files(tmp_path):
    make_dataset(str(tmp_path), people=4, per_person=2, pairs_per_class=1, colour_person="Person_Aa")
    img = load_image(str(tmp_path / "lfw2" / "Person_Aa" / "Person_Aa_0001.jpg"))
    assert img.shape == (105, 105) and img.dtype == np.uint8          # colour, 180x200 in the file
    small = load_image(str(tmp_path / "lfw2" / "Person_Bb" / "Person_Bb_0001.jpg"), size=24)
    assert small.shape == (24, 24)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataError, match="bad.jpg: cannot decode image"):
        load_image(str(bad))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.jpg: cannot decode image"):
        load_image(str(empty))
    with pytest.raises(DataError, match="gone.jpg: image file missing"):
        load_image(str(tmp_path / "gone.jpg"))


def test_file_digest_names_what_is_missing(tmp_path):
    """A missing pairs file or model is not called an image in the message."""
    kept = tmp_path / "pairs.txt"
    kept.write_text("1\n")
    assert file_digest(str(kept), "training pairs", kind="pairs file") == file_digest(str(kept), "again")
    with pytest.raises(DataError, match=r"gone.txt: pairs file missing \(test pairs\)$"):
        file_digest(str(tmp_path / "gone.txt"), "test pairs", kind="pairs file")
    with pytest.raises(DataError, match=r"gone.jpg: image file missing \(gallery image\)$"):
        file_digest(str(tmp_path / "gone.jpg"), "gallery image")


def test_pairset_and_content_keyed_cache(tmp_path):
    root = str(tmp_path / "data")
    make_dataset(root, people=4, per_person=3, pairs_per_class=4)
    cache = str(tmp_path / "cache")
    s = load_pairset(root, "pairsDevTrain.txt", cache, size=24)
    assert len(s) == 8 and s.images.dtype == np.uint8 and s.images.shape[1:] == (24, 24)
    x = s.image_batch(np.arange(len(s.images)))
    assert x.dtype == np.float32 and x.shape[1] == 1 and 0 <= x.min() and x.max() <= 1
    assert list(s.labels) == [1] * 4 + [0] * 4
    x1, x2, y = s.batch([0, 5])
    assert x1.shape == (2, 1, 24, 24) and list(y) == [1, 0]
    assert len(os.listdir(cache)) == 1
    again = load_pairset(root, "pairsDevTrain.txt", cache, size=24)
    np.testing.assert_array_equal(again.images, s.images)
    assert len(os.listdir(cache)) == 1                                  # served from the cache
    # change one image's content: the cache key changes, the new pixels are used
    p = s.pairs[0]
    path = os.path.join(root, "lfw2", p.name1, f"{p.name1}_{p.num1:04d}.jpg")
    from PIL import Image
    Image.fromarray(np.zeros((250, 250), np.uint8)).save(path)
    changed = load_pairset(root, "pairsDevTrain.txt", cache, size=24)
    assert changed.images[changed.idx1[0]].max() == 0
    assert len(os.listdir(cache)) == 2


def test_missing_image_names_pairs_file_and_line(tmp_path):
    root = str(tmp_path)
    make_dataset(root, people=4, per_person=3, pairs_per_class=2)
    text = open(os.path.join(root, "pairsDevTrain.txt")).read().splitlines()
    text[1] = "Person_Aa\t1\t9"
    with open(os.path.join(root, "pairsDevTrain.txt"), "w") as f:
        f.write("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"Person_Aa_0009.jpg: image file missing \(named in .*pairsDevTrain.txt:2\)"):
        load_pairset(root, "pairsDevTrain.txt", None, size=24)
