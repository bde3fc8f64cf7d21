"""What the CLI's train command does, as a function (the experiments runner uses it too)."""
import json
import os
import time

from .backend import device_name, get_backend
from .checkpoint import atomic_write
from .data import check_disjoint, load_pairset, pairset_from_pairs, read_pairs, read_pairs_folds
from .evaluate import evaluate_folds, evaluate_pairset, train_people
from .experiment import PAIR_SOURCES
from .plots import plot_history
from .runlock import run_lock
from .train import Trainer, stratified_subset


def train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume=False, log=print,
                       progress=True, experiment=None, test=True):
    """Train, then evaluate on the test pairs (and View 2, when pairs.txt is
    there), holding the run folder's lock throughout.  Every file the run will
    read -- both pairs files and every image they name -- is read and checked
    before the first step, so a damaged test file fails in seconds.

    ``test=False`` (choosing a configuration) stops after training: the results
    hold the validation figures only, and the test pairs are never read."""
    with run_lock(out_dir):
        return _train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume, log, progress,
                                   experiment, test)


def _train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume, log, progress, experiment,
                        test):
    trainer = Trainer(config, out_dir, data_dir, device, seed, cache_dir, log=log, progress=progress)
    trainer.load_data()
    if not test:
        history = trainer.fit(resume=resume)
        res = _run_facts(config, trainer, history, device, seed, experiment)
        res["wall_seconds"] = res["train_seconds"]
        _write_results(out_dir, res)
        v = res["val"]
        log(f"validation ({v['pairs']} pairs, best weights): loss {v['loss']:.4f}, accuracy {v['accuracy']:.3f}, "
            f"AUC {v['auc']:.3f}; the test pairs were not read")
        return res
    m = config.model
    train_file, test_file = (os.path.join(data_dir, f) for f in (config.train.train_pairs, config.train.test_pairs))
    check_disjoint(train_file, read_pairs(train_file), test_file, read_pairs(test_file))
    testset = load_pairset(data_dir, config.train.test_pairs, cache_dir, m.input_size, m.crop)
    if config.train.max_pairs:
        testset = testset.subset(stratified_subset(testset.labels, config.train.max_pairs, seed))
    log(f"test data: {len(testset)} pairs ({len(testset.images)} images), checked")
    view2 = os.path.join(data_dir, "pairs.txt")
    if not os.path.isfile(view2) or config.train.max_pairs:
        view2 = None                                       # quick runs (--max-pairs) skip View 2
    else:
        folds = read_pairs_folds(view2)
        v2 = pairset_from_pairs(data_dir, [p for f in folds for p in f], view2, cache_dir, m.input_size, m.crop)
        log(f"View 2 data: {len(v2)} pairs ({len(v2.images)} images), checked")
    history = trainer.fit(resume=resume)
    t_eval = time.time()
    figures = os.path.join(out_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    if history:
        plot_history(history, os.path.join(figures, "history.png"))
    res, probs = evaluate_pairset(trainer.net, trainer.normalizer, testset, trainer.threshold,
                                  config.train.oneshot_way, seed, config.train.batch_size, figures_dir=figures)
    # every test pair's probability, in file order: paired comparisons of two runs (a bootstrap) need them
    res["test_probs"] = [round(float(v), 5) for v in probs]
    if view2:
        log("View 2 (pairs.txt, 10 folds): full, and leak-free (no person of the training pairs)")
        res["view2"] = evaluate_folds(trainer.net, trainer.normalizer, data_dir, view2, cache_dir,
                                      config.train.batch_size, train_people(data_dir, config.train.train_pairs))
    res.update(_run_facts(config, trainer, history, device, seed, experiment))
    # all epochs (also those of earlier, resumed invocations) plus this evaluation
    res["wall_seconds"] = res["train_seconds"] + time.time() - t_eval
    _write_results(out_dir, res)
    log(f"test ({res['pairs']} pairs): accuracy {res['accuracy']:.3f}, precision {res['precision']:.3f}, "
        f"recall {res['recall']:.3f}, AUC {res['auc']:.3f}, one-shot {res['oneshot']:.3f} "
        f"({res['oneshot_tasks']} {res['oneshot_way']}-way tasks)")
    if "view2" in res:
        full, clean = res["view2"], res["view2"]["leak_free"]
        log(f"View 2: leak-free accuracy {clean['accuracy_mean']:.3f} ± {clean['accuracy_std']:.3f}, AUC "
            f"{clean['auc_mean']:.3f} ({clean['pairs']} pairs); full (overlaps training) {full['accuracy_mean']:.3f} "
            f"± {full['accuracy_std']:.3f}")
    if res.get("warning"):
        log("WARNING: " + res["warning"])
    log(f"model: {trainer.model_path}; figures: {figures}")
    return res


def _run_facts(config, trainer, history, device, seed, experiment):
    """What every results.json says about the run itself."""
    return {"experiment": experiment, "protocol": PAIR_SOURCES[config.train.pairs],
            "device": device_name(get_backend(device)), "epochs_run": len(history),
            "best_epoch": trainer.best_epoch + 1, "val": trainer.val_result, "parameters": trainer.net.num_params(),
            "seed": seed, "conv_plan": trainer.conv_plan, "train_seconds": sum(h["seconds"] for h in history),
            "model": trainer.model_path, "config": config.to_dict()}


def _write_results(out_dir, res):
    # atomic: its presence is what marks the experiment finished
    atomic_write(os.path.join(out_dir, "results.json"), lambda f: f.write(json.dumps(res, indent=1).encode()))
