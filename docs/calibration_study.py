#!/usr/bin/env python3
"""Why bn512w's calibrated ECE stays near 0.035 (issue 36): would another fit on validation data lower it?

    python3 docs/calibration_study.py --runs runs/seeds/bn512w-s0 runs/seeds/bn512w-s1 runs/seeds/bn512w-s2 \\
        --out docs/results/calibration/study.json

For each trained, calibrated run it takes the head's logits (flip averaging as
at inference) on four sets of pairs: the run's validation pairs; ``--extra``
more pairs drawn from all LFW-a images of the validation people the run did not
train on (with ``train.pairs: "identities"``, as in bn512w, that is every
validation person: training draws from pairsDevTrain's people less those);
pairsDevTest; and View 2's leak-free pairs (no face of a pairsDevTrain person).
Then it fits four calibrations and measures each on the two evaluation sets:

- ``platt/validation``: Platt's (a, c) on the validation pairs as the run stored them (refitted here as a
  check that these are the run's validation pairs);
- ``platt/validation+drawn``: the same on the validation pairs and the drawn ones (about ten times the data);
- ``beta/validation``: the three-parameter form of Kull et al.'s (2017) beta calibration,
  q = sigmoid(a ln p - b ln(1 - p) + c), on the validation pairs; unlike theirs, fitted to Platt's smoothed
  targets and with a, b unconstrained;
- ``platt/in-sample`` and ``beta/in-sample``: each fitted on the evaluated pairs themselves. These see the
  labels they are scored on (by likelihood, not by ECE), so they show what that family reaches there; they
  are no method.

It prints the mean over runs of ECE (15 bins) and Brier on each set, with the ECE floor of a perfectly
calibrated model (:func:`minisiamese.calibration.ece_floor`), and the reliability bins of the stored
calibration with all runs' pairs pooled (each seed scores the same pairs, so the SE shown is that of one
seed's share of the bin, not of the pooled count); it writes everything to ``--out`` as JSON.
About 5 minutes a run on two CPU cores.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from minisiamese import calibration as cal  # noqa: E402
from minisiamese.errors import USER_ERRORS, require_int  # noqa: E402
from minisiamese.data import default_data_dir, load_pairset, pairset_from_pairs, people_in, read_pairs_folds  # noqa: E402
from minisiamese.evaluate import Embeddings, leak_free, load_trained, train_people  # noqa: E402
from minisiamese.pairsampler import IdentityPool  # noqa: E402
from minisiamese.pipeline import lfw_split, run_of_model  # noqa: E402
from minisiamese.train import trained_people  # noqa: E402

EVALUATED = ("test", "view2_leak_free")


def beta_features(z):
    """The features of the beta map, s = a ln p - b ln(1 - p) + c with p = sigmoid(z): the columns
    [ln p, -ln(1 - p), 1] (n, 3); (a, b, c) = (1, 1, 0) is the raw sigmoid."""
    z = np.asarray(z, dtype=np.float64)
    return np.stack([-np.logaddexp(0, -z), np.logaddexp(0, z), np.ones_like(z)], axis=1)


def fit(family, z, y, on):
    """A function z -> calibrated probability, fitted on logits z and labels y (the pairs ``on``); a
    ValueError naming the family and ``on`` when Platt's cannot be fitted there."""
    if family == "platt":
        try:
            ac = cal.fit_platt(z, y)
        except ValueError as exc:
            raise ValueError(f"Platt on the {on} pairs: {exc}") from None
        return lambda x: cal.apply_platt(x, ac)
    w = cal.fit_logistic(beta_features(z), y, [1.0, 1.0, 0.0])
    return lambda x: cal.sigmoid(beta_features(x) @ w)


def logits_of(net, normalizer, pairset, batch_size):
    """The head's logits (float64) and the labels of ``pairset``, its faces embedded ``batch_size`` at a time (the
    run's own, so that the test pairs' figures are the ones its evaluation computed from the same float32 sums)."""
    emb = Embeddings(net, normalizer, pairset, np.concatenate([pairset.idx1, pairset.idx2]), batch_size)
    return emb.logits(pairset.idx1, pairset.idx2), np.asarray(pairset.labels)


