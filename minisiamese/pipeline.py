"""The run pipeline: one experiment from data to results.json -- check every
file, train, evaluate on the test pairs and View 2, write the results and
figures.  The CLI's ``train`` is :func:`train_and_evaluate`; its ``experiments``
runs :func:`run_experiment` for each named preset."""
import os
import time

from . import omniglot, oneshot
from .backend import device_name, get_backend
from .calibration import map_threshold
from .data import (check_data_dir, check_disjoint, default_data_dir, file_digest, load_pairset, pairset_from_pairs,
                   read_pairs, read_pairs_folds)
from .errors import CheckpointError, ConfigError, DataError
from .evaluate import (evaluate_folds, evaluate_omniglot, evaluate_pairset, load_trained, oneshot_task_accuracy,
                       omniglot_summary, train_people)
from .plots import plot_history
from .runconfig import PAIR_SOURCES, ExperimentConfig
from .runlock import run_lock
from .runfiles import (CHECKPOINT_FILE, RESULT_FILE, check_folder, read_checkpoint, read_results, refuse_run_folder,
                       refuse_used_folder, remove_run, write_results)
from .train import Trainer, split_training_pairs, stratified_subset

SEEDS, SELECTION = "seeds", "selection"       # folders of seed runs and of selection runs, kept results alike


def default_data_dir_of(dataset):
    """The data folder of ``dataset`` ("lfw-a" or "omniglot") when none is given."""
    return omniglot.DEFAULT_DATA_DIR if dataset == "omniglot" else default_data_dir()


def train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume=False, log=print,
                       progress=True, experiment=None, test=True, overwrite=False):
    """Train, then evaluate on the test pairs (and View 2, when pairs.txt is
    there), holding the run folder's lock throughout.  Every file the run will
    read -- both pairs files and every image they name -- is read and checked
    before the first step, so a damaged test file fails in seconds.

    ``test=False`` (choosing a configuration) stops after training: the results
    hold the validation figures only, and the test pairs are never read.

    Without ``resume``, a folder that holds a run (finished, or stopped with a
    checkpoint) is refused after those checks unless ``overwrite``, which
    starts over in it."""
    check_folder(out_dir, "run folder")
    if cache_dir:
        check_folder(cache_dir, "cache folder")
    with run_lock(out_dir):
        return _train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume, log, progress,
                                   experiment, test, overwrite)


def _fit(trainer, resume, overwrite, log):
    """Train, once the data is checked; a folder that holds a run is refused, or
    with ``overwrite`` its files are removed first."""
    if not overwrite and not (resume and os.path.exists(trainer.checkpoint_path)):
        refuse_used_folder(trainer.out_dir, resume)    # --resume with nothing to resume must not overwrite either
    if overwrite:
        old = remove_run(trainer.out_dir)
        if old:
            log(f"--overwrite: starting over, removing {', '.join(old)}")
    return trainer.fit(resume=resume)


