#!/usr/bin/env python3
"""Make the shipped model (minisiamese/pretrained/) from a trained, calibrated run.

    python3 docs/make_pretrained.py --checkpoint runs/seeds/bn512w-s0/model.npz [--float16]

Copies the run's model file (weights, calibration, threshold, config) and
prints its SHA-256, which minisiamese/pretrained/__init__.py records (it is
checked at every load).  With ``--float16`` it tries the weights in float16
(half the size): it evaluates the run's float32 model and the float16 copy on
pairsDevTest and on View 2 (pairs.txt), and keeps float16 only when no figure
moves by 0.002 or more (issue 36), printing the figures and the largest move.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from minisiamese import pretrained  # noqa: E402
from minisiamese.checkpoint import read_model_file  # noqa: E402
from minisiamese.data import default_data_dir  # noqa: E402
from minisiamese.evaluate import evaluate_model_file  # noqa: E402
from minisiamese.fileio import load_arrays, save_arrays  # noqa: E402

TOLERANCE = 0.002     # issue 36: float16 may move a metric by less than this


def figures(model, data_dir, cache_dir):
    """The figures the model card reports, on pairsDevTest and View 2."""
    test = evaluate_model_file(model, data_dir, "pairsDevTest.txt", cache_dir=cache_dir)
    view2 = evaluate_model_file(model, data_dir, "pairs.txt", cache_dir=cache_dir)
    clean = view2["leak_free"]
    return {"test_accuracy_at_half": test["accuracy"], "test_accuracy_at_threshold": test["tuned"]["accuracy"],
            "test_auc": test["auc"], "test_oneshot": test["oneshot"], "test_ece": test["ece"],
            "test_brier": test["brier"], "leak_free_accuracy_mean": clean["accuracy_mean"],
            "leak_free_accuracy_at_half": clean["accuracy_at_half"], "leak_free_auc_mean": clean["auc_mean"],
            "leak_free_ece": clean["ece"], "leak_free_brier": clean["brier"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="model.npz of a calibrated run")
    ap.add_argument("--data-dir", default=default_data_dir())
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "minisiamese-cache"))
    ap.add_argument("--float16", action="store_true", help="try float16 weights (evaluates both, minutes on a CPU)")
    args = ap.parse_args()
    _, _, extra = read_model_file(args.checkpoint)                  # validated, calibration included
    if "calibration" not in extra:
        sys.exit(f"{args.checkpoint}: not calibrated; train with train.calibrate (bn512w has it)")
    arrays = load_arrays(args.checkpoint)
    out = os.path.join(os.path.dirname(os.path.abspath(pretrained.__file__)), pretrained.FILE)
    report = {"written": "float32"}
    if args.float16:
        half = {k: (v.astype(np.float16) if k.startswith("param/") else v) for k, v in arrays.items()}
        with tempfile.TemporaryDirectory() as tmp:
            trial = os.path.join(tmp, "half.npz")
            save_arrays(trial, half)
            full_figures, half_figures = (figures(m, args.data_dir, args.cache_dir) for m in (args.checkpoint, trial))
        moves = {k: abs(half_figures[k] - full_figures[k]) for k in full_figures}
        if max(moves.values()) < TOLERANCE:
            arrays, report["written"] = half, "float16"
        report.update(float32=full_figures, float16=half_figures, largest_move=max(moves.values()))
    save_arrays(out, arrays)
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(json.dumps(dict(report, file=out, bytes=os.path.getsize(out), sha256=digest), indent=1))


if __name__ == "__main__":
    main()
