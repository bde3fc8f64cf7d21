"""N-way one-shot tasks built from a verification test set.

For every same-person test pair (anchor, positive) one task: the anchor, its
positive and N-1 negatives -- images of *other* identities from the test set --
in random order.  The model scores (anchor, candidate) for each candidate; the
task succeeds when the positive gets the highest score.  Ties are broken at
random, so a model that outputs a constant scores 1/N on average, not 1.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class OneShotTask:
    anchor: int             # image index in the PairSet's table
    candidates: np.ndarray  # (N,) image indices
    answer: int             # position of the positive among the candidates


def build_tasks(pairset, n_way=10, seed=0):
    """One task per positive pair of ``pairset``."""
    if n_way < 2:
        raise ValueError(f"one-shot: n_way must be >= 2, got {n_way}")
    rng = np.random.default_rng(seed)
    person = np.array(pairset.person_of_image())
    tasks = []
    for row in np.flatnonzero(pairset.labels == 1):
        a, pos = int(pairset.idx1[row]), int(pairset.idx2[row])
        pool = np.flatnonzero(person != person[a])        # other identities only
        if len(pool) < n_way - 1:
            raise ValueError(f"one-shot: only {len(pool)} images of other people for a {n_way}-way task")
        negatives = rng.choice(pool, n_way - 1, replace=False)
        answer = int(rng.integers(n_way))
        candidates = np.insert(negatives, answer, pos)
        tasks.append(OneShotTask(a, candidates, answer))
    return tasks


def score_tasks(tasks, score_fn):
    """(N_tasks, n_way) scores: ``score_fn(anchors, candidates)`` -- two arrays of
    image-table rows -- on every (anchor, candidate) of every task, in one call
    (evaluation passes :meth:`minisiamese.evaluate.Embeddings.probs`, which
    compares embeddings computed once per face)."""
    a = np.repeat([t.anchor for t in tasks], [len(t.candidates) for t in tasks])
    c = np.concatenate([t.candidates for t in tasks]) if tasks else np.zeros(0, int)
    scores = np.asarray(score_fn(a, c)) if len(a) else np.zeros(0)
    return scores.reshape(len(tasks), -1)


def oneshot_accuracy(tasks, scores, seed=0):
    """Fraction of tasks whose positive has the top score, ties broken at random.
    Returns (accuracy, chosen positions)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for row in np.asarray(scores):
        top = np.flatnonzero(row == row.max())
        chosen.append(int(rng.choice(top)))
    chosen = np.array(chosen)
    answers = np.array([t.answer for t in tasks])
    return (float(np.mean(chosen == answers)) if len(tasks) else 0.0), chosen