def _train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume, log, progress, experiment,
                        test, overwrite):
    trainer = Trainer(config, out_dir, data_dir, device, seed, cache_dir, log=log, progress=progress)
    trainer.load_data()
    if not test:
        history = _fit(trainer, resume, overwrite, log)
        res = _run_facts(config, trainer, history, device, seed, experiment)
        res["wall_seconds"] = res["train_seconds"]
        write_results(out_dir, res)
        v = res["val"]
        log(f"validation ({v['pairs']} pairs, best weights): loss {v['loss']:.4f}, accuracy {v['accuracy']:.3f}, "
            f"AUC {v['auc']:.3f}" + (f", {v['oneshot_way']}-way one-shot {v['oneshot']:.3f} ({v['oneshot_tasks']} "
                                     f"tasks)" if "oneshot" in v else "")
            + ("; the test pairs were not read" if config.dataset == "lfw-a" else "; the test data (Lake's runs, the "
               "run alphabets) were not read"))
        return res
    if config.dataset == "omniglot":
        return _omniglot_finals(config, trainer, out_dir, data_dir, device, seed, cache_dir, resume, log,
                                experiment, overwrite)
    m = config.model
    test_file = os.path.join(data_dir, config.train.test_pairs)
    train_file = os.path.join(data_dir, config.train.train_pairs)
    check_disjoint(train_file, read_pairs(train_file), test_file, read_pairs(test_file))
    testset = load_pairset(data_dir, config.train.test_pairs, cache_dir, m.input_size, m.crop)
    trainer.data_digests[config.train.test_pairs] = file_digest(test_file, "test pairs", kind="pairs file")
    if config.train.max_pairs:
        testset = testset.subset(stratified_subset(testset.labels, config.train.max_pairs, seed))
    _check_oneshot(testset, config.train.oneshot_way, test_file)
    log(f"test data: {len(testset)} pairs ({len(testset.images)} images), checked")
    view2 = os.path.join(data_dir, "pairs.txt")
    if not os.path.isfile(view2) or config.train.max_pairs:
        view2 = None                                       # quick runs (--max-pairs) skip View 2
    else:
        folds = read_pairs_folds(view2)
        v2 = pairset_from_pairs(data_dir, [p for f in folds for p in f], view2, cache_dir, m.input_size, m.crop)
        log(f"View 2 data: {len(v2)} pairs ({len(v2.images)} images), checked")
    history, figures, threshold, t_eval = _fit_for_evaluation(trainer, out_dir, resume, overwrite, log)
    res, probs = evaluate_pairset(trainer.net, trainer.normalizer, testset, threshold,
                                  config.train.oneshot_way, seed, config.train.batch_size, figures_dir=figures)
    # every test pair's probability and label, in file order: paired comparisons of runs (a bootstrap) need them
    res["test_probs"] = [round(float(v), 5) for v in probs]
    res["test_labels"] = [int(v) for v in testset.labels]
    if view2:
        log("View 2 (pairs.txt, 10 folds): full, and leak-free (no person of the training pairs)")
        res["view2"] = evaluate_folds(trainer.net, trainer.normalizer, data_dir, view2, cache_dir,
                                      config.train.batch_size, train_people(data_dir, config.train.train_pairs),
                                      threshold, figures)
    res.update(_run_facts(config, trainer, history, device, seed, experiment))
    # all epochs (also those of earlier, resumed invocations) plus this evaluation
    res["wall_seconds"] = res["train_seconds"] + time.time() - t_eval
    write_results(out_dir, res)
    log(f"test ({res['pairs']} pairs): accuracy {res['accuracy']:.3f}, precision {res['precision']:.3f}, "
        f"recall {res['recall']:.3f}, AUC {res['auc']:.3f}, one-shot {res['oneshot']:.3f} "
        f"({res['oneshot_tasks']} {res['oneshot_way']}-way tasks)")
    if "view2" in res:
        full, clean = res["view2"], res["view2"]["leak_free"]
        f = lambda d, key: "n/a" if d[key] is None else f"{d[key]:.3f}"          # noqa: E731
        log(f"View 2 (mean ± SE over folds): leak-free accuracy {f(clean, 'accuracy_mean')} ± "
            f"{f(clean, 'accuracy_se')}, AUC {f(clean, 'auc_mean')} ({clean['pairs']} pairs); full (overlaps "
            f"training) {f(full, 'accuracy_mean')} ± {f(full, 'accuracy_se')}")
    if res.get("warning"):
        log("WARNING: " + res["warning"])
    log(f"model: {trainer.model_path}; figures: {figures}")
    return res


