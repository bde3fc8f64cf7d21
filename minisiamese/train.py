"""The seed report's training protocol, with atomic checkpoints and resume.

Per epoch e (0-based): the learning rate is lr * lr_decay^e; the training pairs
-- the listed ones, or a new draw from the training people's identities
(``train.pairs``; Omniglot's are always drawn, from the background set's characters) -- plus
``augment.copies`` augmented copies of each, when augmenting, are shuffled and run in batches; the
validation loss, accuracy and AUC are measured (and, for Omniglot, the accuracy on the validation
one-shot tasks); the best weights so far (by ``train.monitor``: lowest validation loss, or highest
validation AUC or one-shot accuracy, optionally averaged over the last ``train.monitor_window``
epochs) go to ``best.npz``; the whole training state goes to ``checkpoint.npz``.  Every random draw of epoch e comes from
generators seeded by (seed, e), so a run resumed at an epoch boundary continues
exactly as the uninterrupted run would have.
"""
import dataclasses
import errno
import hashlib
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as ckpt
from . import calibration, convplan, omniglot
from .augment import augment_batch
from .backend import get_backend, to_numpy
from .data import Normalizer, PairSet, check_data_dir, file_digest, load_pairset, people_in, to_unit_float
from .errors import MAX_SEED, ConfigError, DataError, TrainingError, require_int
from .evaluate import oneshot_task_accuracy
from .fileio import remove_leftovers
from .losses import bce_with_logits_forward
from .metrics import best_threshold, roc_auc
from .model import SiameseNet
from .ops import sigmoid
from .optim import Adam, ExponentialDecay
from .pairsampler import IdentityPool
from .runconfig import MONITORS, ExperimentConfig
from .runfiles import (BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, MODEL_FILE, RUN_WRITES,
                       TrainCheckpoint, TrainState, read_checkpoint, rng_state, set_rng_state, write_checkpoint,
                       write_config, write_history)
from .runlock import run_lock

