"""The results report, docs/results.md: collect finished runs (and their kept
copies in docs/results/), build the tables, copy and draw the figures."""
import json
import os
import platform
import shutil
import time

import numpy as np

from .calibration import ece_floor
from .errors import ConfigError, DataError
from .fileio import write_text
from .pipeline import (SEEDS, SELECTION, check_kept_writable, default_data_dir_of, kept_path, run_experiment,
                       seed_of_run, seed_run_name)
from .plots import pyplot, save_figure
from .runfiles import RESULT_FILE, kept_copy, read_results, write_kept
from .runconfig import ABLATION, BEST, EXPERIMENTS, OMNIGLOT, SEED_BEST, TITLES
from .stats import bootstrap_diff, mean_se, paired_t, sample_sd, t_critical


# the names that run once, in OUT/NAME (Omniglot's presets run over seeds only, in OUT/seeds/)
SINGLE_RUNS = [name for name in TITLES if name not in OMNIGLOT]
FIGURES = (("history.png", "training curves"), ("roc.png", "ROC"), ("pairs.png", "worst/best pairs"),
           ("oneshot.png", "one-shot tasks"))


def copy_figures(rows, out_root, dest_root):
    """Copy each finished experiment's figures next to the results table."""
    for name in rows:
        for fig, _ in FIGURES:
            src = os.path.join(out_root, name, "figures", fig)
            if os.path.exists(src):
                os.makedirs(os.path.join(dest_root, name), exist_ok=True)
                shutil.copyfile(src, os.path.join(dest_root, name, fig))


def _keep(run_dir, kept, seed=None):
    """:func:`~minisiamese.runfiles.kept_copy` of the run in ``run_dir``, written to ``kept`` when given
    (:func:`~minisiamese.runfiles.write_kept`) -- only once checked, so a damaged run folder never
    replaces a good kept copy."""
    res = kept_copy(run_dir, seed=seed)
    if kept:
        write_kept(kept, res)
    return res


def check_report_inputs(out_root, results_path, selected=(), force=False):
    """Read, without writing anything, every file :func:`write_report` will
    read: the run folders' results and histories, the kept copies and the
    notes.  ``experiments`` calls it before training, so a damaged file is
    named at once, not after hours of training.  The ``selected`` runs are
    skipped with ``force`` (they are to be trained again); otherwise their
    errors say that --force would."""
    kept = kept_path(results_path)
    seed_of = {SEEDS: seed_of_run}                                   # only seed runs' names say a seed
    run_dirs = [(os.path.join(out_root, name), False, None) for name in SINGLE_RUNS]
    for part in ("sel", SEEDS):                                      # other results skipped
        folder = os.path.join(out_root, part)
        if os.path.isdir(folder):
            run_dirs += [(os.path.join(folder, name), True, seed_of.get(part, lambda n: None)(name))
                         for name in sorted(os.listdir(folder))]
    kept_files = [(os.path.join(kept, part, fname), seed_of.get(part, lambda n: None)(fname[:-5]))
                  for part in ("", SELECTION, SEEDS) if os.path.isdir(os.path.join(kept, part))
                  for fname in sorted(os.listdir(os.path.join(kept, part))) if fname.endswith(".json")]
    # lexists: a named pipe or a folder where a results file belongs is named now, and never read
    reads = [(os.path.basename(d), lambda d=d, only=only, s=s: kept_copy(d, only, s), d) for d, only, s in run_dirs
             if os.path.lexists(os.path.join(d, RESULT_FILE))]
    reads += [(os.path.basename(f)[:-5], lambda f=f, s=s: read_results(f, seed=s), f) for f, s in kept_files]
    for name, read, path in reads:
        if name in selected and force:
            continue
        try:
            read()
        except DataError as exc:
            raise DataError(f"{exc} (or pass --force to train {name} again)" if name in selected else str(exc)) \
                from None
    for text in (os.path.join(kept, "discussion.md"), os.path.join(kept, "selection", "notes.md")):
        _read_optional(text)


def collect(out_root, kept_dir=None):
    """Every finished experiment's results.  The kept copies in ``kept_dir``
    (docs/results/NAME.json, in git) come first; a finished run in
    ``out_root`` replaces its kept copy, which is rewritten from it -- with its
    training history -- so the table survives a checkout without runs/."""
    rows = {}
    for name in SINGLE_RUNS:
        kept = os.path.join(kept_dir, f"{name}.json") if kept_dir else None
        path = os.path.join(out_root, name, RESULT_FILE)
        if os.path.lexists(path):
            rows[name] = _keep(os.path.join(out_root, name), kept)
        elif kept and os.path.lexists(kept):
            rows[name] = read_results(kept)
    return rows