def run_sets(run_dir, data_dir, extra, cache_dir):
    """(logits, labels) of the four sets of pairs of one run, by name, and the run's stored calibration."""
    model = os.path.join(run_dir, "model.npz")
    net, normalizer, _ = load_trained(model)
    if net.calibration is None:
        sys.exit(f"{model}: not calibrated (train.calibrate off)")
    config, seed, data = run_of_model(model)
    if config.dataset != "lfw-a":
        sys.exit(f"{model}: a {config.dataset} run; the study needs LFW-a's test and View 2 pairs")
    size, crop = net.config.input_size, net.config.crop
    full, train, val = lfw_split(model, net, data_dir, config, seed, data, cache_dir)
    unseen = sorted(people_in(val.pairs) - trained_people(config.train, full, train, val))
    if len(unseen) < 2:
        sys.exit(f"{model}: {len(unseen)} of its validation people are unseen in training (train.pairs "
                 f"{config.train.pairs!r}); drawing more pairs needs two or more")
    pool = IdentityPool.load(data_dir, unseen, cache_dir, size, crop)
    drawn = pool.draw(extra, np.random.default_rng(1000 + seed))
    source = {"validation_people": len(people_in(val.pairs)), "drawn_from_people": len(unseen),
              "drawn_from_images": len(pool.keys), "training_pairs": config.train.pairs}
    test = load_pairset(data_dir, config.train.test_pairs, cache_dir, size, crop)
    pairs = [p for fold in read_pairs_folds(os.path.join(data_dir, "pairs.txt")) for p in fold]
    view2 = pairset_from_pairs(data_dir, pairs, "pairs.txt", cache_dir, size, crop)
    clean = leak_free(pairs, train_people(data_dir, config.train.train_pairs))
    sets = {name: logits_of(net, normalizer, s, config.train.batch_size) for name, s in
            (("validation", val), ("drawn", drawn), ("test", test), ("view2", view2))}
    z, y = sets.pop("view2")
    sets["view2_leak_free"] = (z[clean], y[clean])
    return sets, net.calibration, seed, source


def study(sets, ac):
    """{method: {evaluated set: {ece, brier}}} for one run's sets; ``ac``: the run's stored Platt [a, c]."""
    zv, yv = sets["validation"]
    zd, yd = sets["drawn"]
    fitted = {"platt/validation": lambda x: cal.apply_platt(x, ac),
              "platt/validation+drawn": fit("platt", np.r_[zv, zd], np.r_[yv, yd], "validation and drawn"),
              "beta/validation": fit("beta", zv, yv, "validation")}
    out = {}
    for name in EVALUATED:
        z, y = sets[name]
        maps = dict(fitted, **{"platt/in-sample": fit("platt", z, y, name), "beta/in-sample": fit("beta", z, y, name)})
        for method, f in maps.items():
            out.setdefault(method, {})[name] = cal.summary(y, f(z))
        q = fitted["platt/validation"](z)
        floor = cal.ece_floor(q)
        out.setdefault("floor", {})[name] = {"ece": floor[0], "ece_5_95": floor[1:], "pairs": int(len(y))}
        count, mean_p, freq = cal.reliability(y, q)
        out.setdefault("bins", {})[name] = {"count": count.tolist(), "sum_p": np.nan_to_num(count * mean_p).tolist(),
                                           "same": np.nan_to_num(count * freq).tolist()}
    return out