DIVERGENCE_FACTOR = 10       # a training loss this many times the first one stops the run


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (``signum``): the state was saved after the step in
    progress; --resume continues."""

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.signum = signum


STOP_SIGNALS = {signal.SIGINT: ("Ctrl-C", "interrupted"), signal.SIGTERM: ("SIGTERM", "terminated by SIGTERM")}


def epoch_rng(seed, epoch, stream):
    """The generator for one purpose (stream) of one epoch."""
    return np.random.default_rng([seed, epoch, stream])


def stratified_split(labels, val_fraction, seed):
    """(train_rows, val_rows): ``val_fraction`` of each class to validation."""
    rng = np.random.default_rng([seed, 7919])
    train, val = [], []
    for cls in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        k = int(round(len(rows) * val_fraction))
        val.append(rows[:k])
        train.append(rows[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _check_split_size(labels, train_cfg, path):
    """A clear error when a training file has too few pairs of a class for the
    stratified split to leave at least one of it on each side."""
    vf = train_cfg.val_fraction
    need = next(k for k in range(1, 10 ** 6) if round(k * vf) >= 1 and k - round(k * vf) >= 1)
    counts = {c: int(np.sum(labels == c)) for c in (1, 0)}
    if min(counts.values()) < need:
        subset = f" (after --max-pairs {train_cfg.max_pairs})" if train_cfg.max_pairs else ""
        raise DataError(f"{path}: {counts[1]} same-person and {counts[0]} different-person pairs{subset} are too few "
                        f"for a {vf:g} validation split: it needs at least {need} of each ({2 * need} pairs)")


def stratified_subset(labels, n, seed):
    """About n rows, half of each class (for quick runs on a small subset)."""
    rng = np.random.default_rng([seed, 104729])
    rows = [rng.permutation(np.flatnonzero(labels == c))[:n // 2] for c in (1, 0)]
    return np.sort(np.concatenate(rows))


def split_training_pairs(full, train_cfg, seed, path):
    """(trainset, valset) of the PairSet ``full`` read from the training pairs
    file ``path``, as a run with ``train_cfg`` and ``seed`` splits it: the
    --max-pairs subset first when there is one, then ``val_fraction`` of each
    class to validation."""
    if train_cfg.max_pairs:
        full = full.subset(stratified_subset(full.labels, train_cfg.max_pairs, seed))
    _check_split_size(full.labels, train_cfg, path)
    train_rows, val_rows = stratified_split(full.labels, train_cfg.val_fraction, seed)
    return full.subset(train_rows), full.subset(val_rows)


def monitored(history, measured, monitor, window):
    """What early stopping follows after this epoch: ``measured[monitor]``, or
    with ``window`` > 1 its mean with the figures of the previous window - 1
    epochs of ``history`` (as many as there are)."""
    recent = [h[monitor] for h in history[max(0, len(history) - (window - 1)):] if monitor in h] if window > 1 else []
    return float(np.mean(recent + [measured[monitor]]))


def config_differences(stored, current, prefix=""):
    """The settings two config dicts differ in, as 'key.path: checkpoint X, now Y'."""
    out = []
    for key in sorted(set(stored) | set(current), key=str):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint {json.dumps(a)}, now {json.dumps(b)}")
    return out


class Progress:
    """One status line per epoch, redrawn in place on a terminal."""

    def __init__(self, stream=sys.stderr, enabled=True):
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()

    def update(self, epoch, epochs, done, total, loss, acc, rate):
        if not self.tty:
            return
        width = 24
        fill = int(width * done / max(1, total))
        self.stream.write(f"\repoch {epoch}/{epochs} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} "
                          f"loss {loss:.4f} acc {acc:.3f} {rate:.1f} pairs/s ")
        self.stream.flush()

    def end(self):
        if self.tty:
            self.stream.write("\n")


def val_loss_and_acc(net, pairset, normalizer, batch_size):
    """Mean BCE + L2 penalty (as the training loss is defined), accuracy at 0.5,
    and the (N,) logits z of every pair (NumPy float64; p = sigmoid(z))."""
    logits, losses_, n = [], 0.0, len(pairset)
    xp = net.xp
    for i in range(0, n, batch_size):
        x1, x2, y = pairset.batch(np.arange(i, min(n, i + batch_size)))
        z = net.logits(normalizer(x1), normalizer(x2))
        loss, _ = bce_with_logits_forward(z, xp.asarray(y, dtype=z.dtype))
        losses_ += float(loss) * len(y)
        logits.append(to_numpy(z).astype(np.float64))
    z = np.concatenate(logits)
    penalty = float(net.l2_penalty()[0])
    return losses_ / n + penalty, float(np.mean((sigmoid(z) >= 0.5) == (pairset.labels == 1))), z


@dataclass
class RunData:
    """What a run trains and validates on, read and checked (:func:`lfw_a_data`, :func:`omniglot_data`)."""
    valset: PairSet                # the validation pairs
    trainset: PairSet = None       # the listed training pairs; None for Omniglot
    pool: IdentityPool = None      # draws pairs_per_epoch training pairs afresh each epoch; None: trainset's
    pairs_per_epoch: int = 0
    val_tasks: list = field(default_factory=list)     # validation one-shot tasks over valset's images (Omniglot)
    data_digests: dict = field(default_factory=dict)  # pairs file -> SHA-256 (Omniglot has none: faces identify it)
    train_images: np.ndarray = None                   # what the normalisation is fitted on
    read: list = field(default_factory=list)          # every image array read


def trained_people(train_cfg, full, trainset, valset):
    """The people whose faces a run with ``train_cfg`` trains on, given its training pairs file ``full`` split
    into ``trainset`` and ``valset``: drawing pairs from identities, everyone in the file but the people of a
    validation pair; else the people of its training pairs."""
    if train_cfg.pairs == "identities":
        return people_in(full.pairs) - people_in(valset.pairs)
    return people_in(trainset.pairs)


def lfw_a_data(cfg, data_dir, seed, cache_dir, log):
    """LFW-a: the training pairs file split into training and validation pairs (people-disjoint when
    pairs are drawn from identities)."""
    t, m = cfg.train, cfg.model
    check_data_dir(data_dir, needs=(t.train_pairs, t.test_pairs))
    # what identifies the data, by pairs file; the pipeline adds the test file's when it reads it
    digests = {t.train_pairs: file_digest(os.path.join(data_dir, t.train_pairs), "training pairs",
                                          kind="pairs file")}
    full = load_pairset(data_dir, t.train_pairs, cache_dir, m.input_size, m.crop)
    trainset, valset = split_training_pairs(full, t, seed, os.path.join(data_dir, t.train_pairs))
    d = RunData(valset=valset, trainset=trainset, data_digests=digests, read=[full.images])
    if t.pairs == "identities":
        people = trained_people(t, full, trainset, valset)
        d.pool = IdentityPool.load(data_dir, people, cache_dir, m.input_size, m.crop)
        d.pairs_per_epoch = t.pairs_per_epoch or len(trainset)
        d.train_images = d.pool.images
        d.read.append(d.pool.images)
        log(f"data: {d.pairs_per_epoch} pairs drawn afresh each epoch from {len(people)} people "
            f"({len(d.pool.images)} images, {len(d.pool.multi)} people with 2 or more; unrestricted "
            f"protocol), {len(valset)} validation pairs whose people are all left out")
    else:
        d.train_images = full.images[np.unique(np.concatenate([trainset.idx1, trainset.idx2]))]
        log(f"data: {len(trainset)} training pairs, {len(valset)} validation pairs ({len(full.images)} images)")
    log(f"faces: {m.input_size}x{m.input_size}" + (f", the centre {m.crop:g} of each image" if m.crop < 1
                                                    else ", the whole image"))
    return d


def omniglot_data(cfg, data_dir, seed, cache_dir, log):
    """Omniglot: a pool of every background image (pairs drawn afresh each epoch, within and across
    alphabets), validation pairs and within-alphabet tasks of the validation alphabets
    (:mod:`minisiamese.omniglot`); ``seed`` is not needed, they are drawn from fixed seeds."""
    t, m = cfg.train, cfg.model
    if not os.path.isdir(data_dir):
        raise DataError(omniglot.missing_data_message(data_dir))
    pool = omniglot.training_pool(data_dir, m.input_size, cache_dir)
    valset, tasks = omniglot.validation_data(data_dir, t.val_pairs, t.val_tasks, t.oneshot_way, m.input_size,
                                             cache_dir)
    log(f"data: {t.pairs_per_epoch} pairs drawn afresh each epoch from the background set "
        f"({len(pool.names)} characters of {len(pool.group_names)} alphabets, "
        f"{len(pool.images)} images, every drawer; half the different pairs within an alphabet); "
        f"validation: {len(valset)} pairs and {len(tasks)} within-alphabet "
        f"{t.oneshot_way}-way tasks of the validation alphabets")
    log(f"images: {m.input_size}x{m.input_size}, strokes 1 on 0")
    return RunData(valset=valset, pool=pool, pairs_per_epoch=t.pairs_per_epoch, val_tasks=tasks,
                   train_images=pool.images, read=[pool.images, valset.images])


def check_same_run(run, cfg, seed, data_dir, data_digests, faces_digest, path, log):
    """Refuse to continue another run from the checkpoint ``run`` (a :class:`TrainCheckpoint` read from
    ``path``): one written for other settings than ``cfg`` (but those a resume may change), another
    ``seed``, or other data (the pairs files' ``data_digests``, the images' ``faces_digest``, both as read
    from ``data_dir``); ``log`` warns when an older checkpoint does not record its data."""
    # the settings a resume may change: more (or fewer) epochs continue the same run; calibration acts
    # after the last epoch, so a finished run resumed with it on is calibrated (older runs: issue 36)
    stored = run.config.replace(train=dataclasses.replace(run.config.train, epochs=cfg.train.epochs,
                                                          calibrate=cfg.train.calibrate))
    differences = config_differences(stored.to_dict(), cfg.to_dict())
    if differences:
        raise TrainingError(f"{path}: this checkpoint was written for a different configuration "
                            f"({'; '.join(differences)}); resume with the same settings (only --epochs and "
                            f"train.calibrate may change), or use a fresh --out")
    if run.seed != seed:
        raise TrainingError(f"{path}: written with --seed {run.seed}, not {seed}")
    if run.data is None:
        log(f"warning: {path} does not record which data it was trained on (an older checkpoint); "
            f"resuming without checking --data-dir")
        return
    for name, digest in data_digests.items():
        if name in run.data and run.data[name] != digest:
            raise TrainingError(f"{path}: {os.path.join(data_dir, name)} is not the file this run was "
                                f"trained on (SHA-256 {digest[:12]}..., checkpoint {run.data[name][:12]}...); "
                                f"resume with the same --data-dir, or use a fresh --out")
    if run.faces_digest and faces_digest and run.faces_digest != faces_digest:
        raise TrainingError(f"{path}: the faces read from {data_dir} are not those this run was trained on "
                            f"(same pairs file, but the images differ: another copy of them, or a Pillow "
                            f"that resizes them differently); resume with the same --data-dir, or use a "
                            f"fresh --out")


def fit_calibration(z, y, accuracy, log):
    """Platt's [a, c] fitted on the validation logits ``z`` and labels ``y``, and its figures there
    (ECE, Brier, accuracy at 0.5, and those before it); (None, None) with a note in ``log`` when it cannot
    be fitted (the model keeps its raw probabilities).  ``accuracy``: the raw sigmoid's at 0.5."""
    try:
        platt = calibration.fit_platt(z, y)
    except ValueError as exc:
        log(f"not calibrated: {exc}; the model keeps its raw probabilities and its threshold")
        return None, None
    q = calibration.apply_platt(z, platt)
    after = {"platt": platt.tolist(), **calibration.summary(y, q), "accuracy": float(np.mean((q >= 0.5) == (y == 1))),
             "before": calibration.summary(y, sigmoid(z))}
    log(f"calibration on the validation pairs: p = sigmoid({platt[0]:.4g} z {platt[1]:+.4g}); ECE "
        f"{after['before']['ece']:.3f} -> {after['ece']:.3f}, accuracy at 0.5 {accuracy:.3f} -> {after['accuracy']:.3f}")
    return platt, after


