"""Evaluation on a pairs file: verification metrics, ROC, one-shot tasks, figures; and Omniglot's final
figures (Lake's runs, within-alphabet trials, verification pairs: :func:`evaluate_omniglot`)."""
import os

import numpy as np

from . import calibration as cal
from . import metrics, omniglot, oneshot, plots, stats
from .backend import to_numpy
from .checkpoint import check_threshold
from .data import (Normalizer, check_data_dir, is_view2_file, load_pairset, pairset_from_pairs, people_in, read_pairs,
                   read_pairs_folds)
from .errors import CheckpointError, DataError
from .model import load_model
from .runfiles import not_a_model, refuse_run_folder, write_results


def load_trained(path, device="cpu", flip_average=None):
    """(net, normalizer, threshold) from a model.npz written by training.
    ``threshold`` is the one chosen on validation, on the probabilities the net
    gives (through its calibration, when it has one: :func:`decision_threshold`
    says which rule decides).  ``flip_average`` (True/False) overrides the
    model's own setting, to measure what test-time flip averaging does; None
    keeps it."""
    try:
        net, extra = load_model(path, backend=device, with_extra=True)
    except CheckpointError as exc:
        raise CheckpointError(not_a_model(path) or str(exc)) from None
    if flip_average is not None:
        net.config = net.config.replace(flip_average=bool(flip_average))
    threshold = extra.get("threshold", np.array(0.5))
    # a 0-d float array gives a Python float; any other array stays an array, which is no probability
    threshold = check_threshold("its decision threshold", threshold.tolist() if threshold.dtype.kind == "f"
                                else threshold, error=lambda m: CheckpointError(f"{path}: {m}"))
    return net, Normalizer.from_extra(extra, source=path), cal.map_threshold(float(threshold), net.calibration)


def decision_threshold(net, threshold):
    """The rule a model decides "same person" by: p >= 0.5 when its
    probabilities are calibrated, else p >= the threshold chosen on validation
    (models trained without ``train.calibrate``)."""
    return 0.5 if net.calibration is not None else threshold


class Embeddings:
    """The tower output of every image of a PairSet that evaluation needs,
    each face embedded once (the head that compares two is cheap).

    ``Embeddings(net, normalizer, pairset, needed)`` embeds the image-table rows
    ``needed``; ``probs(i1, i2)`` scores rows i1[n] against i2[n]."""

    def __init__(self, net, normalizer, pairset, needed, batch_size=128):
        self.net = net
        rows = np.unique(np.asarray(needed, dtype=np.int64))
        self.where = np.full(len(pairset.images), -1, dtype=np.int64)
        self.where[rows] = np.arange(len(rows))
        parts = [net.embed(normalizer(pairset.image_batch(rows[i:i + batch_size])), batch_size)
                 for i in range(0, len(rows), batch_size)]
        self.h = (parts[0] if len(parts) == 1 else net.xp.concatenate(parts)) if parts else None

    def _rows(self, i1, i2):
        """The embedding rows of image-table rows i1 and i2; a ValueError for an image not embedded."""
        a, b = self.where[np.asarray(i1)], self.where[np.asarray(i2)]
        if (a < 0).any() or (b < 0).any():
            raise ValueError("Embeddings: an image that was not embedded")
        return a, b

    def _pairs(self, head, i1, i2, batch_size):
        """``head(h1, h2)`` (NumPy) over the pairs (i1[n], i2[n]), ``batch_size`` pairs at a time."""
        a, b = self._rows(i1, i2)
        out = [head(self.h[a[i:i + batch_size]], self.h[b[i:i + batch_size]]) for i in range(0, len(a), batch_size)]
        return np.concatenate(out) if out else np.zeros(0)

    def probs(self, i1, i2, batch_size=4096):
        """Probabilities (calibrated when the model is) for the pairs (i1[n], i2[n]) of image-table rows, as NumPy."""
        return self._pairs(self.net.score, i1, i2, batch_size)

    def logits(self, i1, i2, batch_size=4096):
        """The head's logits (before any calibration) for the pairs (i1[n], i2[n]), as NumPy float64."""
        return self._pairs(self.net.head_logits, i1, i2, batch_size)

    def l1(self, i1, i2):
        """L1 distance between the codes of rows i1[n] and i2[n], as NumPy."""
        a, b = self._rows(i1, i2)
        return to_numpy(self.net.xp.abs(self.h[a] - self.h[b]).sum(axis=1)).astype(np.float64)


