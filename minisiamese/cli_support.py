"""What the CLI's train command does, as a function (the experiments runner uses it too)."""
import json
import os
import time

from .backend import device_name, get_backend
from .checkpoint import atomic_write
from .data import load_pairset
from .evaluate import evaluate_pairset
from .plots import plot_history
from .train import Trainer, stratified_subset


def train_and_evaluate(config, out_dir, data_dir, device, seed, cache_dir, resume=False, log=print,
                       progress=True, experiment=None):
    trainer = Trainer(config, out_dir, data_dir, device, seed, cache_dir, log=log, progress=progress)
    history = trainer.fit(resume=resume)
    t_eval = time.time()
    figures = os.path.join(out_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    if history:
        plot_history(history, os.path.join(figures, "history.png"))
    testset = load_pairset(data_dir, config.train.test_pairs, cache_dir, config.model.input_size)
    if config.train.max_pairs:
        testset = testset.subset(stratified_subset(testset.labels, config.train.max_pairs, seed))
    res, _ = evaluate_pairset(trainer.net, trainer.normalizer, testset, trainer.threshold,
                              config.train.oneshot_way, seed, config.train.batch_size, figures_dir=figures)
    res.update({"experiment": experiment, "device": device_name(get_backend(device)),
                "epochs_run": len(history), "best_epoch": trainer.best_epoch + 1,
                "parameters": trainer.net.num_params(), "seed": seed, "conv_plan": trainer.conv_plan,
                "train_seconds": sum(h["seconds"] for h in history), "model": trainer.model_path})
    # all epochs (also those of earlier, resumed invocations) plus this evaluation
    res["wall_seconds"] = res["train_seconds"] + time.time() - t_eval
    # atomic: its presence is what marks the experiment finished
    atomic_write(os.path.join(out_dir, "results.json"), lambda f: f.write(json.dumps(res, indent=1).encode()))
    log(f"test ({res['pairs']} pairs): accuracy {res['accuracy']:.3f}, precision {res['precision']:.3f}, "
        f"recall {res['recall']:.3f}, AUC {res['auc']:.3f}, one-shot {res['oneshot']:.3f} "
        f"({res['oneshot_tasks']} {res['oneshot_way']}-way tasks)")
    if res.get("warning"):
        log("WARNING: " + res["warning"])
    log(f"model: {trainer.model_path}; figures: {figures}")
    return res