def pooled_bins(per_run, name):
    """Markdown lines: the reliability bins of platt/validation on set ``name``, all runs' pairs pooled, and
    each run's own difference in the bin.  The runs score the same pairs, so the SE is that of a binomial
    fraction over one run's share of the bin (pooled count / runs), not over the pooled count."""
    runs = list(per_run.values())
    total = {k: np.sum([r["bins"][name][k] for r in runs], axis=0) for k in ("count", "sum_p", "same")}
    lines = ["| bin of p | pairs (all runs) | mean p | fraction same | difference (SE) | each run's difference |",
             "|---|---:|---:|---:|---:|---|"]
    for k, n in enumerate(total["count"]):
        if n:
            p, f = total["sum_p"][k] / n, total["same"][k] / n
            each = ", ".join(f"{(r['bins'][name]['same'][k] - r['bins'][name]['sum_p'][k]) / r['bins'][name]['count'][k]:+.3f}"
                             if r["bins"][name]["count"][k] else "-" for r in runs)
            lines.append(f"| {k / cal.ECE_BINS:.3f}-{(k + 1) / cal.ECE_BINS:.3f} | {int(n)} | {p:.3f} | {f:.3f} | "
                         f"{f - p:+.3f} ({np.sqrt(p * (1 - p) / (n / len(runs))):.3f}) | {each} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders of calibrated LFW-a runs")
    ap.add_argument("--data-dir", default=default_data_dir())
    ap.add_argument("--extra", type=int, default=4000, help="pairs drawn from the validation people (default 4000)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=None, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    try:
        require_int("--extra", args.extra, 2)
    except USER_ERRORS as exc:
        sys.exit(f"calibration_study: {exc}")
    out_dir = os.path.dirname(os.path.abspath(args.out)) if args.out else None
    if args.out and (os.path.isdir(args.out) or not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK)):
        sys.exit(f"calibration_study: --out {args.out}: not a file that can be written in an existing folder")
    per_run = {}
    for run_dir in dict.fromkeys(os.path.normpath(r) for r in args.runs):       # each run once, in order
        try:
            sets, stored, seed, source = run_sets(run_dir, args.data_dir, args.extra, args.cache_dir)
            refit = cal.fit_platt(*sets["validation"])
            figures = study(sets, stored)
        except (*USER_ERRORS, ValueError) as exc:                   # ValueError: a set calibration cannot fit
            sys.exit(f"calibration_study: {run_dir}: {exc}")
        # the same pairs the run used?  Training scored them in batches of pairs, not of faces: other float32
        # sums, a relative change of ~1e-6 in a fitted parameter (seen on AVX2); another split moves it ~1e-2
        gap = float(np.max(np.abs(refit - stored) / np.abs(stored)))
        if not np.allclose(refit, stored, rtol=1e-4, atol=1e-9):
            sys.exit(f"{run_dir}: Platt refitted on its validation pairs gives {refit}, the run stored {stored}")
        per_run[run_dir] = dict(figures, seed=seed, pairs={k: int(len(v[1])) for k, v in sets.items()},
                                drawn=source, refit_relative_gap=gap)
        print(f"{run_dir}: done", flush=True)
    methods = [m for m in next(iter(per_run.values())) if m not in ("seed", "pairs", "bins", "drawn",
                                                                     "refit_relative_gap")]
    mean = {m: {s: {k: float(np.mean([r[m][s][k] for r in per_run.values()])) for k in ("ece",) +
                    (("brier",) if m != "floor" else ())} for s in EVALUATED} for m in methods}
    print("| calibration | " + " | ".join(f"{s} ECE | {s} Brier" for s in EVALUATED) + " |")
    print("|---|" + "---:|" * (2 * len(EVALUATED)))
    for m in methods:
        cells = [f"{mean[m][s]['ece']:.4f} | " + (f"{mean[m][s]['brier']:.4f}" if m != "floor" else "")
                 for s in EVALUATED]
        print(f"| {m} | " + " | ".join(cells) + " |")
    for name in EVALUATED:
        print(f"\nplatt/validation on {name}, all runs pooled:\n" + "\n".join(pooled_bins(per_run, name)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": "python3 docs/calibration_study.py " + " ".join(argv or sys.argv[1:]),
                       "runs": per_run, "mean": mean}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