def images_digest(arrays):
    """SHA-256 (hex) of image ``arrays`` as read, in order: what a checkpoint records of the faces a run trained
    and validated on, so a resume from another copy of them (same pairs file) is refused."""
    h = hashlib.sha256()
    for images in arrays:
        h.update(images.tobytes())
    return h.hexdigest()


def shuffled_rows(n, copies, rng):
    """(rows, augmented flags) of an epoch over ``n`` pairs and ``copies`` augmented copies of each (row i
    of copy c > 0 flagged), shuffled by ``rng``."""
    rows = np.tile(np.arange(n), 1 + copies)
    flags = np.repeat(np.arange(1 + copies) > 0, n)
    order = rng.permutation(len(rows))
    return rows[order], flags[order]


def step_problem(state, loss, grads, xp):
    """What is wrong with a training step's ``loss`` and ``grads`` (arrays on ``xp``), in words; None when
    nothing is: a non-finite loss or gradient, or a loss past DIVERGENCE_FACTOR times the run's first
    training loss, which the first finite loss seen becomes (``state.reference_loss``; a resumed run's is
    its history's first)."""
    bad = [k for k, g in grads.items() if not bool(xp.isfinite(g).all())]
    if state.reference_loss is None and np.isfinite(loss):
        state.reference_loss = state.history[0]["loss"] if state.history else loss
    if not np.isfinite(loss):
        return f"the loss is not finite ({loss})"
    if bad:
        return f"the gradient of {bad[0]} is not finite (loss {loss:.4g})"
    if loss > DIVERGENCE_FACTOR * state.reference_loss:
        return (f"the loss {loss:.4g} is over {DIVERGENCE_FACTOR}x the first training loss "
                f"{state.reference_loss:.4g}: training is diverging")
    return None