def _fit_for_evaluation(trainer, out_dir, resume, overwrite, log):
    """Train (:func:`_fit`), then make the run's figures folder with the training curves: (history,
    figures folder, the validation threshold on the probabilities the net gives -- calibrated ones when it
    is calibrated --, the time the evaluation starts)."""
    history = _fit(trainer, resume, overwrite, log)
    t_eval = time.time()
    figures = os.path.join(out_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    if history:
        plot_history(history, os.path.join(figures, "history.png"))
    return history, figures, map_threshold(trainer.threshold, trainer.net.calibration), t_eval


def _omniglot_finals(config, trainer, out_dir, data_dir, device, seed, cache_dir, resume, log, experiment, overwrite):
    """Omniglot: read and check the test data (Lake's runs, the run alphabets) before the first step, train,
    then :func:`~minisiamese.evaluate.evaluate_omniglot` into results.json."""
    finals = omniglot.load_finals(data_dir, config.model.input_size, cache_dir)
    log(f"test data: Lake's {len(finals.runs.names)} runs ({len(finals.runs.tasks)} trials), "
        f"{len(finals.tasks)} within-alphabet trials and {len(finals.pairs)} pairs of the run alphabets "
        f"({len(finals.pool.images)} images), checked")
    history, figures, threshold, t_eval = _fit_for_evaluation(trainer, out_dir, resume, overwrite, log)
    res = evaluate_omniglot(trainer.net, trainer.normalizer, finals, threshold, seed, config.train.batch_size, figures)
    res.update(_run_facts(config, trainer, history, device, seed, experiment))
    res["wall_seconds"] = res["train_seconds"] + time.time() - t_eval
    write_results(out_dir, res)
    for line in omniglot_summary(res):
        log(line)
    log(f"model: {trainer.model_path}; figures: {figures}")
    return res


def _check_oneshot(testset, n_way, path):
    """The one-shot tasks the evaluation will build must fit the test file: a DataError before training."""
    try:
        oneshot.check_tasks(testset, n_way, source=path)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _run_facts(config, trainer, history, device, seed, experiment):
    """What every results.json says about the run itself."""
    protocol = (PAIR_SOURCES[config.train.pairs] if config.dataset == "lfw-a" else
                "background set, all 20 drawers (Lake's standard protocol; Koch trained on 12)")
    return {"experiment": experiment, "dataset": config.dataset, "protocol": protocol,
            "device": device_name(get_backend(device)), "epochs_run": len(history),
            "best_epoch": trainer.best_epoch + 1, "val": trainer.val_result, "parameters": trainer.net.num_params(),
            "seed": seed, "conv_plan": trainer.conv_plan, "train_seconds": sum(h["seconds"] for h in history),
            "model": trainer.model_path, "config": config.to_dict()}


def seed_run_name(preset, seed):
    """The run folder (and kept file) of one seed of a preset: NAME-sSEED."""
    return f"{preset}-s{seed}"


def seed_of_run(name):
    """The seed a run's name NAME-sSEED says (None for a name without one)."""
    preset, _, seed = name.rpartition("-s")
    return int(seed) if preset and seed.isascii() and seed.isdigit() else None


def kept_path(results_path, name=None, seed=None):
    """The kept-results layout beside a results table (docs/results.md), in git:
    its folder docs/results (no ``name``), an experiment's docs/results/NAME.json,
    or one seed's docs/results/seeds/NAME-sSEED.json."""
    kept = os.path.join(os.path.dirname(results_path) or ".", "results")
    if name is None:
        return kept
    return os.path.join(kept, f"{name}.json") if seed is None else \
        os.path.join(kept, SEEDS, f"{seed_run_name(name, seed)}.json")


def check_kept_writable(results_path, seeds=False):
    """A TrainingError, before any training, when the folder of the results
    table ``results_path`` or its kept results folder (the seeds' with
    ``seeds``) cannot be created or written in."""
    check_folder(os.path.dirname(results_path) or ".", "results table's folder")
    check_folder(os.path.join(kept_path(results_path), SEEDS) if seeds else kept_path(results_path),
                  "kept results folder")


def run_experiment(name, config, out_root, data_dir, device, seed, cache_dir, log=print, force=False,
                   progress=True, kept=None):
    """Train + evaluate one experiment in out_root/name; skip it when it has
    finished before -- its results.json in the run folder, or its kept copy
    ``kept`` (from another machine) -- unless ``force``.  Returns the results."""
    out_dir = os.path.join(out_root, name)
    for path in (os.path.join(out_dir, RESULT_FILE), kept):
        if path and os.path.lexists(path) and not force:
            try:
                res = read_results(path, seed=seed_of_run(name))
            except DataError as exc:
                raise DataError(f"{exc} (or pass --force to train {name} again)") from None
            log(f"[{name}] finished before ({path}; {res.get('device')}, {res.get('wall_seconds', 0):.0f}s): skipped")
            return res
    log(f"[{name}] training in {out_dir}")
    return train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume=not force, log=log,
                              progress=progress, experiment=name, overwrite=force)


