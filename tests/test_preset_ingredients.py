"""The face crop (stored in the model, applied wherever faces are read) and
pairs drawn from identities (the unrestricted protocol), on data the tests make."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import cli
from fixtures import TINY_MODEL, make_dataset, tiny_config
from minisiamese.checkpoint import read_model_file, save_model
from minisiamese.config import ConfigError, ModelConfig
from minisiamese.data import DataError, centre_box, load_faces, load_image, load_images, pack_faces, read_pairs
from minisiamese.runconfig import ExperimentConfig
from minisiamese.data import people_in
from minisiamese.pairsampler import IdentityPool
from minisiamese.data import person_images
from minisiamese.model import SiameseNet
from minisiamese.train import Trainer


@pytest.fixture(scope="module")
def people_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfw-people")
    names = make_dataset(str(root), people=24, per_person=3, pairs_per_class=10)
    # one person with many images, to check that positives are drawn per person
    d = os.path.join(root, "lfw2", names[0])
    for k in range(4, 31):
        Image.fromarray(np.full((250, 250), 7 * k, np.uint8), "L").save(os.path.join(d, f"{names[0]}_{k:04d}.jpg"))
    return str(root)


def framed(path, inner=125):
    """A 250x250 image: black frame, white centre square of side ``inner``."""
    a = np.zeros((250, 250), np.uint8)
    lo = (250 - inner) // 2
    a[lo:lo + inner, lo:lo + inner] = 255
    Image.fromarray(a, "L").save(path, format="PNG")
    return path


# ----------------------------------------------------------------------------- crop
@pytest.mark.parametrize("w, h, crop, box", [(250, 250, 1.0, (0, 0, 250, 250)), (250, 250, 0.5, (62, 62, 187, 187)),
                                             (300, 200, 0.5, (100, 50, 200, 150)), (5, 5, 0.01, (2, 2, 3, 3))])
def test_centre_box(w, h, crop, box):
    assert centre_box(w, h, crop) == box


def test_crop_keeps_the_centre_before_resizing(tmp_path):
    path = framed(str(tmp_path / "f.png"))
    whole, centre = load_image(path, 50), load_image(path, 50, crop=0.5)
    assert centre.min() >= 250                              # only the white centre is left
    assert whole[0].max() == 0 and whole[25, 25] == 255     # the frame is still there without the crop
    expected = np.asarray(Image.open(path).convert("L").crop((62, 62, 187, 187)).resize((50, 50), Image.BILINEAR))
    np.testing.assert_array_equal(load_image(path, 50, crop=0.5), expected)


def test_cropped_and_whole_faces_are_cached_apart(people_dataset, tmp_path):
    keys = person_images(people_dataset, ["Person_Bb"])
    cache = str(tmp_path / "cache")
    a = load_images(people_dataset, keys, cache, 24)
    b = load_images(people_dataset, keys, cache, 24, crop=0.5)
    assert len(os.listdir(cache)) == 2
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(b, load_images(people_dataset, keys, None, 24, crop=0.5))


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, True, "half"])
def test_crop_must_be_a_fraction(bad):
    with pytest.raises(ConfigError, match="crop must be a fraction"):
        ModelConfig(crop=bad)


def test_the_crop_travels_in_the_model_file(tmp_path):
    cfg = ModelConfig(**TINY_MODEL, crop=0.5)
    save_model(str(tmp_path / "m.npz"), SiameseNet(cfg, seed=0))
    stored, _, _ = read_model_file(str(tmp_path / "m.npz"))
    assert stored.crop == 0.5 and stored == cfg
    path = framed(str(tmp_path / "f.png"))
    assert load_faces([path], stored).min() > 0.98          # the file's config, not a default, crops


def test_verify_and_evaluate_use_the_models_crop(people_dataset, tmp_path, capsys):
    path = tmp_path / "cfg.json"
    cfg = json.load(open(tiny_config(str(path), epochs=1)))
    cfg["model"]["crop"] = 0.6
    json.dump(cfg, open(path, "w"))
    out = str(tmp_path / "run")
    assert cli.main(["train", "--config", str(path), "--data-dir", people_dataset, "--out", out,
                     "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    model = os.path.join(out, "model.npz")
    net_cfg, _, _ = read_model_file(model)
    assert net_cfg.crop == 0.6
    a = os.path.join(people_dataset, "lfw2", "Person_Aa", "Person_Aa_0001.jpg")
    b = os.path.join(people_dataset, "lfw2", "Person_Bb", "Person_Bb_0001.jpg")
    capsys.readouterr()
    assert cli.main(["verify", a, b, "--checkpoint", model, "--device", "cpu"]) == 0
    printed = float(capsys.readouterr().out.split()[0])
    from minisiamese.evaluate import load_trained
    net, normalizer, _ = load_trained(model)
    crop = float(net.predict_proba(normalizer(load_faces([a], net.config)), normalizer(load_faces([b], net.config)))[0])
    whole_cfg = net.config.replace(crop=1.0)
    whole = float(net.predict_proba(normalizer(load_faces([a], whole_cfg)), normalizer(load_faces([b], whole_cfg)))[0])
    assert printed == pytest.approx(crop, abs=1e-4) and abs(crop - whole) > 1e-4
    assert cli.main(["evaluate", "--checkpoint", model, "--data-dir", people_dataset, "--cache-dir",
                     str(tmp_path / "cache"), "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    with open(os.path.join(out, "results.json")) as f:
        trained = json.load(f)
    assert res["auc"] == pytest.approx(trained["auc"]) and res["accuracy"] == trained["accuracy"]


# ----------------------------------------------------------------------------- identities
def test_person_images_lists_every_image_of_each_person(people_dataset):
    keys = person_images(people_dataset, ["Person_Bb", "Person_Aa"])
    assert keys[:30] == [("Person_Aa", k) for k in range(1, 31)]
    assert keys[30:] == [("Person_Bb", k) for k in (1, 2, 3)]
    with pytest.raises(DataError, match="Nobody_Here.*cannot list"):
        person_images(people_dataset, ["Nobody_Here"])


def pool_of(counts):
    keys = [(f"P{p:02d}", k) for p, c in enumerate(counts) for k in range(1, c + 1)]
    images = np.arange(len(keys), dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    return IdentityPool(images, keys)


def test_drawn_pairs_are_balanced_and_labelled_by_identity():
    pool = pool_of([40, 2, 1, 3, 1, 2])
    s = pool.draw(2001, np.random.default_rng(0))
    person = np.array([k[0] for k in pool.keys])
    assert len(s) == 2001 and s.labels.sum() == 1000
    same = person[s.idx1] == person[s.idx2]
    np.testing.assert_array_equal(same, s.labels == 1)
    assert not np.any(s.idx1 == s.idx2)                     # a positive is two different images
    # positives are drawn per person: the 40-image person is one of 4 with >= 2 images
    share = np.mean(person[s.idx1[s.labels == 1]] == "P00")
    assert 0.2 < share < 0.3
    assert set(person[s.idx1[s.labels == 1]]) == {"P00", "P01", "P03", "P05"}
    a = pool.draw(50, np.random.default_rng(1))
    b = pool.draw(50, np.random.default_rng(1))
    np.testing.assert_array_equal(a.idx1, b.idx1)
    np.testing.assert_array_equal(a.idx2, b.idx2)


def test_a_pool_without_a_positive_pair_is_refused():
    with pytest.raises(DataError, match="one person with two images"):
        pool_of([1, 1, 1])


def identity_config(tmp_path, **train):
    return ExperimentConfig.from_file(tiny_config(str(tmp_path / "cfg.json"), pairs="identities", **train))


def test_training_on_identities_leaves_validation_people_out(people_dataset, tmp_path):
    logs = []
    tr = Trainer(identity_config(tmp_path, epochs=2, pairs_per_epoch=24), str(tmp_path / "run"), people_dataset,
                 cache_dir=str(tmp_path / "cache"), log=logs.append, progress=False)
    tr.load_data()
    val_people = people_in(tr.valset.pairs)
    assert val_people and not val_people & set(tr.pool.names)
    assert set(tr.pool.names) == (people_in(tr.trainset.pairs) | val_people) - val_people
    assert any("unrestricted" in m for m in logs)
    first, _, _ = tr._epoch_rows(0)
    second, _, _ = tr._epoch_rows(1)
    assert len(first) == len(second) == 24
    assert not (np.array_equal(first.idx1, second.idx1) and np.array_equal(first.idx2, second.idx2))
    tr.fit()
    assert len(tr.history) == 2


def test_a_bundle_packed_with_people_of_stands_in_for_the_folders_when_drawing_identities(people_dataset, tmp_path):
    """pack --people-of puts every image of the training people in the bundle
    (Person_Aa's 30, not just those in pairs); training from identities on that
    bundle draws from the same pool, image for image, and so the same run."""
    train_file = os.path.join(people_dataset, "pairsDevTrain.txt")
    people = people_in(read_pairs(train_file))
    packed, lean = str(tmp_path / "packed"), str(tmp_path / "lean")
    pack_faces(people_dataset, packed, ["pairsDevTrain.txt", "pairsDevTest.txt"], str(tmp_path / "c"), 24,
               people_of=["pairsDevTrain.txt"])
    pack_faces(people_dataset, lean, ["pairsDevTrain.txt", "pairsDevTest.txt"], str(tmp_path / "c"), 24)
    assert person_images(packed, people, 24) == person_images(people_dataset, people)
    from_folders = IdentityPool.load(people_dataset, people, str(tmp_path / "c"), 24)
    from_bundle = IdentityPool.load(packed, people, None, 24)
    assert from_bundle.keys == from_folders.keys and len(from_bundle.keys) > len(people)
    np.testing.assert_array_equal(from_bundle.images, from_folders.images)
    with pytest.raises(DataError, match=r"faces-24.npz: does not hold every image of Person_\w+ .*--people-of"):
        IdentityPool.load(lean, people, None, 24)
    runs = []
    for data in (people_dataset, packed):
        tr = Trainer(identity_config(tmp_path, epochs=1, pairs_per_epoch=24), str(tmp_path / f"run{len(runs)}"),
                     data, cache_dir=str(tmp_path / "c"), log=lambda m: None, progress=False)
        tr.load_data()
        tr.fit()
        runs.append(tr.history[-1])
    assert runs[0]["loss"] == runs[1]["loss"] and runs[0]["val_auc"] == runs[1]["val_auc"]


def test_drawing_identities_from_a_bundle_reads_its_images_once(people_dataset, tmp_path, monkeypatch):
    """Listing the people's images reads only the bundle's keys and people; the
    faces themselves (most of the file) are read once, for the pool."""
    import minisiamese.data as data_mod
    packed = str(tmp_path / "packed")
    pack_faces(people_dataset, packed, ["pairsDevTrain.txt"], str(tmp_path / "c"), 24, people_of=["pairsDevTrain.txt"])
    people = people_in(read_pairs(os.path.join(people_dataset, "pairsDevTrain.txt")))
    reads, real = [], data_mod.load_arrays

    def spy(path, names=None):
        arrays = real(path, names)
        reads.append(sorted(arrays))
        return arrays
    monkeypatch.setattr(data_mod, "load_arrays", spy)
    pool = IdentityPool.load(packed, people, None, 24)
    assert len(pool.keys) == len(pool.images) > len(people)
    assert reads == [["keys", "people"], ["images", "keys", "people"]]


@pytest.mark.parametrize("damage, expected", [
    (lambda a: a.pop("keys"), "not a face bundle"),
    (lambda a: a.update(keys=np.array(["Person_Aa/x1"] + a["keys"].tolist()[1:])), "bad image key 'Person_Aa/x1'"),
    (lambda a: a.update(keys=np.array(["Person_Aa/" + "9" * 5000] + a["keys"].tolist()[1:])),
     "bad image key 'Person_Aa/999"),                                     # int() of it used to raise
    (lambda a: a.update(people=a["people"].reshape(-1, 1)), "not a face bundle"),
    (lambda a: a.pop("people"), "does not hold every image of Person_"),           # a bundle from before --people-of
])
def test_a_damaged_or_older_bundle_is_named_when_drawing_identities(people_dataset, tmp_path, damage, expected):
    from minisiamese.fileio import load_arrays, save_arrays
    out = str(tmp_path / "b")
    pack_faces(people_dataset, out, ["pairsDevTrain.txt"], str(tmp_path / "c"), 24, people_of=["pairsDevTrain.txt"])
    path = os.path.join(out, "faces-24.npz")
    arrays = load_arrays(path)
    damage(arrays)
    save_arrays(path, arrays)
    people = people_in(read_pairs(os.path.join(people_dataset, "pairsDevTrain.txt")))
    with pytest.raises(DataError, match=f"faces-24.npz: {expected}" if expected[0] != "d" else expected):
        person_images(out, people, 24)


def test_a_bundle_of_another_size_is_named_when_drawing_identities(people_dataset, tmp_path):
    out = str(tmp_path / "b")
    pack_faces(people_dataset, out, ["pairsDevTrain.txt"], str(tmp_path / "c"), 24, people_of=["pairsDevTrain.txt"])
    with pytest.raises(DataError, match="holds the face bundle.*faces-24.npz, but the model needs faces-30.npz"):
        person_images(out, ["Person_Aa"], 30)


def test_pack_people_of_on_the_command_line(people_dataset, tmp_path, capsys):
    out = str(tmp_path / "b")
    assert cli.main(["pack", "--data-dir", people_dataset, "--out", out, "--cache-dir", str(tmp_path / "c"),
                     "--size", "24", "--people-of", "pairsDevTrain.txt"]) in (0, None)
    n_pairs_faces = len({k for p in read_pairs(os.path.join(people_dataset, "pairsDevTrain.txt"))
                         for k in ((p.name1, p.num1), (p.name2, p.num2))}
                        | {k for p in read_pairs(os.path.join(people_dataset, "pairsDevTest.txt"))
                           for k in ((p.name1, p.num1), (p.name2, p.num2))})
    packed = np.load(os.path.join(out, "faces-24.npz"))
    assert len(packed["keys"]) > n_pairs_faces and "Person_Aa/30" in packed["keys"].tolist()
    assert f"{len(packed['keys'])} faces" in capsys.readouterr().out


def test_identities_and_listed_configs_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="train.pairs must be one of"):
        identity_config(tmp_path).train.__class__(pairs="everything").validate()
    with pytest.raises(ConfigError, match="pairs_per_epoch"):
        ExperimentConfig.from_dict({"train": {"pairs": "identities", "pairs_per_epoch": -3}})


def test_validation_only_never_reads_the_test_pairs(people_dataset, tmp_path, capsys):
    data = tmp_path / "data"
    import shutil
    shutil.copytree(people_dataset, data)
    with open(data / "pairsDevTest.txt", "w") as f:
        f.write("this file is damaged\n")
    out = str(tmp_path / "run")
    code = cli.main(["train", "--config", tiny_config(str(tmp_path / "cfg.json"), epochs=2), "--data-dir", str(data),
                     "--out", out, "--cache-dir", str(tmp_path / "cache"), "--quiet", "--validation-only"])
    assert code == 0, capsys.readouterr().err
    assert "the test pairs were not read" in capsys.readouterr().out
    res = json.load(open(os.path.join(out, "results.json")))
    assert "accuracy" not in res and res["protocol"] == "image-restricted"
    assert set(res["val"]) == {"loss", "accuracy", "auc", "pairs", "ece", "brier"} and 0 <= res["val"]["auc"] <= 1


def test_set_changes_one_setting_and_names_a_bad_one():
    from minisiamese.runconfig import with_settings
    from minisiamese.runconfig import RUN_PRESETS
    best = RUN_PRESETS["best"]
    cfg = with_settings(best, ["model.crop=1", "train.pairs=listed", "augment.kind=none", "normalize=true",
                               "model.conv_filters=[8, 8, 8, 8]"])
    assert cfg.model.crop == 1 and cfg.train.pairs == "listed" and cfg.augment.kind == "none" and cfg.normalize
    assert cfg.model.conv_filters == (8, 8, 8, 8) and cfg.model.conv_kernels == best.model.conv_kernels
    assert best.model.crop == 0.5                                   # the preset itself is untouched
    for bad, message in (("model.crop=2", "crop must be a fraction"), ("model.nothing=1", "unknown key"),
                         ("crop=0.5", "unknown key"), ("train.pairs=all", "train.pairs must be"),
                         ("model.crop", "expected model.KEY=VALUE")):
        with pytest.raises(ConfigError, match=message):
            with_settings(best, [bad])