def _collect_folder(runs_dir, kept_dir, wanted, seed_of=lambda name: None):
    """Keep every finished run RUNS_DIR/NAME whose results satisfy ``wanted``
    as ``kept_dir/NAME.json`` (with its history); return name -> results of
    everything kept there, in name order (``seed_of(NAME)``: the seed a name says)."""
    rows = {}
    if os.path.isdir(runs_dir):
        for name in sorted(os.listdir(runs_dir)):
            path = os.path.join(runs_dir, name, RESULT_FILE)
            if not os.path.lexists(path):
                continue
            res = read_results(path, runs_only=True, seed=seed_of(name))
            if res is not None and wanted(res):
                _keep(os.path.join(runs_dir, name), os.path.join(kept_dir, f"{name}.json"), seed_of(name))
    if os.path.isdir(kept_dir):
        for fname in sorted(os.listdir(kept_dir)):
            if fname.endswith(".json"):
                rows[fname[:-5]] = read_results(os.path.join(kept_dir, fname), seed=seed_of(fname[:-5]))
    return rows


def collect_selection(runs_dir, kept_dir):
    """The validation-only runs made to choose a preset (``train
    --validation-only --out RUNS/sel/NAME``): each finished one is kept, with
    its history, as ``kept_dir/NAME.json``; returns name -> results."""
    return _collect_folder(runs_dir, kept_dir, lambda res: "val" in res and "accuracy" not in res)


def collect_seeds(runs_dir, kept_dir):
    """The runs of presets over several seeds (``experiments --seeds``, in
    RUNS/seeds/NAME-sSEED): each finished, test-evaluated one is kept as
    ``kept_dir/NAME-sSEED.json``; returns preset -> {seed: results}, LFW-a's
    and Omniglot's presets alike (a result's ``dataset`` tells them apart)."""
    out = {}
    tested = lambda r: "accuracy" in r or "lake20" in r                 # noqa: E731  (LFW-a's or Omniglot's)
    for name, res in _collect_folder(runs_dir, kept_dir, tested, seed_of_run).items():
        if seed_of_run(name) is not None:
            out.setdefault(name.rpartition("-s")[0], {})[seed_of_run(name)] = res
    return {p: dict(sorted(runs.items())) for p, runs in sorted(out.items())}


def config_changes(base, config):
    """'part.key=value' for every setting of ``config`` (a dict) that differs from ``base``'s."""
    out = []
    for part, value in config.items():
        ref = base.get(part)
        if isinstance(value, dict):
            out += [f"{part}.{k}={json.dumps(v)}" for k, v in sorted(value.items()) if (ref or {}).get(k) != v]
        elif value != ref:
            out.append(f"{part}={json.dumps(value)}")
    return out


def selection_markdown(rows, notes=None, figure=None):
    """The runs that chose the best preset, on validation only (``notes``: text
    under the table; ``figure``: the path of their validation curves)."""
    lines = ["## Choosing the best preset (validation only)", "",
             "Each row is `python3 cli.py train --preset best --set ... --validation-only --out runs/sel/NAME` "
             "(seed 0) with the changes listed against the preset as it stands now; the test pairs were never "
             "read. Validation is the 440 listed pairsDevTrain pairs of the split above.", ""]
    if not rows:
        return lines + ["No selection run has finished yet.", ""] + ([notes.strip(), ""] if notes else [])
    lines += ["| run | changes from `best` | protocol | val loss | val accuracy | val AUC | epochs (best) | wall time "
              "| device |", "|---|---|---|---|---|---|---|---|---|"]
    base = BEST.to_dict()
    for name, r in rows.items():
        v = r["val"]
        changes = ", ".join(f"`{c}`" for c in config_changes(base, r["config"])) or "none"
        lines.append(f"| {name} | {changes} | {r['protocol']} | {v['loss']:.4f} | {v['accuracy']:.3f} | "
                     f"{v['auc']:.3f} | {r['epochs_run']} ({r['best_epoch']}) | {r['wall_seconds'] / 60:.0f} min | "
                     f"{r['device']} |")
    if figure and any(r.get("history") for r in rows.values()):
        lines += ["", "![validation loss, accuracy and AUC per epoch of each selection run and of the finished "
                  f"ablation rows]({figure})"]
    return lines + [""] + ([notes.strip(), ""] if notes else [])


def plan_text(r):
    """Which conv algorithm each layer used ("im2col" for runs from before the FFT path)."""
    plan = r.get("conv_plan")
    if not plan:
        return "im2col"
    fft = [p["layer"] for p in plan if p["algo"] == "fft"]
    return "fft: " + ", ".join(fft) if fft else "im2col"


def _pm(d, key):
    """View 2's mean ± standard error over the folds (sample SD / sqrt(folds)), from the per-fold figures."""
    values = [f[key] for f in d["folds"] if f[key] is not None]
    if not values:
        return "n/a"
    mean, se = mean_se(values)
    return f"{mean:.3f} ± {se:.3f}"