def calibration(labels, probs, distances):
    """What a threshold of 0.5 rests on: the mean p(same) and the mean L1
    distance between the two codes, on same-person and on different-person
    pairs (None for a class the pairs lack)."""
    mean = lambda v, cls: float(v[labels == cls].mean()) if np.any(labels == cls) else None    # noqa: E731
    return {"p_same_on_same": mean(probs, 1), "p_same_on_different": mean(probs, 0),
            "code_l1_on_same": mean(distances, 1), "code_l1_on_different": mean(distances, 0)}


def calibration_figures(net, labels, probs, logits=None, threshold=None):
    """ECE and Brier score of the probabilities a model gives, the accuracy at
    0.5 and (``threshold``) at its validation threshold; for a calibrated model
    with ``logits``, the same of its raw sigmoid under ``before_calibration``."""
    y = np.asarray(labels)
    acc = lambda p, t: float(np.mean((p >= t) == (y == 1))) if len(y) else None          # noqa: E731
    res = dict(cal.summary(y, probs), accuracy_at_half=acc(probs, 0.5)) if len(y) else {}
    if threshold is not None and len(y):
        res["accuracy_at_threshold"] = acc(probs, threshold)
    if net.calibration is not None and logits is not None and len(y):
        raw = cal.sigmoid(logits)
        res["before_calibration"] = dict(cal.summary(y, raw), accuracy_at_half=acc(raw, 0.5))
    return res


def predict(net, normalizer, pairset, batch_size=128):
    """Probabilities for every pair of ``pairset``: each distinct image is
    embedded once, then every pair is scored from the embeddings."""
    emb = Embeddings(net, normalizer, pairset, np.concatenate([pairset.idx1, pairset.idx2]), batch_size)
    return emb.probs(pairset.idx1, pairset.idx2)


def oneshot_scores(net, normalizer, table, tasks, batch_size=128):
    """(T, N) scores of one-shot tasks over the image table of the PairSet ``table``, each image embedded
    once.  The scores are the head's logits, not probabilities: a float32 sigmoid saturates at 1 for
    strong matches, and a tie there would be broken at random."""
    needed = np.concatenate([[t.anchor for t in tasks]] + [t.candidates for t in tasks]) if tasks else []
    emb = Embeddings(net, normalizer, table, needed, batch_size)
    return oneshot.score_tasks(tasks, emb.logits)


def oneshot_task_accuracy(net, normalizer, table, tasks, seed, batch_size=128):
    """Accuracy on one-shot tasks over ``table`` (:func:`oneshot_scores`; ties broken at random by ``seed``):
    Omniglot's validation figure, the same in training and in ``evaluate --validation``."""
    return oneshot.oneshot_accuracy(tasks, oneshot_scores(net, normalizer, table, tasks, batch_size), seed)[0]