def epoch_validation(net, normalizer, valset, val_tasks, batch_size, seed, epoch, kept):
    """An epoch's validation figures as its history record keeps them: ``val_loss``, ``val_accuracy`` (at
    0.5), ``val_auc`` and, with ``val_tasks``, ``val_oneshot`` (ties broken at random, by ``seed``); a
    TrainingError naming the epoch (0-based) and ``kept``, the last good state, when the loss is not finite."""
    val_loss, val_acc, z = val_loss_and_acc(net, valset, normalizer, batch_size)
    val_auc = roc_auc(valset.labels, sigmoid(z))
    if not np.isfinite(val_loss):
        raise TrainingError(f"epoch {epoch + 1}: validation loss is not finite; the last good "
                            f"state is kept in {kept}")
    measured = {"val_loss": val_loss, "val_accuracy": val_acc, "val_auc": val_auc}
    if val_tasks:
        measured["val_oneshot"] = oneshot_task_accuracy(net, normalizer, valset, val_tasks, seed, batch_size)
    return measured


def epoch_line(record, epochs, improved):
    """The log's line for a finished epoch's history ``record`` of ``epochs``; '*': the best so far."""
    return (f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f} acc {record['accuracy']:.3f} | "
            f"val_loss {record['val_loss']:.4f} val_acc {record['val_accuracy']:.3f} val_auc {record['val_auc']:.3f}"
            + (f" val_oneshot {record['val_oneshot']:.3f}" if "val_oneshot" in record else "")
            + f" | lr {record['lr']:.3g} | {record['seconds']:.0f}s" + (" *" if improved else ""))