def view2_markdown(rows):
    """The View 2 table: leak-free subset first, the full file (overlapping training) beside it."""
    have = {n: r for n, r in rows.items() if "view2" in r}
    lines = ["## View 2 (pairs.txt, 10 folds)", "",
             "LFW's View 2 reports mean ± standard error over its 10 folds (the sample standard deviation over "
             "√10), each fold's threshold chosen on "
             "the other nine. View 2 shares people with pairsDevTrain, so a model trained on pairsDevTrain is "
             "partly tested on people it trained on: the headline columns use only the pairs that involve no "
             "pairsDevTrain person (2,490 of 6,000); the full file is beside them, marked as overlapping "
             "training. Peers on LFW-a report 0.65–0.71 accuracy for Koch-style networks.", ""]
    if not have:
        return lines + ["No finished experiment has View 2 figures yet (a run evaluates View 2 only when "
                        "pairs.txt is in its data and it trains on every pair).", ""]
    lines += ["| experiment | leak-free accuracy | leak-free AUC | leak-free pairs | full accuracy (overlaps "
              "training) | full AUC |", "|---|---|---|---|---|---|"]
    for name, (title, _) in EXPERIMENTS.items():
        r = have.get(name)
        if r is None:
            continue
        v, c = r["view2"], r["view2"]["leak_free"]
        lines.append(f"| {title} | {_pm(c, 'accuracy')} | {_pm(c, 'auc')} | {c['pairs']} | {_pm(v, 'accuracy')} | "
                     f"{_pm(v, 'auc')} |")
    missing = [EXPERIMENTS[n][0] for n in rows if n not in have]
    if missing:
        lines += ["", f"Not evaluated on View 2: {', '.join(missing)} (run without pairs.txt in its data, or "
                      "with train.max_pairs)."]
    return lines + [""]


