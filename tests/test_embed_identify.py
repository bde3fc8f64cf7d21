"""Embed each face once: embed/score against the pair forward, evaluation by
embeddings against pair-by-pair scoring, and one-shot identification."""
import os
import re

import numpy as np
import pytest

import cli
from bounds import assert_within, embed_error_bound, proba_error_bound
from fixtures import make_dataset
from minisiamese import InputError, ModelConfig, SiameseNet, oneshot, save_model
from minisiamese.data import load_pairset
from minisiamese.evaluate import evaluate_pairset, load_trained
from minisiamese.identify import Gallery, identify, scan_gallery
from minisiamese.ops import sigmoid
from minisiamese.data import Normalizer

CFG = ModelConfig(input_size=20, conv_filters=(3, 4), conv_kernels=(3, 3), dense_units=5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_score_of_embeddings_equals_the_pair_forward(rng, dtype):
    """predict_proba is score(embed, embed) exactly; embedding in other batches
    and the training forward pass (both towers as one batch, through the
    logits) agree to rounding.  Those results depend on the batch composition
    of the BLAS calls (another batch, another kernel, another order of sums), so
    they are compared within the rounding bound of the network (tests/bounds.py),
    with every conv an im2col GEMM (``auto`` may pick the FFT for one batch size
    and not the other)."""
    net = SiameseNet(CFG.replace(conv_algo="im2col"), seed=3, dtype=dtype)
    x1, x2 = rng.random((7, 1, 20, 20)), rng.random((7, 1, 20, 20))
    h1, h2 = net.embed(x1), net.embed(x2)
    assert h1.shape == (7, 5) and h1.dtype == dtype
    np.testing.assert_array_equal(net.score(h1, h2), net.predict_proba(x1, x2))
    # each side within E of the exact value, E = the GEMMs' gamma_K |W| |x| carried through the layers (float32: ~2e-4)
    assert_within(net.embed(x1, batch_size=3), h1, 2 * embed_error_bound(net, x1), "embeddings in batches of 3")
    assert_within(net.score(h1, h2), sigmoid(net.logits(x1, x2)), 2 * proba_error_bound(net, x1, x2), "p")


def test_score_rejects_mismatched_embeddings():
    net = SiameseNet(CFG, seed=0)
    with pytest.raises(InputError, match=r"expected two \(N, 5\) embedding arrays"):
        net.score(np.zeros((3, 5)), np.zeros((3, 4)))


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lfw"))
    names = make_dataset(root, people=10, per_person=4, pairs_per_class=12)
    return root, names


def test_evaluation_by_embeddings_matches_pair_by_pair(faces):
    """Same metrics and one-shot answers as scoring every pair through both
    towers.  The two embed the faces in batches of other composition, so their
    probabilities agree to the network's rounding bound (float64; im2col convs)."""
    root, _ = faces
    net = SiameseNet(CFG.replace(conv_algo="im2col"), seed=5, dtype=np.float64)
    s = load_pairset(root, "pairsDevTest.txt", None, 20)
    norm = Normalizer(0.4, 0.3)
    res, p = evaluate_pairset(net, norm, s, n_way=3, seed=1, batch_size=4)
    x1, x2, _ = s.batch(np.arange(len(s)))
    # each within E of the exact p, E = the GEMMs' gamma_K |W| |x| carried through the layers (~5e-13 here)
    assert_within(p, net.predict_proba(norm(x1), norm(x2)), 2 * proba_error_bound(net, norm(x1), norm(x2)), "p")
    tasks = oneshot.build_tasks(s, 3, 1)
    pairwise = oneshot.score_tasks(tasks, lambda a, c: net.predict_proba(norm(s.image_batch(a)),
                                                                          norm(s.image_batch(c))))
    assert res["oneshot"] == oneshot.oneshot_accuracy(tasks, pairwise, 1)[0]


@pytest.fixture
def model_file(tmp_path):
    """An untrained model whose head, as a trained one's, scores closer embeddings higher."""
    path = str(tmp_path / "model.npz")
    net = SiameseNet(CFG, seed=2)
    net.params["out.w"] = -np.abs(net.params["out.w"]) - 0.5
    save_model(path, net, extra={"threshold": np.array(0.3)})
    return path


def test_gallery_layouts_and_bad_input(tmp_path, faces):
    root, names = faces
    flat = tmp_path / "flat"
    flat.mkdir()
    for n in names[:3]:
        os.link(os.path.join(root, "lfw2", n, f"{n}_0001.jpg"), flat / f"{n}.jpg")
    assert [p for p, _ in scan_gallery(str(flat))] == sorted(names[:3])
    nested = scan_gallery(os.path.join(root, "lfw2"))
    assert len(nested) == 40 and len({p for p, _ in nested}) == 10
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="empty: the gallery has no images"):
        scan_gallery(str(tmp_path / "empty"))


