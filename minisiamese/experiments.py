"""Run the seed's experiments and write the results table."""
import json
import os
import platform
import time

from .experiment import EXPERIMENTS, SEED_BEST

RESULT_FILE = "results.json"


def run_experiment(name, config, out_root, data_dir, device, seed, cache_dir, log=print, force=False,
                   progress=True):
    """Train + evaluate one experiment in out_root/name; skip it when its
    results.json exists (unless ``force``).  Returns the results dict."""
    from .cli_support import train_and_evaluate
    out_dir = os.path.join(out_root, name)
    result_path = os.path.join(out_dir, RESULT_FILE)
    if os.path.exists(result_path) and not force:
        with open(result_path) as f:
            res = json.load(f)
        log(f"[{name}] finished before ({res.get('device')}, {res.get('wall_seconds', 0):.0f}s): skipped")
        return res
    log(f"[{name}] training in {out_dir}")
    return train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume=True, log=log,
                              progress=progress, experiment=name)


FIGURES = (("history.png", "training curves"), ("roc.png", "ROC"), ("pairs.png", "worst/best pairs"),
           ("oneshot.png", "one-shot tasks"))


def copy_figures(rows, out_root, dest_root):
    """Copy each finished experiment's figures next to the results table."""
    import shutil
    for name in rows:
        for fig, _ in FIGURES:
            src = os.path.join(out_root, name, "figures", fig)
            if os.path.exists(src):
                os.makedirs(os.path.join(dest_root, name), exist_ok=True)
                shutil.copyfile(src, os.path.join(dest_root, name, fig))


def collect(out_root):
    rows = {}
    for name in EXPERIMENTS:
        path = os.path.join(out_root, name, RESULT_FILE)
        if os.path.exists(path):
            with open(path) as f:
                rows[name] = json.load(f)
    return rows


def results_markdown(rows, command, figures_rel=None):
    lines = ["# Results on LFW-a (View 1)", "",
             "Trained on pairsDevTrain (80 % train / 20 % validation, stratified, seeded), evaluated on "
             "pairsDevTest: binary accuracy at threshold 0.5, one-shot accuracy over 500 10-way tasks "
             "(one per positive test pair), recall, precision and ROC AUC. Every row comes from a real run "
             "of `python cli.py experiments --only NAME` (seed 0); finished experiments are kept in "
             "`runs/NAME/results.json` and reused, so rows appear as runs finish, on any machine. Wall time "
             "is the sum of the epochs (training + validation) plus the evaluation.", "",
             f"Last written by: `{command}`", "",
             "| experiment | accuracy | one-shot | recall | precision | AUC | epochs (best) | parameters | "
             "wall time | device |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (title, cfg) in EXPERIMENTS.items():
        r = rows.get(name)
        if r is None:
            lines.append(f"| {title} | not run yet | | | | | | {cfg.model.num_params():,} | | |")
            continue
        lines.append(f"| {title} | {r['accuracy']:.3f} | {r['oneshot']:.3f} | {r['recall']:.3f} | "
                     f"{r['precision']:.3f} | {r['auc']:.3f} | {r['epochs_run']} ({r['best_epoch']}) | "
                     f"{r['parameters']:,} | {r['wall_seconds'] / 60:.0f} min | {r['device']} |")
    lines.append(f"| *seed report, best per column* | {SEED_BEST['accuracy']:.3f} | {SEED_BEST['oneshot']:.3f} | "
                 f"{SEED_BEST['recall']:.3f} | {SEED_BEST['precision']:.3f} | {SEED_BEST['auc']:.3f} | | "
                 f"38,951,745 | | |")
    lines.append("")
    for name, r in rows.items():
        if r.get("warning"):
            lines.append(f"- **{name}**: {r['warning']}")
        thr = r.get("tuned", {})
        if thr:
            lines.append(f"- {name}: with the threshold chosen on validation ({thr['threshold']:.3f}) accuracy is "
                         f"{thr['accuracy']:.3f}, precision {thr['precision']:.3f}, recall {thr['recall']:.3f}.")
    if figures_rel:
        lines += ["", "## Figures", ""]
        for name in rows:
            lines.append(f"### {EXPERIMENTS[name][0]}")
            lines.append("")
            for fig, what in FIGURES:
                lines.append(f"![{name}: {what}]({figures_rel}/{name}/{fig})")
            lines.append("")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    lines += ["", f"_Table written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine}._", ""]
    return "\n".join(lines)


def selected(names):
    if not names:
        return list(EXPERIMENTS)
    bad = [n for n in names if n not in EXPERIMENTS]
    if bad:
        from .config import ConfigError
        raise ConfigError(f"unknown experiment(s) {bad}; choose from {list(EXPERIMENTS)}")
    return names