def ablation_markdown(rows):
    """The best preset with each ingredient removed in turn: validation (what
    chose it) beside test and View 2's leak-free subset."""
    lines = ["## The best preset and its ablation", "",
             "`python3 cli.py train --preset best` (config: `docs/configs/best.json`). Each row marked − removes "
             "one ingredient from it; a row marked + adds one that was tried as a finalist and not kept. The "
             "ingredients were chosen on validation (440 listed pairsDevTrain pairs, the "
             "same split as above; with pairs from identities every person in a validation pair is left out of "
             "training); pairsDevTest was evaluated once per row. *Protocol*: pairs drawn from the identities of "
             "the training people are LFW's **unrestricted** protocol; the listed pairs alone are "
             "**image-restricted**, like every row of the seed's table.", ""]
    if not rows:
        return lines + ["No row has finished yet.", ""]
    lines += ["| row | protocol | val accuracy | val AUC | test accuracy | test AUC | one-shot | View 2 leak-free "
              "accuracy | epochs (best) | wall time | device |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (title, _) in ABLATION.items():
        r = rows.get(name)
        if r is None:
            lines.append(f"| {title} | not run yet | | | | | | | | | |")
            continue
        v = r.get("val", {})
        val = f"{v['accuracy']:.3f} | {v['auc']:.3f}" if v else "| "
        test = f"{r['accuracy']:.3f} | {r['auc']:.3f} | {_oneshot(r)}" if "accuracy" in r else "not evaluated | |"
        v2 = _pm(r["view2"]["leak_free"], "accuracy") if "view2" in r else ""
        lines.append(f"| {title} | {r.get('protocol', 'image-restricted')} | {val} | {test} | {v2} | "
                     f"{r['epochs_run']} ({r['best_epoch']}) | {r['wall_seconds'] / 60:.0f} min | {r['device']} |")
    if any("accuracy" in r and _old_draw(r) for r in rows.values()):
        lines += ["", OLD_DRAW_NOTE]
    return lines + [""]


OLD_DRAW_NOTE = ("† one-shot from the task draw used before 2026-12-03, in which a task's 9 distractors could "
                 "repeat a person (12 of pairsDevTest's 500 tasks did); the weights of these runs were not "
                 "kept, so they were not re-evaluated. Every run of the seeds table draws 9 distinct people.")


def _old_draw(r):
    """True for results written before one-shot tasks drew 9 distinct distractor
    people (commit c3aade7): the same change began storing ``test_probs``, so a
    result without them came from the old draw."""
    return "test_probs" not in r


def _oneshot(r):
    """A row's one-shot figure, marked † when it comes from the old task draw."""
    return f"{r['oneshot']:.3f}" + ("†" if _old_draw(r) else "")


def _sd(values):
    """mean ± sample SD over seeds (just the value for one seed)."""
    v = [float(x) for x in values]
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{sum(v) / len(v):.3f} ± {sample_sd(v):.3f}"


def _fold_means(runs, part="accuracy"):
    """Leak-free View 2 per-fold ``part``, averaged over a preset's seeds (None when a run lacks View 2,
    a fold lacks the figure, or the runs have different folds)."""
    folds = [[f[part] for f in r["view2"]["leak_free"]["folds"]] for r in runs.values() if "view2" in r]
    if len(folds) != len(runs) or len({len(f) for f in folds}) != 1 or any(None in f for f in folds):
        return None
    return [sum(col) / len(col) for col in zip(*folds)]


def _pair_correct(runs):
    """Per test pair, the fraction of a preset's seeds that classify it right at
    each run's own threshold, the one chosen on validation (a model that flip-
    averages its codes is calibrated differently from one that does not, so
    0.5 would not be fair to it).  None when a run has no test_probs.  Labels
    are ``test_labels``; runs that predate them used the official View 1 file,
    which lists its same-person pairs first, then as many different-person ones."""
    if not all("test_probs" in r for r in runs.values()):
        return None
    correct = []
    for r in runs.values():
        p = np.asarray(r["test_probs"])
        labels = np.asarray(r.get("test_labels") or [1] * (len(p) // 2) + [0] * (len(p) - len(p) // 2))
        correct.append((p >= r.get("tuned", {}).get("threshold", 0.5)) == (labels == 1))
    if len({len(c) for c in correct}) != 1:
        return None
    return list(np.mean(correct, axis=0))


def comparison_lines(seed_rows, references=("baseline", "best"), pairs=(("bn512w", "bn512"),)):
    """Each preset against each reference preset, then each of ``pairs``
    (a preset against the one it changes one setting of: bn512w is bn512 with
    the 3-epoch stop rule): the paired t over the ten leak-free View 2 folds
    (fold scores averaged over each preset's seeds) and a paired bootstrap
    95 % interval for the difference in test accuracy."""
    lines = []
    todo = [(name, ref) for ref in references if ref in seed_rows for name in seed_rows if name != ref]
    todo += [(name, ref) for name, ref in pairs if name in seed_rows and ref in seed_rows]
    for name, ref in todo:
        runs = seed_rows[name]
        text = f"- **{name}** against **{ref}**"
        a, b = _fold_means(runs), _fold_means(seed_rows[ref])
        if a and b and len(a) == len(b):
            t = paired_t(a, b)
            verdict = "significant" if abs(t["t"]) >= t_critical(t["df"]) else "not significant"
            text += (f": leak-free View 2 accuracy {t['diff']:+.3f} (paired t = {t['t']:.2f}, {t['df']} df, "
                     f"{verdict} at 5 %; better in {t['better']} of {t['n']} folds)")
        else:
            text += ": no paired fold test (a run without View 2)"
        ca, cb = _pair_correct(runs), _pair_correct(seed_rows[ref])
        if ca and cb and len(ca) == len(cb):
            d, low, high = bootstrap_diff(ca, cb)
            text += (f"; test accuracy at each run's validation threshold {d:+.3f}, 95 % bootstrap interval "
                     f"[{low:+.3f}, {high:+.3f}]")
        else:
            text += "; no test-accuracy interval (a run without per-pair test probabilities)"
        lines.append(text + f" (seeds {sorted(runs)} vs {sorted(seed_rows[ref])}).")
    return lines


def plot_seed_curves(seed_rows, path, keys=("val_loss", "val_accuracy", "val_auc")):
    """The validation figures ``keys`` per epoch of every seed run: one colour
    per preset, one line style per seed (the curves behind a seeds table)."""
    rows, styles = {}, {}
    for i, (preset, runs) in enumerate(seed_rows.items()):
        for j, (seed, res) in enumerate(runs.items()):
            name = f"{preset} seed {seed}"
            rows[name], styles[name] = res, (f"C{i % 10}", ("-", "--", ":", "-.")[j % 4])
    return plot_val_curves(rows, path, keys=keys, styles=styles)


def _cal(rs, get):
    """mean ± SD over seeds of ``get(run)``, 'n/a' when a run lacks it."""
    values = [get(r) for r in rs]
    return "n/a" if any(v is None for v in values) else _sd(values)


def calibration_markdown(seed_rows):
    """The presets whose seed runs report calibration figures: at 0.5 and at the
    validation threshold, ECE and Brier, on the test pairs and View 2's leak-free
    pairs; for calibrated runs their raw sigmoid beside them (raw → calibrated)."""
    have = {n: list(runs.values()) for n, runs in seed_rows.items() if all("ece" in r for r in runs.values())}
    if not have:
        return []
    lines = ["### Calibration", "",
             "A calibrated preset (`train.calibrate`: Platt's two parameters fitted on its validation pairs, "
             "`docs/walkthrough.md` 12c) decides at 0.5; *raw → calibrated* gives its raw sigmoid first. ECE: "
             "15 equal-width bins of p(same). View 2 figures pool the leak-free pairs of all ten folds at one "
             "fixed rule (no per-fold threshold). Mean ± SD over seeds.", "",
             "| preset | seeds | test accuracy at 0.5 | at the validation threshold | test ECE | test Brier | "
             "leak-free accuracy at 0.5 | at the validation threshold | leak-free ECE | leak-free Brier |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def pair(rs, get_after, get_before):
        after = _cal(rs, get_after)
        if not all("before_calibration" in r for r in rs):
            return after
        return f"{_cal(rs, get_before)} → {after}"

    def v2(r, key, before=False):
        part = r.get("view2", {}).get("leak_free", {})
        part = part.get("before_calibration", {}) if before else part
        return part.get(key)
    for name, rs in have.items():
        cells = [pair(rs, lambda r: r["accuracy"], lambda r: r["before_calibration"]["accuracy_at_half"]),
                 _cal(rs, lambda r: r["tuned"]["accuracy"]),
                 pair(rs, lambda r: r["ece"], lambda r: r["before_calibration"]["ece"]),
                 pair(rs, lambda r: r["brier"], lambda r: r["before_calibration"]["brier"]),
                 pair(rs, lambda r: v2(r, "accuracy_at_half"), lambda r: v2(r, "accuracy_at_half", True)),
                 _cal(rs, lambda r: v2(r, "accuracy_at_threshold")),
                 pair(rs, lambda r: v2(r, "ece"), lambda r: v2(r, "ece", True)),
                 pair(rs, lambda r: v2(r, "brier"), lambda r: v2(r, "brier", True))]
        lines.append(f"| {name} | {', '.join(str(s) for s in seed_rows[name])} | " + " | ".join(cells) + " |")
    lines += [""] + [line for name, rs in have.items() for line in _ece_floor_lines(name, seed_rows[name])]
    if "bn512w" in have:
        lines += ["- Whether another fit lowers bn512w's ECE (more calibration data, a three-parameter map, maps "
                  "fitted on the evaluated pairs themselves): `docs/results/calibration/notes.md`."]
    return lines + [""]


def _ece_floor_lines(name, runs):
    """How low ECE can go on these samples: the ECE a perfectly calibrated model giving each seed's test
    probabilities would show (:func:`~minisiamese.calibration.ece_floor`, 1,000 label draws), on the test pairs
    and at the count of View 2's leak-free pairs (the test probabilities resampled: View 2's own are not kept)."""
    have = {s: r for s, r in runs.items() if r.get("test_probs") and "before_calibration" in r}
    if not have:
        return []
    cells = []
    for seed, r in have.items():
        floors = [ece_floor(r["test_probs"])]
        n = r.get("view2", {}).get("leak_free", {}).get("pairs")
        if n:
            floors.append(ece_floor(r["test_probs"], n=n))
        cells.append(f"seed {seed}: " + "; ".join(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in floors))
    return [f"- {name}: the ECE a perfectly calibrated model with the same p(same) would show on these samples, "
            f"mean [5th, 95th percentile] over 1,000 draws of the labels, on the test pairs; and on View 2's "
            f"leak-free count of pairs: {' | '.join(cells)}. An ECE inside that range is as calibrated as the "
            f"sample can tell."]


def seeds_markdown(seed_rows, figure=None):
    """Presets trained with several seeds: mean ± SD over seeds, then the paired comparisons
    (``figure``: the path of their validation curves)."""
    lines = ["## Over seeds", "",
             "Each preset trained with several seeds (`python3 cli.py experiments --only NAME --seeds 0 1 2`; "
             "a seed changes the initialisation, the train/validation split, the shuffling, the pairs drawn "
             "and the one-shot tasks). Figures are mean ± sample standard deviation over the seeds; one-shot is "
             "500 10-way tasks with 9 distinct distractor people; View 2 leak-free is the mean over its 10 folds, and "
             "in brackets the standard error over the 10 folds of the seed-averaged fold scores (LFW's convention). "
             "Kept in `docs/results/seeds/NAME-sSEED.json`. *device*: where the runs trained, cpu (NumPy) or gpu "
             "(CuPy); both compute in float32, so a GPU run follows the same protocol but not the same "
             "trajectory as the CPU run of its seed (a -gpu row is its own set of draws).", ""]
    if not seed_rows:
        return lines + ["No preset has finished a seed run yet.", ""]
    lines += ["| preset | protocol | seeds | device | test accuracy at 0.5 | at the validation threshold | test AUC | "
              "one-shot | View 2 leak-free accuracy | View 2 leak-free AUC | epochs (best) | wall time |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in seed_rows.items():
        rs = list(runs.values())
        v2 = [r["view2"]["leak_free"] for r in rs if "view2" in r]
        v2acc, v2auc = (_sd([v[key] for v in v2]) if len(v2) == len(rs) and all(v[key] is not None for v in v2)
                        else "n/a" for key in ("accuracy_mean", "auc_mean"))
        folds = _fold_means(runs)
        if folds and len(folds) > 1 and v2acc != "n/a":        # LFW's convention: SE over the folds
            v2acc += f" (SE {mean_se(folds)[1]:.3f})"
        epochs = ", ".join(f"{r['epochs_run']} ({r['best_epoch']})" for r in rs)
        minutes = ", ".join(f"{r['wall_seconds'] / 60:.0f}" for r in rs)
        devices = ", ".join(sorted({r.get("device", "cpu") for r in rs}))
        lines.append(f"| {name} | {rs[0].get('protocol', 'image-restricted')} | {', '.join(map(str, runs))} | "
                     f"{devices} | {_sd(r['accuracy'] for r in rs)} | {_sd(r['tuned']['accuracy'] for r in rs)} | "
                     f"{_sd(r['auc'] for r in rs)} | "
                     f"{_sd(r['oneshot'] for r in rs)} | {v2acc} | {v2auc} | {epochs} | {minutes} min |")
    comparisons = comparison_lines(seed_rows)
    lines += ([""] + comparisons) if comparisons else []
    calibrated = calibration_markdown(seed_rows)
    lines += ([""] + calibrated) if calibrated else []
    if figure and any(r.get("history") for runs in seed_rows.values() for r in runs.values()):
        lines += ["", f"![validation loss, accuracy and AUC per epoch of every seed run]({figure})"]
    return lines + [""]


# Koch's experiment as others ran it (issue 35), each with how its protocol differs from this one's
OMNIGLOT_REFERENCES = (
    ("Koch et al. 2015, Siamese net", "105x105, 12 of the 20 drawers, 150k pairs x 9 affine versions, its own 400 "
     "within-alphabet 20-way trials", "0.920"),
    ("Lake et al. 2015, people", "Lake's 20 runs", "0.955"),
    ("Lake et al. 2015, HBPL", "Lake's 20 runs (0.952 in Koch's table)", "0.967"),
    ("Vinyals et al. 2016, Siamese baseline", "28x28, random 20-way trials over the test characters", "0.881"),
    ("fangpin/siamese-pytorch", "random cross-alphabet 20-way trials (easier)", "0.895"),
    ("tensorfreitas/Siamese-Networks-for-One-Shot-Learning", "SGD / Adam", "0.70 / 0.80-0.82"),
    ("sharwinbobde's reproduction", "", "0.755"))


def _se_cell(part, key="accuracy", se="se"):
    """'0.800 (SE 0.024)': one run's figure and its standard error."""
    return f"{part[key]:.3f} (SE {part[se]:.3f})"


def omniglot_markdown(seed_rows, figure=None, runs_figure=None, notes=None):
    """Koch's experiment: each Omniglot preset's seed runs (mean ± SD over seeds, then one row per seed with
    each figure's standard error), beside the published figures and how their protocols differ
    (``figure``: the validation curves; ``runs_figure``: a few of Lake's runs as one seed answered them)."""
    lines = ["## Omniglot: Koch's experiment (20-way one-shot)", "",
             "Trained on the 30 background alphabets, all 20 drawers (Lake's standard protocol; Koch trained on "
             "12), strokes 1 on 0; validated on 320 within-alphabet 20-way tasks of the 10 evaluation alphabets "
             "that Lake's runs do not use (early stopping and the kept weights follow them); tested once on "
             "*Lake's 20 runs* (400 trials, each test item given to the training image of highest score; SE over "
             "the 20 runs), on *10,000 within-alphabet* 20-way trials over the 10 run alphabets (binomial SE) "
             "and on *10,000 verification pairs* of those alphabets (accuracy at 0.5 and AUC). Every figure is "
             "labelled with the input size the net saw. Runs: `python3 cli.py experiments --only NAME --seeds "
             "0 1 2`, kept in `docs/results/seeds/NAME-sSEED.json`.", ""]
    if not seed_rows:
        return lines + ["No Omniglot preset has finished a seed run yet.", ""]
    lines += ["| preset | input | seeds | device | Lake's 20 runs | within-alphabet 20-way | verification accuracy | "
              "verification AUC | validation 20-way | epochs (best) | training time |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in seed_rows.items():
        rs = list(runs.values())
        size = ", ".join(sorted({f"{r['config']['model']['input_size']}x{r['config']['model']['input_size']}"
                                 for r in rs}))
        devices = ", ".join(sorted({r["device"] for r in rs}))
        cells = [_sd(r["lake20"]["accuracy"] for r in rs), _sd(r["within20"]["accuracy"] for r in rs),
                 _sd(r["verification"]["accuracy"] for r in rs), _sd(r["verification"]["auc"] for r in rs),
                 _sd(r["val"]["oneshot"] for r in rs)]
        epochs = ", ".join(f"{r['epochs_run']} ({r['best_epoch']})" for r in rs)
        minutes = ", ".join(f"{r['train_seconds'] / 60:.0f}" for r in rs)
        lines.append(f"| **{name}** (mean ± SD) | {size} | {', '.join(map(str, runs))} | {devices} | "
                     + " | ".join(cells) + f" | {epochs} | {minutes} min |")
        for seed, r in runs.items():
            v = r["verification"]
            lines.append(f"| {name} seed {seed} | | | | {_se_cell(r['lake20'])} | {_se_cell(r['within20'])} | "
                         f"{_se_cell(v, 'accuracy', 'accuracy_se')} | {_se_cell(v, 'auc', 'auc_se')} | "
                         f"{r['val']['oneshot']:.3f} | | |")
    lines += ["", "Published figures, and how their protocols differ from the one above:", "",
              "| who | protocol | 20-way accuracy |", "|---|---|---|"]
    lines += [f"| {who} | {how} | {acc} |" for who, how, acc in OMNIGLOT_REFERENCES]
    if figure and any(r.get("history") for runs in seed_rows.values() for r in runs.values()):
        lines += ["", f"![validation 20-way accuracy and AUC per epoch of every Omniglot seed run]({figure})"]
    if runs_figure:
        lines += ["", f"![a few of Lake's runs: each test item, the image chosen and the correct one]({runs_figure})"]
    if notes:
        lines += ["", notes.strip()]
    return lines + [""]


def plot_val_curves(rows, path, keys=("val_accuracy",), styles=None):
    """Every row's validation figures (``keys`` of its history, one panel each)
    per epoch, the rows side by side; ``styles`` maps a row to its (colour, line
    style), by default one colour per row."""
    have = {n: r["history"] for n, r in rows.items() if r.get("history")}
    if not have:
        return False
    styles = styles or {name: (f"C{i % 10}", "-") for i, name in enumerate(have)}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(7 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, history in have.items():                       # the same style for a row in every panel
            points = [(h["epoch"], h[key]) for h in history if key in h]
            if points:
                color, line = styles[name]
                ax.plot(*zip(*points), "o", ls=line, ms=3, color=color, label=TITLES.get(name, name))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("val_", "validation ").replace("auc", "AUC"))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return True


def results_markdown(rows, command, figures_rel=None, discussion=None, selection=None, selection_notes=None,
                     seeds=None, omniglot=None, omniglot_notes=None, omniglot_runs_figure=None):
    lines = ["# Results on LFW-a (View 1)", "",
             "Trained on pairsDevTrain (80 % train / 20 % validation, stratified, seeded), evaluated on "
             "pairsDevTest: binary accuracy at threshold 0.5, one-shot accuracy over 500 10-way tasks "
             "(one per positive test pair), recall, precision and ROC AUC. Every row comes from a real run "
             "of `python3 cli.py experiments --only NAME` (seed 0). A finished experiment's results (no weights) "
             "are kept in `docs/results/NAME.json`, which this table is built from, so rows survive a fresh "
             "checkout without `runs/` and appear as runs finish, on any machine. Wall time is the sum of the "
             "epochs (training + validation) plus the evaluation. *conv plan* says which layers ran the FFT "
             "convolution (the function is the same; the rounding and the speed differ).", "",
             f"Last written by: `{command}`", "",
             "| experiment | accuracy | one-shot | recall | precision | AUC | epochs (best) | parameters | "
             "wall time | device | conv plan |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (title, cfg) in EXPERIMENTS.items():
        r = rows.get(name)
        if r is None:
            lines.append(f"| {title} | not run yet | | | | | | {cfg.model.num_params():,} | | | |")
            continue
        lines.append(f"| {title} | {r['accuracy']:.3f} | {_oneshot(r)} | {r['recall']:.3f} | "
                     f"{r['precision']:.3f} | {r['auc']:.3f} | {r['epochs_run']} ({r['best_epoch']}) | "
                     f"{r['parameters']:,} | {r['wall_seconds'] / 60:.0f} min | {r['device']} | {plan_text(r)} |")
    lines.append(f"| *seed report, best per column* | {SEED_BEST['accuracy']:.3f} | {SEED_BEST['oneshot']:.3f} | "
                 f"{SEED_BEST['recall']:.3f} | {SEED_BEST['precision']:.3f} | {SEED_BEST['auc']:.3f} | | "
                 f"38,951,745 | | | |")
    if any(_old_draw(r) for n, r in rows.items() if n in EXPERIMENTS):
        lines += ["", OLD_DRAW_NOTE]
    lines.append("")
    for name, r in rows.items():
        if r.get("warning"):
            lines.append(f"- **{name}**: {r['warning']}")
        thr = r.get("tuned", {})
        if thr:
            lines.append(f"- {name}: with the threshold chosen on validation ({thr['threshold']:.3f}) accuracy is "
                         f"{thr['accuracy']:.3f}, precision {thr['precision']:.3f}, recall {thr['recall']:.3f}.")
    lines += [""] + view2_markdown({n: r for n, r in rows.items() if n in EXPERIMENTS})
    lines += ablation_markdown({n: r for n, r in rows.items() if n in ABLATION})
    lines += seeds_markdown(seeds or {}, f"{figures_rel}/seeds.png" if figures_rel else None)
    lines += selection_markdown(selection or {}, selection_notes,
                                f"{figures_rel}/selection.png" if figures_rel else None)
    lines += omniglot_markdown(omniglot or {}, f"{figures_rel}/omniglot.png" if figures_rel else None,
                               omniglot_runs_figure, omniglot_notes)
    if discussion:
        lines += ["## Discussion", "", discussion.strip(), ""]
    if figures_rel:
        lines += ["## Figures", ""]
        if any(r.get("history") for r in rows.values()):
            lines += [f"![validation accuracy per epoch, every experiment with a kept history]"
                      f"({figures_rel}/val_accuracy.png)", ""]
        for name in rows:
            lines.append(f"### {TITLES[name]}")
            lines.append("")
            for fig, what in FIGURES:
                lines.append(f"![{name}: {what}]({figures_rel}/{name}/{fig})")
            lines.append("")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    lines += ["", f"_Table written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine}._", ""]
    return "\n".join(lines)


def selected(names):
    """The experiments to run: the named ones, else the seed's six."""
    if not names:
        return list(EXPERIMENTS)
    bad = [n for n in names if n not in TITLES]
    if bad:
        raise ConfigError(f"unknown experiment(s) {bad}; choose from {list(TITLES)}")
    return names


def _read_optional(path):
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, ValueError) as exc:                                # ValueError: not UTF-8
        raise DataError(f"{path}: cannot read it as UTF-8 text ({str(exc)[:200]})") from None


def write_report(out_root, results_path, command):
    """Collect every finished run under ``out_root`` (and the kept copies in
    docs/results/ beside ``results_path``), copy and draw the figures, and
    write the table to ``results_path``.  Returns the rows."""
    docs = os.path.dirname(results_path) or "."
    kept = kept_path(results_path)                       # docs/results/NAME.json, kept in git
    rows = collect(out_root, kept)
    selection = collect_selection(os.path.join(out_root, "sel"), os.path.join(kept, SELECTION))
    seeds = collect_seeds(os.path.join(out_root, SEEDS), os.path.join(kept, SEEDS))
    omniglot = {p: runs for p, runs in seeds.items() if p in OMNIGLOT}
    seeds = {p: runs for p, runs in seeds.items() if p not in OMNIGLOT}
    figures = os.path.join(docs, "figures", "results")
    copy_figures(rows, out_root, figures)
    runs_figure = _copy_lake_runs(omniglot, os.path.join(out_root, SEEDS), figures)
    os.makedirs(figures, exist_ok=True)
    plot_val_curves({n: r for n, r in rows.items() if n in EXPERIMENTS}, os.path.join(figures, "val_accuracy.png"))
    ablation_rows = {n: r for n, r in rows.items() if n in ABLATION}
    plot_val_curves({**selection, **ablation_rows}, os.path.join(figures, "selection.png"),
                    keys=("val_loss", "val_accuracy", "val_auc"))
    plot_seed_curves(seeds, os.path.join(figures, "seeds.png"))
    plot_seed_curves(omniglot, os.path.join(figures, "omniglot.png"), keys=("val_oneshot", "val_auc"))
    write_text(results_path, results_markdown(
        rows, command, figures_rel="figures/results", discussion=_read_optional(os.path.join(kept, "discussion.md")),
        selection=selection, selection_notes=_read_optional(os.path.join(kept, "selection", "notes.md")),
        seeds=seeds, omniglot=omniglot, omniglot_notes=_read_optional(os.path.join(kept, "omniglot.md")),
        omniglot_runs_figure=runs_figure and f"figures/results/{runs_figure}"))
    return rows


def _copy_lake_runs(omniglot, seeds_dir, figures):
    """Copy the Lake's-runs figure of each Omniglot preset's lowest seed whose run folder is here to
    FIGURES/NAME/lake_runs.png; the path of the first one that exists there, relative to ``figures``."""
    shown_path = None
    for preset, runs in omniglot.items():
        for seed in runs:
            src = os.path.join(seeds_dir, seed_run_name(preset, seed), "figures", "lake_runs.png")
            if os.path.isfile(src):
                os.makedirs(os.path.join(figures, preset), exist_ok=True)
                shutil.copyfile(src, os.path.join(figures, preset, "lake_runs.png"))
                break
        if shown_path is None and os.path.isfile(os.path.join(figures, preset, "lake_runs.png")):
            shown_path = f"{preset}/lake_runs.png"
    return shown_path


def run_experiments(names, seeds, out_root, results_path, make_config, data_dir, device, seed, cache_dir,
                    log=print, force=False, progress=True, command="python3 cli.py experiments"):
    """What ``experiments`` does: every file the report reads, and every folder
    it writes, checked before any training; then each named experiment (the
    seed's six by default) trained once -- with ``seed`` in OUT/NAME, kept as
    docs/results/NAME.json -- or, with ``seeds``, once per seed in
    OUT/seeds/NAME-sSEED, kept as docs/results/seeds/NAME-sSEED.json (finished
    ones skipped, interrupted ones resumed); then the table written to
    ``results_path``.  ``make_config(name)``: the experiment's config.  Returns
    the table's rows.  ``data_dir``: the data folder, None for each dataset's
    default (the only way to run LFW-a's and Omniglot's presets together); an
    Omniglot preset runs with ``seeds`` only."""
    only, names = names, selected(names)
    if not seeds and any(n in OMNIGLOT for n in names):
        raise ConfigError(f"{', '.join(n for n in names if n in OMNIGLOT)}: an Omniglot preset runs over seeds, "
                          f"its table is the mean over them; add --seeds 0 1 2")
    runs = [(name, s) for name in names for s in seeds] if seeds else [(name, None) for name in names]
    configs = {name: make_config(name) for name in names}
    datasets = sorted({cfg.dataset for cfg in configs.values()})
    if data_dir is not None and len(datasets) > 1:
        raise ConfigError(f"--data-dir {data_dir!r} is one folder, but the experiments train on {' and '.join(datasets)}; "
                          f"run each dataset's experiments on their own, or leave --data-dir out")
    data_dirs = {name: data_dir or default_data_dir_of(configs[name].dataset) for name in names}
    check_report_inputs(out_root, results_path, {seed_run_name(n, s) if seeds else n for n, s in runs}, force)
    check_kept_writable(results_path, bool(seeds))
    for name, s in runs:
        run_experiment(seed_run_name(name, s) if seeds else name, configs[name],
                       os.path.join(out_root, SEEDS) if seeds else out_root, data_dirs[name], device,
                       seed if s is None else s,
                       cache_dir, log=log, force=force, progress=progress, kept=kept_path(results_path, name, s))
    command += (f" --only {' '.join(only)}" if only else "") + \
        (f" --seeds {' '.join(map(str, seeds))}" if seeds else "")
    return write_report(out_root, results_path, command)
