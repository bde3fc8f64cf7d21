"""Omniglot packed for another machine (issue 35): ``pack --dataset omniglot`` writes one 1-bit .npz that the
loader reads as it reads the folders, bit for bit; hostile packs and images are refused in one line naming
the file; the CLI refuses LFW-a's options.  On the tiny tree of test_omniglot and on 120 real images from
../shared/data/omniglot (skipped where it is absent)."""
import os
import shutil

import numpy as np
import pytest

import cli
from minisiamese import omniglot
from minisiamese.data import DataError
from test_omniglot import REAL, _save, make_omniglot


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The tiny tree, with one run image a copy of an evaluation image (as all of Lake's are)."""
    root = make_omniglot(str(tmp_path_factory.mktemp("omniglot")))
    shutil.copy(os.path.join(root, omniglot.EVALUATION, "Keble", "character01", "img_0_x.png"),
                os.path.join(root, omniglot.RUNS, "run01", "training", "class01.png"))
    return root


@pytest.fixture(scope="module")
def packed(tree, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("packed"))
    return out, omniglot.pack_omniglot(tree, out)


def _relative(listing, data_dir):
    return [(a, c, [os.path.relpath(p, data_dir) for p in paths]) for a, c, paths in listing]


def _same_runs(a, b):
    assert a.names == b.names and a.table.keys == b.table.keys and (a.run == b.run).all()
    np.testing.assert_array_equal(a.table.images, b.table.images)
    for x, y in zip(a.tasks, b.tasks, strict=True):
        assert x.anchor == y.anchor and x.answer == y.answer and (x.candidates == y.candidates).all()


def _same_pools(a, b):
    assert a.keys == b.keys and a.group_names == b.group_names and (a.group == b.group).all()
    np.testing.assert_array_equal(a.images, b.images)


# ----------------------------------------------------------------------------- the round trip
def test_a_pack_reads_bit_for_bit_as_its_folders(tree, packed, tmp_path):
    out, (path, stored, shared) = packed
    assert path == os.path.join(out, omniglot.PACK_NAME) and os.listdir(out) == [omniglot.PACK_NAME]
    assert (stored, shared) == (157 + 40 - 1, 1)                # the copied run image is a reference
    assert isinstance(omniglot.source(out), omniglot.Pack) and isinstance(omniglot.source(tree), omniglot.Folders)
    for set_name in (omniglot.BACKGROUND, omniglot.EVALUATION):
        assert _relative(omniglot.scan_set(out, set_name), out) == _relative(omniglot.scan_set(tree, set_name), tree)
    cache = str(tmp_path / "cache")
    for size in (105, 28):
        _same_pools(omniglot.training_pool(tree, size, cache), omniglot.training_pool(out, size, cache))
        (v1, t1), (v2, t2) = (omniglot.validation_data(d, 20, 6, 3, size, cache) for d in (tree, out))
        np.testing.assert_array_equal(v1.images, v2.images)
        assert (v1.idx1 == v2.idx1).all() and (v1.idx2 == v2.idx2).all() and (v1.labels == v2.labels).all()
        assert [(t.anchor, t.answer) for t in t1] == [(t.anchor, t.answer) for t in t2]
        f1, f2 = omniglot.load_finals(tree, size, cache), omniglot.load_finals(out, size, cache)
        _same_runs(f1.runs, f2.runs)
        _same_pools(f1.pool, f2.pool)
        assert (f1.pairs.idx1 == f2.pairs.idx1).all() and (f1.pairs.idx2 == f2.pairs.idx2).all()
    # the pack never reads or writes the image cache: only the folder's reads (3 item lists x 2 sizes) are there
    assert len(os.listdir(cache)) == 2 * 4


def test_the_folders_win_over_a_pack_beside_them(tree, packed, tmp_path):
    root = str(tmp_path / "both")
    shutil.copytree(tree, root)
    shutil.copy(packed[1][0], root)
    assert isinstance(omniglot.source(root), omniglot.Folders)


@pytest.mark.skipif(not os.path.isdir(os.path.join(REAL, omniglot.RUNS)), reason=f"no Omniglot at {REAL}")
def test_real_images_read_the_same_from_a_pack(tmp_path):
    """120 real images: 2 background characters of Greek, 2 evaluation characters of Atlantean (of which
    run01's class01 and class02 are copies), and run01 itself."""
    root, out = str(tmp_path / "real"), str(tmp_path / "packed")
    for set_name, alphabet in ((omniglot.BACKGROUND, "Greek"), (omniglot.EVALUATION, "Atlantean")):
        for character in ("character01", "character02"):
            os.makedirs(os.path.join(root, set_name, alphabet), exist_ok=True)
            os.symlink(os.path.join(REAL, set_name, alphabet, character),
                       os.path.join(root, set_name, alphabet, character))
    shutil.copytree(os.path.join(REAL, omniglot.RUNS, "run01"), os.path.join(root, omniglot.RUNS, "run01"))
    path, stored, shared = omniglot.pack_omniglot(root, out)
    assert stored + shared == 40 + 40 + 40 and shared >= 2
    assert os.path.getsize(path) < 120 * 105 * 14                  # under 1 bit a pixel, compressed
    for size in (105, 28):
        _same_pools(omniglot.load_characters(root, omniglot.BACKGROUND, size),
                    omniglot.load_characters(out, omniglot.BACKGROUND, size))
        _same_runs(omniglot.load_runs(root, size), omniglot.load_runs(out, size))


# ----------------------------------------------------------------------------- hostile inputs
def test_a_grey_pixel_is_refused_before_the_folder_is_touched(tree, tmp_path):
    root, out = str(tmp_path / "copy"), str(tmp_path / "out")
    shutil.copytree(tree, root)
    grey = os.path.join(root, omniglot.EVALUATION, "Oriya", "character02", "img_1_x.png")
    pixels = np.full((105, 105), 255, np.uint8)
    pixels[50, 60] = 128
    from PIL import Image
    Image.fromarray(pixels, "L").save(grey)
    with pytest.raises(DataError, match=rf"^{grey}: pixel \(row 50, column 60\) is 128 .*1 bit a pixel"):
        omniglot.pack_omniglot(root, out)
    assert not os.path.exists(out)
    _save(grey, np.ones((105, 104), dtype=bool))                    # the loader's own checks hold too
    with pytest.raises(DataError, match=rf"^{grey}: 104x105 pixels"):
        omniglot.pack_omniglot(root, out)


def _arrays(packed):
    with np.load(packed[1][0]) as data:
        return {k: data[k] for k in data.files}


def _truncated(path, arrays):
    with open(path, "rb") as f:
        head = f.read(os.path.getsize(path) // 2)
    with open(path, "wb") as f:
        f.write(head)


def _rewritten(change):
    def damage(path, arrays):
        change(arrays)
        np.savez_compressed(path, **arrays)
    return damage


def _drop(key):
    return lambda a: a.pop(key)


def _set(key, value):
    return lambda a: a.__setitem__(key, value(a))


@pytest.mark.parametrize("damage, what", [
    (_truncated, "not a readable .npz file"),
    (_rewritten(_drop("format")), "no format tag"),
    (_rewritten(_set("format", lambda a: np.array("faces-v1"))), "format tag 'faces-v1'"),
    (_rewritten(_drop("run_lines")), "no array 'run_lines'"),
    (_rewritten(_set("bits", lambda a: a["bits"][:-1])), "'bits' is uint8 (195, 105, 14), not uint8 "
                                                         "(196, 105, 14)"),
    (_rewritten(_set("bits", lambda a: a["bits"][..., :13])), "'bits' is uint8"),
    (_rewritten(_set("run_images", lambda a: a["run_images"].astype(float))), "'run_images' is float64"),
    (_rewritten(_set("run_lines", lambda a: a["run_lines"] + [0, 0, 40])), "'run_lines' holds an index out of "
                                                                          "range (0..39)"),
    (_rewritten(_set("run_images", lambda a: a["run_images"] * 0 - 1)), "'run_images' holds an index out of "
                                                                        "range"),
    (_rewritten(_set("names", lambda a: np.where(a["names"] == a["names"][1], a["names"][0], a["names"]))),
     "'names' holds a name twice"),
    (_rewritten(_set("names", lambda a: np.char.add("x", a["names"]))), "image name 'ximages_background/"),
])
def test_a_damaged_pack_is_one_data_error_naming_it(packed, tmp_path, damage, what):
    out = str(tmp_path / "damaged")
    os.makedirs(out)
    path = os.path.join(out, omniglot.PACK_NAME)
    shutil.copy(packed[1][0], path)
    damage(path, _arrays(packed))
    with pytest.raises(DataError) as error:
        omniglot.load_runs(out, 28)
    assert str(error.value).startswith(f"{path}: ") and what in str(error.value)


# ----------------------------------------------------------------------------- the command line
def test_cli_packs_omniglot_and_trains_from_the_pack(tree, tmp_path, capsys):
    from test_omniglot import tiny_omniglot_config
    out = str(tmp_path / "pack")
    code = cli.main(["pack", "--dataset", "omniglot", "--data-dir", tree, "--out", out])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith(f"wrote {os.path.join(out, omniglot.PACK_NAME)}: 196 Omniglot images of "
                                   f"105x105 at 1 bit a pixel (1 run images stored as references")
    assert captured.out.rstrip().endswith("MiB)")
    code = cli.main(["train", "--dataset", "omniglot", "--config", tiny_omniglot_config(str(tmp_path / "c.json"),
                                                                                       epochs=1),
                     "--data-dir", out, "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu",
                     "--cache-dir", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Lake's runs: 20-way accuracy" in captured.out


@pytest.mark.parametrize("option", [["--size", "28"], ["--crop", "0.5"], ["--pairs", "pairs.txt"],
                                    ["--people-of", "pairsDevTrain.txt"]])
def test_cli_refuses_lfw_options_with_omniglot(tree, tmp_path, capsys, option):
    out = str(tmp_path / "pack")
    code = cli.main(["pack", "--dataset", "omniglot", "--data-dir", tree, "--out", out] + option)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {option[0]}: LFW-a only"), err
    assert not os.path.exists(out)


def test_cli_pack_names_a_missing_omniglot(tmp_path, capsys):
    code = cli.main(["pack", "--dataset", "omniglot", "--data-dir", str(tmp_path / "none"), "--out",
                     str(tmp_path / "pack")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Omniglot not found in" in err, err
    assert not os.path.exists(tmp_path / "pack")