def test_identify_finds_a_gallery_image_and_caches_embeddings(tmp_path, faces, model_file):
    root, names = faces
    gallery_dir = os.path.join(root, "lfw2")
    net, _, _ = load_trained(model_file, "cpu")
    cache = str(tmp_path / "cache")
    g = Gallery(net, Normalizer(), gallery_dir, model_file, cache)
    assert g.embedded == 40 and len(os.listdir(cache)) == 1
    again = Gallery(net, Normalizer(), gallery_dir, model_file, cache)
    assert again.embedded == 0                                       # all from the cache
    np.testing.assert_array_equal(again.h, g.h)
    # a query that *is* a gallery image: its own person ranks first with |h - h| = 0
    query = os.path.join(gallery_dir, names[4], f"{names[4]}_0002.jpg")
    out = identify(net, Normalizer(), g, [query], top=3, threshold=0.0)[0]
    assert out["top"][0][0] == names[4] and out["answer"] == names[4] and len(out["top"]) == 3
    assert identify(net, Normalizer(), g, [query], top=3, threshold=1.01)[0]["answer"] is None


def test_identify_cli(tmp_path, faces, model_file, capsys):
    root, names = faces
    query = os.path.join(root, "lfw2", names[1], f"{names[1]}_0003.jpg")
    fig = str(tmp_path / "id.png")
    args = ["identify", query, "--gallery", os.path.join(root, "lfw2"), "--checkpoint", model_file,
            "--top", "2", "--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    assert cli.main(args + ["--figure", fig]) == 0
    out = capsys.readouterr().out
    assert "gallery" in out and "10 people, 40 images (40 embedded now, 0 from the cache)" in out
    assert re.search(rf"{re.escape(query)}: ({names[1]}|\w+|unknown \(best [0-9.]+ < threshold 0\.300\))\n"
                     r"    1\. \w+ [0-9.]{5}  2\. \w+ [0-9.]{5}", out), out
    assert os.path.getsize(fig) > 1000
    assert cli.main(args) == 0 and "(0 embedded now, 40 from the cache)" in capsys.readouterr().out
    # bad input: one line naming the file, status 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Nobody.jpg").write_bytes(b"not a jpeg")
    assert cli.main(["identify", query, "--gallery", str(bad), "--checkpoint", model_file, "--device", "cpu",
                     "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Nobody.jpg: cannot decode image" in err[0]
    (tmp_path / "none").mkdir()
    assert cli.main(["identify", query, "--gallery", str(tmp_path / "none"), "--checkpoint", model_file]) == 2
    assert "the gallery has no images" in capsys.readouterr().err
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 truncated")
    assert cli.main(["identify", query, "--gallery", str(bad), "--checkpoint", str(damaged)]) == 2
    assert "damaged.npz" in capsys.readouterr().err


@pytest.mark.parametrize("extra, expected", [
    ({"norm_std": np.array(0.0)}, r"bad normalisation \(norm_mean 0.0, norm_std 0.0\)"),
    ({"norm_mean": np.array(np.nan)}, "bad normalisation"),
    ({"norm_std": np.array("x")}, "norm_mean and norm_std must be numbers"),
    ({"threshold": np.array(1.5)}, r"decision threshold must be a probability in \[0, 1\], got 1.5"),
    ({"threshold": np.array([0.5, 0.5])}, "decision threshold must be a probability"),
])
def test_a_model_file_with_bad_preprocessing_or_threshold_is_named(tmp_path, extra, expected):
    """What travels with the weights (normalisation, the decision threshold) is
    checked on load like the weights: one CheckpointError naming the file."""
    from minisiamese import CheckpointError
    path = str(tmp_path / "model.npz")
    save_model(path, SiameseNet(CFG, seed=0), extra=extra)
    with pytest.raises(CheckpointError, match=re.escape(path) + ": .*" + expected):
        load_trained(path, "cpu")
