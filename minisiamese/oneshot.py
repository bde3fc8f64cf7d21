"""N-way one-shot tasks built from a verification test set, or drawn within
the groups of a set of images labelled by class (:func:`group_tasks`: Omniglot's
within-alphabet tasks).

For every same-person test pair (anchor, positive) one task: the anchor, its
positive and N-1 negatives -- images of N-1 *distinct* other identities from the
test set -- in random order.  The model scores (anchor, candidate) for each candidate; the
task succeeds when the positive gets the highest score.  Ties are broken at
random, so a model that outputs a constant scores 1/N on average, not 1.
"""
from dataclasses import dataclass

import numpy as np

from .errors import require_int


@dataclass
class OneShotTask:
    anchor: int             # image index in the PairSet's table
    candidates: np.ndarray  # (N,) image indices
    answer: int             # position of the positive among the candidates


REDRAWS = 1000


def check_tasks(pairset, n_way, source="test pairs"):
    """A ValueError naming ``source`` unless every positive pair of ``pairset``
    can anchor an ``n_way`` task: at least one positive pair, and N-1 people
    other than the anchor's, each with an image in the file."""
    require_int("one-shot: the task width (oneshot_way / --n-way)", n_way, 2)
    person = np.array(pairset.person_of_image())
    anchors = pairset.idx1[pairset.labels == 1]
    if len(anchors) == 0:
        raise ValueError(f"{source}: no same-person pair, so no one-shot task can be built")
    fewest = len(set(person.tolist())) - 1             # people besides any anchor's
    if fewest < n_way - 1:
        raise ValueError(f"{source}: a {n_way}-way one-shot task needs {n_way - 1} people besides the anchor's, "
                         f"but the file has images of only {fewest}; lower oneshot_way / --n-way to {fewest + 1} "
                         f"or less")


def build_tasks(pairset, n_way=10, seed=0):
    """One task per positive pair of ``pairset``: its 9 (N-1) negatives are
    images of distinct people, none of them the anchor's.

    Negatives are drawn uniformly from the other people's images; a draw in
    which some person appears twice is drawn again (so tasks whose first draw
    was already distinct are the ones a plain draw would give).  Should a file
    be so lopsided that :data:`REDRAWS` draws all repeat someone, the N-1
    people are drawn first (weighted by their images) and one image of each."""
    check_tasks(pairset, n_way)
    rng = np.random.default_rng(seed)
    person = np.array(pairset.person_of_image())
    tasks = []
    for row in np.flatnonzero(pairset.labels == 1):
        a, pos = int(pairset.idx1[row]), int(pairset.idx2[row])
        pool = np.flatnonzero(person != person[a])        # other identities only
        negatives = rng.choice(pool, n_way - 1, replace=False)
        for _ in range(REDRAWS):
            if len(set(person[negatives].tolist())) == n_way - 1:
                break
            negatives = rng.choice(pool, n_way - 1, replace=False)
        else:
            names, counts = np.unique(person[pool], return_counts=True)
            chosen = rng.choice(len(names), n_way - 1, replace=False, p=counts / counts.sum())
            negatives = np.array([rng.choice(pool[person[pool] == names[k]]) for k in chosen])
        answer = int(rng.integers(n_way))
        candidates = np.insert(negatives, answer, pos)
        tasks.append(OneShotTask(a, candidates, answer))
    return tasks


def group_tasks(classes, groups, n_tasks, n_way, rng):
    """``n_tasks`` within-group ``n_way``-way tasks over a table of images,
    ``classes`` (U,) the class of each image and ``groups`` (U,) its group
    (Omniglot: character and alphabet).  Each task picks a group uniformly
    among those with at least ``n_way`` classes, ``n_way`` distinct classes of
    it, one image of each as the candidates, and as its anchor another image of
    one of them (the answer, uniform).  Every class needs 2 images or more.  A
    ValueError when no group has ``n_way`` classes."""
    classes, groups = np.asarray(classes), np.asarray(groups)
    members = {}                                           # group -> class -> its image rows
    for row, (c, g) in enumerate(zip(classes.tolist(), groups.tolist())):
        members.setdefault(g, {}).setdefault(c, []).append(row)
    usable = sorted(g for g, cs in members.items() if len(cs) >= n_way)
    if not usable:
        most = max((len(cs) for cs in members.values()), default=0)
        raise ValueError(f"a {n_way}-way within-group task needs a group with {n_way} classes; the largest has {most}")
    rows = {g: [np.array(members[g][c]) for c in sorted(members[g])] for g in usable}
    tasks = []
    for _ in range(n_tasks):
        group = rows[usable[rng.integers(len(usable))]]
        chosen = rng.choice(len(group), n_way, replace=False)
        answer = int(rng.integers(n_way))
        candidates = np.array([group[c][rng.integers(len(group[c]))] for c in chosen])
        own = group[chosen[answer]]
        anchor = own[(np.flatnonzero(own == candidates[answer])[0] + 1 + rng.integers(len(own) - 1)) % len(own)]
        tasks.append(OneShotTask(int(anchor), candidates, answer))
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