def evaluate_pairset(net, normalizer, pairset, threshold=0.5, n_way=10, seed=0, batch_size=128,
                     figures_dir=None, oneshot_tasks=True):
    """Metrics dict (and figures when ``figures_dir`` is given)."""
    tasks = oneshot.build_tasks(pairset, n_way, seed) if oneshot_tasks else []
    needed = [pairset.idx1, pairset.idx2] + [t.candidates for t in tasks]   # anchors are idx1 rows
    emb = Embeddings(net, normalizer, pairset, np.concatenate(needed), batch_size)
    z = emb.logits(pairset.idx1, pairset.idx2) if net.calibration is not None else None
    p = emb.probs(pairset.idx1, pairset.idx2)
    y = pairset.labels
    res = {"pairs": int(len(y))}
    res.update(metrics.binary_metrics(y, p, 0.5))
    tuned = metrics.binary_metrics(y, p, threshold)
    res["tuned"] = tuned
    res["auc"] = metrics.roc_auc(y, p)
    res["calibration"] = calibration(y, p, emb.l1(pairset.idx1, pairset.idx2))
    figures = calibration_figures(net, y, p, z)
    res.update(ece=figures["ece"], brier=figures["brier"])
    if "before_calibration" in figures:
        res["before_calibration"] = figures["before_calibration"]
    res["constant_output"] = metrics.is_constant(p)
    if res["constant_output"]:
        res["warning"] = (f"the model outputs (almost) the same probability {p.mean():.4f} for every pair: "
                          "it has collapsed, and its metrics mean nothing")
    if oneshot_tasks:
        scores = oneshot.score_tasks(tasks, emb.probs)
        acc, chosen = oneshot.oneshot_accuracy(tasks, scores, seed)
        res["oneshot"] = acc
        res["oneshot_tasks"] = len(tasks)
        res["oneshot_way"] = n_way
    if figures_dir:
        os.makedirs(figures_dir, exist_ok=True)
        fpr, tpr, _ = metrics.roc_curve(y, p)
        plots.plot_roc(fpr, tpr, res["auc"], os.path.join(figures_dir, "roc.png"))
        plots.plot_pair_extremes(pairset, p, os.path.join(figures_dir, "pairs.png"))
        plot_reliability(net, y, p, z, os.path.join(figures_dir, "reliability.png"), "reliability on the test pairs")
        if oneshot_tasks:
            plots.plot_oneshot(tasks, scores, chosen, pairset, os.path.join(figures_dir, "oneshot.png"))
    return res, p


def evaluate_omniglot(net, normalizer, finals, threshold=0.5, seed=0, batch_size=128, figures_dir=None):
    """Koch's experiment's final figures on :class:`minisiamese.omniglot.Finals`, each image embedded once:

    - ``lake20``: Lake's runs (400 trials), each test item given to the training image of the highest
      score; ``se`` over the runs (the SD of the per-run accuracies over sqrt(runs): a run's trials share
      their candidates, so they are not independent), ``se_binomial`` as if they were;
    - ``within20``: the within-alphabet trials of the run alphabets (10,000), ``se`` binomial;
    - ``verification``: the same/different pairs of the run alphabets (10,000): accuracy at 0.5 and at the
      validation ``threshold`` (binomial SE), AUC (SE by Hanley & McNeil).

    Scores rank by the head's logits; ties are broken at random (``seed``).  With ``figures_dir``, a figure
    of the first items of a few runs with the chosen and the correct image (input size in its title)."""
    runs, size = finals.runs, net.config.input_size
    scores = oneshot_scores(net, normalizer, runs.table, runs.tasks, batch_size)
    _, chosen = oneshot.oneshot_accuracy(runs.tasks, scores, seed)
    right = chosen == np.array([t.answer for t in runs.tasks])
    per_run = [float(right[runs.run == k].mean()) for k in range(len(runs.names))]
    acc = float(right.mean())
    res = {"input_size": size, "lake20": {
        "accuracy": acc, "se": stats.mean_se(per_run)[1] if len(per_run) > 1 else None,
        "se_binomial": stats.binomial_se(acc, len(right)), "trials": len(right), "runs": len(per_run),
        "way": len(runs.tasks[0].candidates), "per_run": dict(zip(runs.names, per_run))}}
    table = finals.pairs
    needed = [table.idx1, table.idx2, [t.anchor for t in finals.tasks]] + [t.candidates for t in finals.tasks]
    emb = Embeddings(net, normalizer, table, np.concatenate(needed), batch_size)
    acc, _ = oneshot.oneshot_accuracy(finals.tasks, oneshot.score_tasks(finals.tasks, emb.logits), seed)
    res["within20"] = {"accuracy": acc, "se": stats.binomial_se(acc, len(finals.tasks)), "trials": len(finals.tasks),
                       "way": len(finals.tasks[0].candidates)}
    y, p, z = table.labels, emb.probs(table.idx1, table.idx2), emb.logits(table.idx1, table.idx2)
    auc, n_pos = metrics.roc_auc(y, z), int(np.sum(y == 1))
    at_half, at_threshold = float(np.mean((p >= 0.5) == (y == 1))), float(np.mean((p >= threshold) == (y == 1)))
    res["verification"] = {"pairs": len(y), "accuracy": at_half, "accuracy_se": stats.binomial_se(at_half, len(y)),
                           "threshold": threshold, "accuracy_at_threshold": at_threshold,
                           "accuracy_at_threshold_se": stats.binomial_se(at_threshold, len(y)),
                           "auc": auc, "auc_se": stats.auc_se(auc, n_pos, len(y) - n_pos)}
    if figures_dir:
        os.makedirs(figures_dir, exist_ok=True)
        plots.plot_lake_runs(runs, chosen, os.path.join(figures_dir, "lake_runs.png"),
                             f"Lake's runs, input {size}x{size}: each test item (q), the training image chosen "
                             f"(red when wrong) and the correct one; 20-way accuracy {res['lake20']['accuracy']:.3f}")
    return res


