"""Metrics, one-shot task construction and scoring, augmentation."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisiamese import metrics, oneshot
from minisiamese.augment import AugmentConfig, affine_warp, augment_batch, koch_transform, seed_transform
from minisiamese.data import PairSet


def brute_force_auc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=40))
def test_auc_equals_brute_force_pair_count_with_ties(rows):
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows]) / 5.0             # coarse scores: many ties
    if y.min() == y.max():
        with pytest.raises(ValueError):
            metrics.roc_auc(y, p)
        return
    assert metrics.roc_auc(y, p) == pytest.approx(brute_force_auc(y, p), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, p)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute_force_auc(y, p), abs=1e-12)


def test_precision_recall_accuracy_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.5, 0.3])
    m = metrics.binary_metrics(y, p)
    # predicted positive: 0.9, 0.6, 0.7, 0.5 -> tp 2, fp 2; fn 2, tn 2
    assert m == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "threshold": 0.5}
    assert metrics.binary_metrics([0, 0], [0.1, 0.2])["precision"] == 0.0
    t = metrics.best_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert metrics.binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], t)["accuracy"] == 1.0


def test_constant_output_is_flagged():
    assert metrics.is_constant(np.full(10, 0.5))
    assert not metrics.is_constant(np.array([0.1, 0.9]))


def make_pairset(people=20, per_person=3, positives=30, seed=0):
    rng = np.random.default_rng(seed)
    keys = [(f"P{i}", k) for i in range(people) for k in range(1, per_person + 1)]
    images = rng.integers(0, 256, (len(keys), 8, 8)).astype(np.uint8)
    idx1, idx2 = [], []
    for _ in range(positives):
        person = rng.integers(people)
        a, b = rng.choice(per_person, 2, replace=False)
        idx1.append(person * per_person + a)
        idx2.append(person * per_person + b)
    return PairSet(images, idx1, idx2, np.ones(positives), keys=keys)


def test_tasks_have_no_leakage_and_one_positive():
    s = make_pairset()
    person = np.array(s.person_of_image())
    tasks = oneshot.build_tasks(s, n_way=10, seed=3)
    assert len(tasks) == 30
    for t, row in zip(tasks, range(30)):
        assert len(t.candidates) == 10 and t.candidates[t.answer] == s.idx2[row]
        others = np.delete(t.candidates, t.answer)
        assert np.all(person[others] != person[t.anchor])       # negatives: other identities only
        assert len(set(others)) == 9
    assert len({t.answer for t in tasks}) > 3                   # the positive's position varies
    again = oneshot.build_tasks(s, n_way=10, seed=3)
    assert all(np.array_equal(a.candidates, b.candidates) for a, b in zip(tasks, again))


@pytest.mark.parametrize("people, per_person", [(11, 8), (10, 30)])
def test_negatives_are_distinct_people(people, per_person):
    # few people with many images each: a plain draw of 9 images repeats someone
    # in most tasks (and with 10 people, every task needs all 9 others)
    s = make_pairset(people=people, per_person=per_person, positives=200, seed=1)
    person = np.array(s.person_of_image())
    for t in oneshot.build_tasks(s, n_way=10, seed=5):
        others = person[np.delete(t.candidates, t.answer)]
        assert len(set(others)) == 9 and person[t.anchor] not in set(others)


def test_tasks_the_file_cannot_serve_are_refused_by_name():
    s = make_pairset(people=9, per_person=3, positives=5)
    with pytest.raises(ValueError, match="needs 9 people besides.*only 8.*to 9"):
        oneshot.check_tasks(s, 10, source="tiny.txt")
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="integer >= 2"):
            oneshot.check_tasks(s, bad)
    negatives_only = PairSet(s.images, s.idx1, s.idx2, np.zeros(5), keys=s.keys)
    with pytest.raises(ValueError, match="tiny.txt: no same-person pair"):
        oneshot.check_tasks(negatives_only, 3, source="tiny.txt")


def test_constant_model_scores_one_in_n_not_one():
    s = make_pairset(positives=3000, people=40)
    tasks = oneshot.build_tasks(s, n_way=10, seed=1)
    scores = oneshot.score_tasks(tasks, lambda a, b: np.full(len(a), 0.5))
    acc, _ = oneshot.oneshot_accuracy(tasks, scores, seed=2)
    assert abs(acc - 0.1) < 0.02


def test_perfect_model_scores_one():
    s = make_pairset()
    person = np.array(s.person_of_image())
    tasks = oneshot.build_tasks(s, n_way=5, seed=0)
    scores = np.array([[float(person[c] == person[t.anchor]) for c in t.candidates] for t in tasks])
    assert oneshot.oneshot_accuracy(tasks, scores)[0] == 1.0


def test_augmentations_keep_shape_and_range_and_are_identity_at_zero():
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 32, 32)).astype(np.float32)
    for cfg in (AugmentConfig(kind="seed"), AugmentConfig(kind="koch")):
        out = augment_batch(x, cfg, rng)
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
        assert not np.allclose(out, x)
    zero = AugmentConfig(kind="seed", flip=False, rotation=0, zoom=0, contrast=0)
    np.testing.assert_array_equal(seed_transform(x[0, 0], zero, rng), x[0, 0])
    # exact: at the identity every sample point is a pixel (weights 1 and 0), and float64 -> float32 gives x back
    np.testing.assert_array_equal(koch_transform(x[0, 0], rng, strength=0.0), x[0, 0])
    np.testing.assert_array_equal(affine_warp(x[0, 0], np.c_[np.eye(2), np.zeros(2)]), x[0, 0])


def test_affine_warp_rotates_and_shifts_exactly():
    img = np.arange(25, dtype=np.float64).reshape(5, 5)
    quarter = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])        # output (u, v) reads input (v, -u)
    np.testing.assert_allclose(affine_warp(img, quarter), np.rot90(img, -1), atol=1e-12)
    shift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])           # read one pixel to the right
    np.testing.assert_allclose(affine_warp(img, shift)[:, :4], img[:, 1:], atol=1e-12)


def test_augment_config_validation():
    with pytest.raises(ValueError, match="kind"):
        AugmentConfig(kind="mixup").validate()
    with pytest.raises(ValueError, match="zoom"):
        AugmentConfig(zoom=2.0).validate()
    with pytest.raises(ValueError, match="mirror must be true or false"):
        AugmentConfig(mirror="yes").validate()


def test_mirror_flips_left_right_about_half_the_time(monkeypatch):
    import minisiamese.augment as aug
    x = np.random.default_rng(1).random((400, 1, 8, 8))
    monkeypatch.setattr(aug, "koch_transform", lambda img, rng: img.copy())     # isolate the mirror
    out = augment_batch(x, AugmentConfig(kind="koch", mirror=True), np.random.default_rng(2))
    plain = augment_batch(x, AugmentConfig(kind="koch"), np.random.default_rng(2))
    flipped = np.array([np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(flipped ^ kept) and 0.4 < flipped.mean() < 0.6
    np.testing.assert_array_equal(plain, x)                             # mirror off: never flipped