def run_of_model(model_path):
    """(config, seed, data) of the run that wrote ``model_path``, from the results.json or the
    checkpoint.npz beside it, each read and checked by its reader in :mod:`minisiamese.runfiles`;
    ``data``: the SHA-256 of each pairs file the run read, by name, as its checkpoint records them (None
    without a checkpoint, or with an older one that does not)."""
    run_dir = os.path.dirname(os.path.abspath(model_path))
    results, state = os.path.join(run_dir, RESULT_FILE), os.path.join(run_dir, CHECKPOINT_FILE)
    if not (os.path.isfile(results) or os.path.isfile(state)):
        raise DataError(f"{run_dir}: neither {RESULT_FILE} nor checkpoint.npz beside {os.path.basename(model_path)}, "
                        "so the run's validation split (its config and seed) is unknown")
    try:
        run = read_checkpoint(state) if os.path.isfile(state) else None
        res = read_results(results) if os.path.isfile(results) else None
    except (CheckpointError, DataError) as exc:
        raise DataError(f"cannot tell how the run of {model_path} split the validation pairs: {exc}") from None
    if res is None:
        return run.config, run.seed, run.data
    try:
        config, seed = res["config"], res["seed"]                    # the seed's range: read_results checks it
        return ExperimentConfig.from_dict(config, source=results), seed, run.data if run else None
    except KeyError as exc:
        raise DataError(f"{results}: no {exc} in it, so the run's validation split is unknown") from None
    except ConfigError as exc:
        raise DataError(f"{results}: cannot tell how its run split the validation pairs ({exc})") from None


def lfw_split(model_path, net, data_dir, config, seed, data, cache_dir=None):
    """(full, trainset, valset): the training pairs file of the LFW-a run that trained ``model_path``
    (``config``, ``seed`` and the pairs-file digests ``data`` of :func:`run_of_model`), read from ``data_dir``,
    and its split as the run split it; a DataError when that file is not the one the run's checkpoint records."""
    t = config.train
    check_data_dir(data_dir, needs=(t.train_pairs,))
    path = os.path.join(data_dir, t.train_pairs)
    if data and t.train_pairs in data:
        digest = file_digest(path, "training pairs", kind="pairs file")
        if digest != data[t.train_pairs]:
            raise DataError(f"{path} is not the file the run of {model_path} was trained on (SHA-256 "
                            f"{digest[:12]}..., its checkpoint {data[t.train_pairs][:12]}...), so its validation "
                            f"split cannot be rebuilt from it; give the run's --data-dir")
    full = load_pairset(data_dir, t.train_pairs, cache_dir, net.config.input_size, net.config.crop)
    return (full,) + split_training_pairs(full, t, seed, path)


def evaluate_validation(model_path, data_dir, device="cpu", out_dir=None, cache_dir=None, batch_size=128,
                        flip_average=None):
    """The metrics of a trained model on its own run's validation pairs (the
    split of the training pairs file, rebuilt from the run's config and seed;
    people-disjoint with ``train.pairs: "identities"``), with the calibration
    figures; no one-shot tasks.  The test pairs are not read.  A training pairs
    file other than the one the run's checkpoint records is refused."""
    refuse_run_folder(out_dir)
    net, normalizer, threshold = load_trained(model_path, device, flip_average)
    config, seed, data = run_of_model(model_path)
    t = config.train
    if config.dataset == "omniglot":
        valset, tasks = omniglot.validation_data(data_dir, t.val_pairs, t.val_tasks, t.oneshot_way,
                                                 net.config.input_size, cache_dir)
        figures = os.path.join(out_dir, "figures") if out_dir else None
        res, _ = evaluate_pairset(net, normalizer, valset, threshold, seed=seed, batch_size=batch_size,
                                  figures_dir=figures, oneshot_tasks=False)
        res.update(oneshot=oneshot_task_accuracy(net, normalizer, valset, tasks, seed, batch_size),
                   oneshot_tasks=len(tasks),
                   oneshot_way=t.oneshot_way, dataset="omniglot", model=str(model_path),
                   pairs_file="Omniglot's validation pairs and tasks (the validation alphabets)",
                   flip_average=net.config.flip_average)
        if out_dir:
            write_results(out_dir, res)
        return res
    _, _, valset = lfw_split(model_path, net, data_dir, config, seed, data, cache_dir)
    res, _ = evaluate_pairset(net, normalizer, valset, threshold, seed=seed, batch_size=batch_size,
                              figures_dir=os.path.join(out_dir, "figures") if out_dir else None, oneshot_tasks=False)
    res.update({"pairs_file": f"validation split of {t.train_pairs} (seed {seed})", "model": str(model_path),
                "flip_average": net.config.flip_average, "training_pairs_checked": bool(data and t.train_pairs in data)})
    if out_dir:
        write_results(out_dir, res)
    return res