def omniglot_summary(res):
    """The final figures of :func:`evaluate_omniglot` as one line each."""
    lake, within, ver = res["lake20"], res["within20"], res["verification"]
    se = lambda v: "n/a" if v is None else f"{v:.3f}"                                  # noqa: E731
    return [f"Omniglot at {res['input_size']}x{res['input_size']} (trained on all 20 drawers; Koch trained on 12):",
            f"  Lake's runs: {lake['way']}-way accuracy {lake['accuracy']:.3f} ± {se(lake['se'])} (SE over "
            f"{lake['runs']} runs; {lake['trials']} trials)",
            f"  within-alphabet: {within['way']}-way accuracy {within['accuracy']:.3f} ± {se(within['se'])} "
            f"({within['trials']} trials)",
            f"  verification: accuracy {ver['accuracy']:.3f} ± {se(ver['accuracy_se'])} at 0.5, "
            f"{ver['accuracy_at_threshold']:.3f} at the validation threshold; AUC {ver['auc']:.3f} ± "
            f"{se(ver['auc_se'])} ({ver['pairs']} pairs)"]


def plot_reliability(net, labels, probs, logits, path, title):
    """The reliability diagram of a model's probabilities (and of its raw
    sigmoid, when it is calibrated and ``logits`` are given)."""
    curves = {"calibrated" if net.calibration is not None else "model": (labels, probs)}
    if net.calibration is not None and logits is not None:
        curves["raw sigmoid"] = (labels, cal.sigmoid(logits))
    plots.plot_reliability(curves, path, title)


def _fold_summary(labels, probs, fold):
    """Per fold: accuracy at the threshold chosen on the other folds, and AUC;
    then over the folds the mean, the standard error LFW asks for (sample SD
    over sqrt(folds): ``*_se``) and the population SD (``*_std``).  A fold
    with pairs of one class only (a subset can have that) has no AUC (None):
    the AUC figures are over the folds that have one."""
    rows = []
    for k in np.unique(fold):
        mine, others = fold == k, fold != k
        thr = metrics.best_threshold(labels[others], probs[others])
        m = metrics.binary_metrics(labels[mine], probs[mine], thr)
        both = len(np.unique(labels[mine])) == 2
        m["auc"] = metrics.roc_auc(labels[mine], probs[mine]) if both else None
        m["pairs"] = int(mine.sum())
        rows.append(m)
    res = {"folds": rows, "pairs": int(len(labels))}
    for key in ("accuracy", "auc"):
        v = np.array([r[key] for r in rows if r[key] is not None])
        mean, se = stats.mean_se(v) if len(v) else (None, None)
        res.update({f"{key}_mean": mean, f"{key}_se": se, f"{key}_std": float(v.std()) if len(v) else None})
    return res


def leak_free(pairs, people):
    """(len(pairs),) bool: the pairs in which neither face is of one of ``people`` (a model's training
    people: View 2 shares people with pairsDevTrain)."""
    return np.array([p.name1 not in people and p.name2 not in people for p in pairs], dtype=bool)