def final_validation(net, normalizer, valset, val_tasks, train_cfg, seed, log):
    """The run's last measure of validation, with the best weights loaded: (the decision threshold chosen
    there, the figures ``results.json`` keeps as ``val``: with ``val_tasks``, the validation one-shot tasks,
    also their accuracy).  With ``train.calibrate``, ``net`` gets the calibration fitted there
    (:func:`fit_calibration`); without, or when it cannot be fitted, none."""
    loss, acc, z = val_loss_and_acc(net, valset, normalizer, train_cfg.batch_size)
    y, p = valset.labels, sigmoid(z)
    threshold = best_threshold(y, p)
    result = {"loss": loss, "accuracy": acc, "auc": roc_auc(y, p), "pairs": len(valset)}
    if val_tasks:
        result.update(oneshot=oneshot_task_accuracy(net, normalizer, valset, val_tasks, seed, train_cfg.batch_size),
                      oneshot_tasks=len(val_tasks), oneshot_way=train_cfg.oneshot_way)
    net.calibration = None
    if train_cfg.calibrate:
        net.calibration, calibrated = fit_calibration(z, y, acc, log)
        if calibrated:
            result["calibrated"] = calibrated
    return threshold, result


@contextmanager
def stop_signals_to(handler):
    """Inside, :data:`STOP_SIGNALS` call ``handler`` (in the main thread only, where Python can set
    them); restored after."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS} if in_main else {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Trainer:
    def __init__(self, config, out_dir, data_dir, device="cpu", seed=0, cache_dir=None,
                 log=print, progress=True):
        if not isinstance(config, ExperimentConfig):
            raise ConfigError("Trainer needs an ExperimentConfig")
        require_int("seed", seed, 0, MAX_SEED)
        self.cfg, self.out_dir, self.data_dir = config, out_dir, data_dir
        self.device, self.seed, self.cache_dir = device, seed, cache_dir
        self.log = log
        self.progress = Progress(enabled=progress)
        self.xp = get_backend(device)
        self.checkpoint_path = os.path.join(out_dir, CHECKPOINT_FILE)
        self.best_path = os.path.join(out_dir, BEST_FILE)
        self.model_path = os.path.join(out_dir, MODEL_FILE)
        self.history_path = os.path.join(out_dir, HISTORY_FILE)
        self._stop_requested, self._stop_signal = False, signal.SIGINT
        # the data (load_data): training pairs (a PairSet, or a pool drawing pairs_per_epoch each epoch),
        # validation pairs and one-shot tasks, the normalisation
        self.trainset = self.valset = self.pool = self.normalizer = None
        self.val_tasks, self.pairs_per_epoch = [], 0
        self.data_digests = {}       # pairs file -> SHA-256: load_data fills it (the pipeline adds the test file)
        self.faces_digest = None     # SHA-256 of the preprocessed faces trained and validated on (load_data)
        self.net = self.opt = self.conv_plan = None     # _new_state
        self.state = TrainState()    # the run's progress, saved in checkpoint.npz with the weights and Adam's
        self.threshold = self.val_result = None         # _finish: the validation-chosen threshold and figures

    # the state's figures, as the pipeline (and a library caller) reads them
    history = property(lambda self: self.state.history)
    best_epoch = property(lambda self: self.state.best_epoch)
    start_epoch = property(lambda self: self.state.start_epoch)
    partial = property(lambda self: self.state.partial)

    # ------------------------------------------------------------------ data
    def load_data(self):
        """The data of the run's ``dataset``: training pairs (``trainset``, or a ``pool`` drawing
        ``pairs_per_epoch`` afresh each epoch), the validation pairs (``valset``) and validation one-shot
        tasks (``val_tasks``, over valset's images; Omniglot only), each checked; then the normalisation,
        fitted on the training images, and the digest of every image read."""
        load = omniglot_data if self.cfg.dataset == "omniglot" else lfw_a_data
        d = load(self.cfg, self.data_dir, self.seed, self.cache_dir, self.log)
        self.trainset, self.valset, self.pool, self.val_tasks = d.trainset, d.valset, d.pool, d.val_tasks
        self.pairs_per_epoch, self.data_digests = d.pairs_per_epoch, d.data_digests
        self.normalizer = Normalizer.fit(to_unit_float(d.train_images)) if self.cfg.normalize else Normalizer()
        self.faces_digest = images_digest(d.read)

    # ------------------------------------------------------------------ state
    def _new_state(self, conv_algos=None):
        """Fresh weights and optimizer; the conv plan given (a resumed run's) or
        resolved now for this run's batch shape, then fixed for the whole run."""
        self.net = SiameseNet(self.cfg.model, seed=self.seed, backend=self.xp)
        self.conv_plan = self.net.fix_conv_plan(2 * self.cfg.train.batch_size, conv_algos)
        t = self.cfg.train
        self.opt = Adam(lr=t.lr, beta1=t.beta1, beta2=t.beta2, eps=t.eps)
        self.state = TrainState()

    def _save_checkpoint(self):
        """checkpoint.npz: the state (an interrupted epoch's ``partial`` included), weights, Adam, data."""
        self._write(write_checkpoint, self.checkpoint_path, TrainCheckpoint(
            config=self.cfg, seed=self.seed, state=self.state, params=self.net.state_dict(),
            optimizer=self.opt.state_dict(), normalizer=self.normalizer, conv_algos=self.net.conv_algos,
            data=self.data_digests, faces_digest=self.faces_digest or ""))

    def _kept(self):
        return self.checkpoint_path if os.path.exists(self.checkpoint_path) else "(none yet: no epoch finished)"

    def _write(self, save, path, *args, **kwargs):
        """``save(path, ...)``; a failed write (a full disk...) is a TrainingError
        naming the file and the last good checkpoint, which atomic writes keep."""
        try:
            save(path, *args, **kwargs)
        except OSError as exc:
            why = ("the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                   else f"the write failed ({exc.strerror or exc})")
            raise TrainingError(f"{path}: {why}; the last good state is kept in {self._kept()}") from None

    def _load_checkpoint(self):
        """Continue from checkpoint.npz, read and checked (:func:`~minisiamese.runfiles.read_checkpoint`),
        once it is known to be this run's (:func:`check_same_run`)."""
        run = read_checkpoint(self.checkpoint_path)
        check_same_run(run, self.cfg, self.seed, self.data_dir, self.data_digests, self.faces_digest,
                       self.checkpoint_path, self.log)
        self._new_state(run.conv_algos)
        self.net.load_state_dict(run.params, source=self.checkpoint_path)
        self.opt.load_state_dict(run.optimizer, self.xp)
        self.normalizer = run.normalizer
        self.state = run.state

    # ------------------------------------------------------------------ training
    def _epoch_rows(self, epoch):
        """(pairs, rows, augmented flags) for this epoch, shuffled: the listed
        training pairs, or a new draw from the identity pool."""
        pairs = self.pool.draw(self.pairs_per_epoch, epoch_rng(self.seed, epoch, 3)) if self.pool else self.trainset
        copies = self.cfg.augment.copies if self.cfg.augment.kind != "none" else 0
        return (pairs, *shuffled_rows(len(pairs), copies, epoch_rng(self.seed, epoch, 0)))

    def _check_step(self, epoch, step, loss, grads):
        """Stop on a step :func:`step_problem` finds wrong: never train on silently.  The last
        checkpoint (end of the previous epoch) is kept."""
        what = step_problem(self.state, loss, grads, self.xp)
        if what is None:
            return
        self.progress.end()
        raise TrainingError(f"epoch {epoch + 1}, step {step + 1}: {what}; the learning rate "
                            f"{self.cfg.train.lr * self.opt.lr_scale:g} is probably too high. "
                            f"The last good state is kept in {self._kept()}")

    def _train_epoch(self, epoch):
        """One pass over the epoch's batches; returns (loss, accuracy, seconds).

        A Ctrl-C or SIGTERM (see :meth:`fit`) is acted on between steps: the state after the
        last finished step -- weights, Adam, the epoch's generator states and
        running totals -- is saved as ``partial`` and :class:`TrainingInterrupted`
        raised; a resumed run picks the epoch up at the next step, bit for bit
        on the CPU.
        """
        t = self.cfg.train
        xp = self.xp
        ExponentialDecay(t.lr_decay).apply(self.opt, epoch)
        self.net.rng = xp.random.default_rng(int(epoch_rng(self.seed, epoch, 1).integers(2 ** 62)))
        aug_rng = epoch_rng(self.seed, epoch, 2)
        pairs, rows, flags = self._epoch_rows(epoch)
        start, total_loss, correct, seen, before = 0, 0.0, 0, 0, 0.0
        p = self.state.partial
        if p is not None and p["epoch"] == epoch:
            start, total_loss, correct, seen, before = p["step"], p["loss"], p["correct"], p["seen"], p["seconds"]
            set_rng_state(aug_rng, p["aug_rng"])
            set_rng_state(self.net.rng, p["dropout_rng"])
        self.state.partial = None
        t0 = time.perf_counter() - before
        steps = -(-len(rows) // t.batch_size)
        for step in range(start, steps):
            if self._stop_requested:
                self.progress.end()
                self.state.partial = {"epoch": epoch, "step": step, "loss": total_loss, "correct": correct,
                                      "seen": seen, "seconds": time.perf_counter() - t0,
                                      "aug_rng": rng_state(aug_rng), "dropout_rng": rng_state(self.net.rng)}
                self._save_checkpoint()
                stopped = STOP_SIGNALS[self._stop_signal][1]
                raise TrainingInterrupted(f"{stopped} at epoch {epoch + 1}, step {step + 1}: the state is saved in "
                                          f"{self.checkpoint_path}; continue with --resume", self._stop_signal)
            sl = slice(step * t.batch_size, (step + 1) * t.batch_size)
            x1, x2, y = pairs.batch(rows[sl])
            if flags[sl].any():
                f = flags[sl]
                x1[f] = augment_batch(x1[f], self.cfg.augment, aug_rng)
                x2[f] = augment_batch(x2[f], self.cfg.augment, aug_rng)
            loss, grads, probs = self.net.loss_and_grads(self.normalizer(x1), self.normalizer(x2), y,
                                                         return_probs=True)
            self._check_step(epoch, step, loss, grads)
            self.opt.step(self.net.params, grads)
            n = len(y)
            total_loss += loss * n
            correct += int(np.sum((to_numpy(probs) >= 0.5) == (y == 1)))
            seen += n
            self.progress.update(epoch + 1, t.epochs, step + 1, steps, total_loss / seen, correct / seen,
                                 seen / (time.perf_counter() - t0))
        self.progress.end()
        return total_loss / seen, correct / seen, time.perf_counter() - t0

    def _on_signal(self, signum, frame):
        """First Ctrl-C or SIGTERM: finish the step in progress, save, stop.  Second:
        stop now (the last saved checkpoint stays intact: writes are atomic)."""
        name, stopped = STOP_SIGNALS[signum]
        if self._stop_requested:
            raise TrainingInterrupted(f"{stopped} again: stopped at once; the last saved state is in {self._kept()}; "
                                      f"continue with --resume", signum)
        self._stop_requested, self._stop_signal = True, signum
        self.log(f"\n{name}: saving after this step ({name} again stops at once)")

    def fit(self, resume=False):
        """Train (or continue) and return the history; leaves ``model.npz`` with
        the best weights, the normalisation and the validation-chosen threshold."""
        with run_lock(self.out_dir):
            return self._fit(resume)

    def _fit(self, resume):
        if self.valset is None:
            self.load_data()
        leftovers = remove_leftovers(self.out_dir, RUN_WRITES)  # the run lock is held: no live write owns them
        if leftovers:
            self.log(f"removed {len(leftovers)} temporary file(s) left by a write that was killed: "
                     f"{', '.join(leftovers)}")
        if resume and os.path.exists(self.checkpoint_path):
            self._load_checkpoint()
            p = self.state.partial
            where = f"at epoch {p['epoch'] + 1}, step {p['step'] + 1}" if p else f"after epoch {self.start_epoch}"
            self.log(f"resuming {where} from {self.checkpoint_path}")
        else:
            if resume:
                self.log(f"--resume: no checkpoint in {self.out_dir}, starting afresh")
            self._new_state()
        self.log("conv plan: " + convplan.describe_plan(self.conv_plan))
        self._write(write_config, os.path.join(self.out_dir, CONFIG_FILE), self.cfg)
        self._stop_requested = False
        with stop_signals_to(self._on_signal):
            self._epochs()
        self._finish()
        return self.history

    def _epochs(self):
        t, s = self.cfg.train, self.state
        stopped = s.wait >= t.patience
        for epoch in range(s.start_epoch, t.epochs):
            if stopped:
                break
            t_epoch = time.perf_counter() - (s.partial["seconds"] if s.partial else 0.0)
            loss, acc, _ = self._train_epoch(epoch)
            measured = epoch_validation(self.net, self.normalizer, self.valset, self.val_tasks, t.batch_size, self.seed,
                                        epoch, self.checkpoint_path)
            score = MONITORS[t.monitor] * monitored(s.history, measured, t.monitor, t.monitor_window)
            improved = score < s.best_val                       # best_val: the signed score, lower is better
            if improved:
                s.best_val, s.best_epoch, s.wait = score, epoch, 0
                self._write(ckpt.save_model, self.best_path, self.net,
                            extra=dict(self.normalizer.to_extra(), epoch=np.array(epoch)))
            else:
                s.wait += 1
            secs = time.perf_counter() - t_epoch                # training + validation
            s.history.append({"epoch": epoch + 1, "loss": loss, "accuracy": acc, **measured,
                              "lr": t.lr * self.opt.lr_scale, "seconds": secs})
            self._save_checkpoint()
            self._write(write_history, self.history_path, s.history)
            self.log(epoch_line(s.history[-1], t.epochs, improved))
            stopped = s.wait >= t.patience
            if stopped:
                what = t.monitor + (f" (mean of the last {t.monitor_window} epochs)" if t.monitor_window > 1 else "")
                self.log(f"early stopping: {what} has not improved for {t.patience} epochs; "
                         f"restoring the weights of epoch {s.best_epoch + 1}")

    def _finish(self):
        """Restore the best weights, choose the decision threshold on validation,
        fit the calibration there (``train.calibrate``), write model.npz."""
        if os.path.exists(self.best_path):
            _, params, _ = ckpt.read_model_file(self.best_path)
            self.net.load_state_dict(params, source=self.best_path)
        self.threshold, self.val_result = final_validation(self.net, self.normalizer, self.valset, self.val_tasks,
                                                           self.cfg.train, self.seed, self.log)
        self._write(ckpt.save_model, self.model_path, self.net, extra=dict(
            self.normalizer.to_extra(), threshold=np.array(self.threshold),
            best_epoch=np.array(self.best_epoch), experiment=np.array(self.cfg.to_json())))