def evaluate_folds(net, normalizer, data_dir, path, cache_dir=None, batch_size=128, exclude_people=None,
                   threshold=None, figures_dir=None):
    """View 2 protocol: accuracy per fold with the threshold chosen on the other
    nine folds (the model itself is not retrained), and AUC per fold.  Every
    face of the file is embedded once.  Each part also holds the calibration
    figures of all its pairs together (:func:`calibration_figures`: ECE, Brier,
    accuracy at 0.5 and at ``threshold``, the model's validation threshold).

    ``exclude_people``: the people a model trained on (pairsDevTrain's share
    people with View 2).  Then the result also holds ``leak_free``: the same
    protocol on the pairs that involve none of them; with ``figures_dir``, its
    reliability diagram is written there."""
    folds = read_pairs_folds(path)
    pairs = [p for f in folds for p in f]
    fold = np.repeat(np.arange(len(folds)), [len(f) for f in folds])
    s = pairset_from_pairs(data_dir, pairs, path, cache_dir, net.config.input_size, net.config.crop)
    emb = Embeddings(net, normalizer, s, np.concatenate([s.idx1, s.idx2]), batch_size)
    z = emb.logits(s.idx1, s.idx2) if net.calibration is not None else None
    probs = emb.probs(s.idx1, s.idx2)
    res = _fold_summary(s.labels, probs, fold)
    res.update(calibration_figures(net, s.labels, probs, z, threshold))
    if exclude_people is not None:
        clean = leak_free(pairs, exclude_people)
        res["leak_free"] = _fold_summary(s.labels[clean], probs[clean], fold[clean])
        res["leak_free"].update(calibration_figures(net, s.labels[clean], probs[clean],
                                                    None if z is None else z[clean], threshold))
        if figures_dir and clean.any():
            os.makedirs(figures_dir, exist_ok=True)
            plot_reliability(net, s.labels[clean], probs[clean], None if z is None else z[clean],
                             os.path.join(figures_dir, "reliability_view2_leak_free.png"),
                             "reliability on View 2, leak-free pairs")
    return res


def train_people(data_dir, train_pairs="pairsDevTrain.txt"):
    """The people named in a training pairs file (None when it is not there)."""
    path = train_pairs if os.path.isabs(train_pairs) else os.path.join(data_dir, train_pairs)
    if not os.path.isfile(path):
        return None
    return people_in(read_pairs(path))


def evaluate_model_file(model_path, data_dir, pairs="pairsDevTest.txt", device="cpu", out_dir=None,
                        cache_dir=None, n_way=10, seed=0, batch_size=128, flip_average=None):
    refuse_run_folder(out_dir)
    net, normalizer, threshold = load_trained(model_path, device, flip_average)
    check_data_dir(data_dir, needs=())
    path = pairs if os.path.exists(pairs) else os.path.join(data_dir, pairs)
    if is_view2_file(path):
        res = evaluate_folds(net, normalizer, data_dir, path, cache_dir, batch_size, train_people(data_dir), threshold,
                             os.path.join(out_dir, "figures") if out_dir else None)
    else:
        pairset = load_pairset(data_dir, path, cache_dir, net.config.input_size, net.config.crop)
        try:
            oneshot.check_tasks(pairset, n_way, path)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        res, _ = evaluate_pairset(net, normalizer, pairset, threshold, n_way, seed, batch_size,
                                  figures_dir=os.path.join(out_dir, "figures") if out_dir else None)
    res["pairs_file"] = os.path.basename(path)
    res["model"] = str(model_path)
    res["flip_average"] = net.config.flip_average
    if out_dir:
        write_results(out_dir, res)
    return res


def evaluate_omniglot_file(model_path, data_dir, device="cpu", out_dir=None, cache_dir=None, seed=0, batch_size=128,
                           flip_average=None):
    """:func:`evaluate_omniglot` of a model.npz on the Omniglot in ``data_dir`` (every file read and
    checked first); with ``out_dir``, results.json and the figure there."""
    refuse_run_folder(out_dir)
    net, normalizer, threshold = load_trained(model_path, device, flip_average)
    if not os.path.isdir(data_dir):
        raise DataError(omniglot.missing_data_message(data_dir))
    finals = omniglot.load_finals(data_dir, net.config.input_size, cache_dir)
    res = {"dataset": "omniglot", **evaluate_omniglot(net, normalizer, finals, threshold, seed, batch_size,
                                                      os.path.join(out_dir, "figures") if out_dir else None)}
    res.update(model=str(model_path), flip_average=net.config.flip_average)
    if out_dir:
        write_results(out_dir, res)
    return res
