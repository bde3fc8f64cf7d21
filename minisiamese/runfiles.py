"""The run folder: the files a training run writes there, each with its format
documented here, one writer and one checked reader; and the folder's own rules.

A run folder (``train --out``) holds:

* ``config.json``: the run's :class:`~minisiamese.runconfig.ExperimentConfig` as JSON, written at each start
  (:func:`write_config`; read back by ``ExperimentConfig.from_file``).
* ``checkpoint.npz``: the whole training state (below), after every epoch and on Ctrl-C or SIGTERM.
* ``best.npz`` and ``model.npz``: weights files (:mod:`minisiamese.checkpoint`): the best epoch's weights so
  far, and the final model (the best weights, the validation threshold, the calibration).
* ``history.json``: one record per finished epoch (below).
* ``results.json``: what the run measured (below); its presence marks the run finished.
* ``figures/`` and the run lock ``.lock`` (:mod:`minisiamese.runlock`).

**checkpoint.npz** (:func:`write_checkpoint`, :func:`read_checkpoint`), arrays without pickle, each 0-d
unless said otherwise:

=================  =====================================================================================
``format``         text, :data:`TRAIN_FORMAT`
``config``         text, the ExperimentConfig's JSON
``seed``           int in [0, ``errors.MAX_SEED``]
``epoch``          int in [-1, :data:`MAX_EPOCHS`]: the last finished epoch (0-based; -1: none)
``history``        text, a JSON list of ``epoch`` + 1 history records (below), each with its ``loss``
``best_val``       float: the best monitored score so far, signed so that lower is better (inf: none)
``best_epoch``     int in [-1, ``epoch``]: the epoch whose weights best.npz holds (-1: none)
``wait``           int in [0, :data:`MAX_EPOCHS`]: epochs since ``best_val`` last improved
``reference_loss`` float: the run's first training loss, the divergence check's yardstick (NaN: none yet)
``partial``        text, '' or a JSON object: where an interrupted epoch stopped (:func:`check_partial`)
``data``           text, a JSON object: each pairs file's name -> its SHA-256 (hex)
``faces_digest``   text: the SHA-256 (hex) of every image trained and validated on, '' when unknown
``conv_algos``     text, a JSON list naming one of :data:`RESOLVED_ALGOS` per conv layer
``param/NAME``     the network's state dict, every array of the config's network, finite floating point
``opt/t``          int in [0, 2**62]: Adam's steps
``opt/lr_scale``   float in [0, 1]: the learning rate's decay factor (0: a steep decay underflowed)
``opt/m/NAME``,    Adam's moments, one per trained parameter once ``opt/t`` > 0, finite floating point of
``opt/v/NAME``     the parameter's shape (``v`` >= 0)
``norm_mean``,     the input normalisation (:class:`~minisiamese.data.Normalizer`): finite, std > 0
``norm_std``
=================  =====================================================================================

Older checkpoints lack ``reference_loss``, ``data``, ``faces_digest`` and ``partial`` (all read as none)
and name ``conv_algos`` ``conv_plan`` or lack it (the plan is then resolved again); they still load.

**history.json** (:func:`write_history`, :func:`read_history`): a JSON list, record i (0-based) for epoch
i + 1: ``epoch`` (= i + 1), ``loss`` and ``val_loss`` (>= 0), ``accuracy``, ``val_accuracy``, ``val_auc``
and, for Omniglot, ``val_oneshot`` (each in [0, 1]), ``lr`` (>= 0) and ``seconds`` (>= 0); every value a
finite number (records of older runs lack some keys).

**results.json** (:func:`write_results`, :func:`read_results`): a JSON object, checked by
:func:`check_results` (see there for the keys).

**A kept copy** of a finished run's results, in git under docs/results/ (:func:`kept_copy`,
:func:`write_kept`, :func:`read_results`): the results.json format, with the run's history.json records as
``history`` and without ``model``; keys sorted, indent 1, a final newline.
"""
import errno
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import check_params, check_threshold
from .convplan import ALGOS
from .data import Normalizer, open_regular
from .errors import (MAX_SEED, CheckpointError, ConfigError, DataError, TrainingError, is_number, require_int,
                     require_number, shown)
from .fileio import load_arrays, save_arrays, write_json, write_text
from .runconfig import TRAIN_INTS, ExperimentConfig

TRAIN_FORMAT = "minisiamese-train-1"       # checkpoint.npz's format tag
CHECKPOINT_FILE, HISTORY_FILE, RESULT_FILE = "checkpoint.npz", "history.json", "results.json"
BEST_FILE, MODEL_FILE, CONFIG_FILE = "best.npz", "model.npz", "config.json"
RUN_WRITES = (CHECKPOINT_FILE, BEST_FILE, MODEL_FILE, HISTORY_FILE, CONFIG_FILE)     # a Trainer's files
RUN_FILES = (RESULT_FILE,) + RUN_WRITES + ("figures",)                              # what starting over replaces
RESOLVED_ALGOS = tuple(a for a in ALGOS if a != "auto")      # what a run's fixed conv plan names
MAX_EPOCHS = TRAIN_INTS["epochs"][1]
MAX_COUNT = 2 ** 62                        # steps, pairs seen: any count a run can reach
HISTORY_FRACTIONS = ("accuracy", "val_accuracy", "val_auc", "val_oneshot")
HISTORY_NONNEGATIVE = ("loss", "val_loss", "lr", "seconds")


# ----------------------------------------------------------------------------- the training state
@dataclass
class TrainState:
    """A run's progress, all that changes from epoch to epoch besides the weights, Adam and the
    generators (which are drawn afresh from (seed, epoch) at each epoch's start, see
    :func:`minisiamese.train.epoch_rng`).  checkpoint.npz stores it (the module's table)."""
    history: list = field(default_factory=list)   # one record per finished epoch (history.json's)
    best_val: float = math.inf     # the best monitored score so far, signed so that lower is better
    best_epoch: int = -1           # the epoch (0-based) whose weights best.npz holds; -1: none yet
    wait: int = 0                  # epochs since best_val last improved (early stopping's patience count)
    reference_loss: float = None   # the run's first training loss (the divergence check's); None: none yet
    partial: dict = None           # where an interrupted epoch stopped (check_partial); None: at an epoch's end

    @property
    def start_epoch(self):
        """The epoch (0-based) to train next: the one after the last finished, interrupted or not."""
        return len(self.history)


@dataclass
class TrainCheckpoint:
    """What checkpoint.npz holds, read and checked (:func:`read_checkpoint`) or to write."""
    config: ExperimentConfig
    seed: int
    state: TrainState
    params: dict                   # the network's state dict (name -> array)
    optimizer: dict                # Adam's state dict: t, lr_scale, m/NAME, v/NAME
    normalizer: Normalizer
    conv_algos: list               # one of RESOLVED_ALGOS per conv layer; None: not recorded (older files)
    data: dict                     # pairs file name -> SHA-256; None: not recorded (older files)
    faces_digest: str = ""         # SHA-256 of the images read; '': unknown


def rng_state(rng):
    """JSON of a NumPy generator's state ('' for generators without one, e.g. CuPy's)."""
    bit_gen = getattr(rng, "bit_generator", None)
    return json.dumps(bit_gen.state) if bit_gen is not None and type(rng).__module__.startswith("numpy") else ""


def set_rng_state(rng, text):
    """Restore a state :func:`rng_state` gave ('': leave ``rng`` as it is)."""
    if text:
        rng.bit_generator.state = json.loads(text)


def write_checkpoint(path, run):
    """Write the :class:`TrainCheckpoint` ``run`` to ``path`` atomically, in the module's format."""
    s = run.state
    arrays = {"format": np.array(TRAIN_FORMAT), "config": np.array(run.config.to_json()),
              "seed": np.array(run.seed), "epoch": np.array(len(s.history) - 1),    # the last finished epoch
              "history": np.array(json.dumps(s.history)),
              "best_val": np.array(s.best_val), "best_epoch": np.array(s.best_epoch),
              "wait": np.array(s.wait), "partial": np.array(json.dumps(s.partial) if s.partial else ""),
              "data": np.array(json.dumps(run.data)),
              "faces_digest": np.array(run.faces_digest or ""),
              "conv_algos": np.array(json.dumps(run.conv_algos)),
              "reference_loss": np.array(np.nan if s.reference_loss is None else s.reference_loss)}
    arrays.update({f"param/{k}": v for k, v in run.params.items()})
    arrays.update({f"opt/{k}": np.asarray(v) if np.isscalar(v) else v for k, v in run.optimizer.items()})
    arrays.update(run.normalizer.to_extra())
    save_arrays(path, arrays)


def damaged(path, what):
    """The error for a training checkpoint whose array ``what`` cannot be right."""
    return CheckpointError(f"{path}: damaged training checkpoint ({what}); continue from a copy, or start "
                           f"again with --overwrite")


def stored_int(arrays, key, path, lo, hi):
    """A checkpoint's 0-d integer ``key`` in [lo, hi]."""
    v = arrays.get(key)
    if v is None:
        raise damaged(path, f"{key} is missing")
    return require_int(key, v.tolist(), lo, hi, error=lambda m: damaged(path, m))     # 0-d: a Python scalar


def stored_float(arrays, key, path, default=None, nan=False):
    """A checkpoint's 0-d number ``key`` (inf allowed; NaN only when ``nan``)."""
    v = arrays.get(key)
    if v is None:
        if default is None:
            raise damaged(path, f"{key} is missing")
        return default
    if v.shape != () or v.dtype.kind not in "iuf" or (np.isnan(v) and not nan):
        raise damaged(path, f"{key} must be a number, got {shown(v.tolist())}")
    return float(v)


def stored_json(arrays, key, path, kind, default=None):
    """A checkpoint's JSON text ``key``, decoded to a ``kind`` (list or dict); ``default`` when absent or ''."""
    v = arrays.get(key)
    if v is None or (v.shape == () and v.dtype.kind == "U" and str(v) == "" and default is not None):
        if default is None:
            raise damaged(path, f"{key} is missing")
        return default
    if v.shape != () or v.dtype.kind != "U":
        raise damaged(path, f"{key} must be JSON text")
    try:
        out = json.loads(str(v))
    except (ValueError, RecursionError):
        raise damaged(path, f"{key} is not valid JSON") from None
    if not isinstance(out, kind):
        raise damaged(path, f"{key} must be a JSON {'list' if kind is list else 'object'}, got "
                            f"{type(out).__name__}")
    return out


def read_checkpoint(path):
    """The :class:`TrainCheckpoint` in ``path``, every array checked against the module's table and
    against the stored config (so a file that is not self-consistent is refused, whatever run reads it);
    a CheckpointError naming the file and the array otherwise.  Whether it is *this* run's checkpoint
    (config, seed, data) is the trainer's question."""
    a = load_arrays(path)
    if "format" not in a or str(a["format"]) != TRAIN_FORMAT:
        raise CheckpointError(f"{path}: not a minisiamese training checkpoint")
    try:
        config = ExperimentConfig.from_dict(json.loads(str(a["config"])), source=f"{path}: config")
    except (ConfigError, ValueError, RecursionError, KeyError) as exc:   # ValueError: bad JSON, a long number
        raise CheckpointError(f"{path}: bad stored config ({exc})") from None
    seed = stored_int(a, "seed", path, 0, MAX_SEED)
    data, faces_digest = _stored_data(a, path)
    # the algorithm of each conv layer ("conv_plan" in checkpoints written before it was renamed)
    key = next((k for k in ("conv_algos", "conv_plan") if k in a), None)
    algos = stored_json(a, key, path, list) if key else None
    if algos is not None and (len(algos) != len(config.model.conv_filters)
                              or not all(isinstance(x, str) and x in RESOLVED_ALGOS for x in algos)):
        raise damaged(path, f"{key} must name one of {list(RESOLVED_ALGOS)} per conv layer, got {shown(algos)}")
    params = {k[len("param/"):]: v for k, v in a.items() if k.startswith("param/")}
    check_params(path, config.model, params)
    optimizer = _stored_optimizer(a, path, config.model.param_shapes())
    return TrainCheckpoint(config=config, seed=seed, state=_stored_state(a, path), params=params,
                           optimizer=optimizer, normalizer=Normalizer.from_extra(a, source=path),
                           conv_algos=algos, data=data, faces_digest=faces_digest)


def _stored_data(a, path):
    """(data, faces_digest) of a checkpoint: which pairs files (None: not recorded) and images it trained on."""
    data = stored_json(a, "data", path, dict) if "data" in a else None
    if data is not None and not all(isinstance(v, str) for v in data.values()):
        raise damaged(path, "data must map each pairs file to its SHA-256 text")
    faces = a.get("faces_digest", np.array(""))
    if faces.shape != () or faces.dtype.kind != "U" or not re.fullmatch(r"(|[0-9a-f]{64})", str(faces)):
        raise damaged(path, "faces_digest must be a SHA-256 in hex")
    return data, str(faces)


def _stored_optimizer(a, path, shapes):
    """Adam's state: its step count, learning-rate scale and, once it has taken a step, both moments of
    every trained parameter (``shapes``: name -> shape; batch norm's running statistics have none)."""
    state = {k[len("opt/"):]: v for k, v in a.items() if k.startswith("opt/")}
    t = stored_int(a, "opt/t", path, 0, MAX_COUNT)
    require_number("opt/lr_scale", stored_float(a, "opt/lr_scale", path), 0, 1,   # 0: a steep decay underflowed
                   error=lambda m: damaged(path, m))
    for moment in ("m", "v"):
        names = {k[2:] for k in state if k.startswith(f"{moment}/")}
        if names != (set(shapes) if t else set()):
            raise damaged(path, f"opt/{moment}/ must hold one array per parameter after step {t}")
        for name in names:
            m = state[f"{moment}/{name}"]
            if m.shape != shapes[name] or m.dtype.kind != "f" or not np.isfinite(m).all() \
                    or (moment == "v" and (m < 0).any()):
                raise damaged(path, f"opt/{moment}/{name} must be finite floating point of shape {shapes[name]}")
    return state


def _stored_state(a, path):
    """The checkpoint's :class:`TrainState`."""
    epoch = stored_int(a, "epoch", path, -1, MAX_EPOCHS)
    history = stored_json(a, "history", path, list)
    if len(history) != epoch + 1 or not all(isinstance(h, dict) and "loss" in h for h in history):
        raise damaged(path, f"history must hold one record of numbers per finished epoch ({epoch + 1})")
    check_history(history, lambda m: damaged(path, m))
    state = TrainState(history=history, best_val=stored_float(a, "best_val", path),
                       best_epoch=stored_int(a, "best_epoch", path, -1, epoch),
                       wait=stored_int(a, "wait", path, 0, MAX_EPOCHS))
    ref = stored_float(a, "reference_loss", path, default=float("nan"), nan=True)
    state.reference_loss = None if np.isnan(ref) else ref
    state.partial = stored_json(a, "partial", path, dict, default={}) or None
    if state.partial:
        check_partial(state.partial, epoch, path)
    return state


def check_partial(p, epoch, path):
    """Where an interrupted epoch stopped: ``epoch`` (the one after the last finished one), ``step``,
    ``correct`` and ``seen`` (its running counts), ``loss`` (the running sum) and ``seconds`` (finite
    numbers >= 0), ``aug_rng`` and ``dropout_rng`` (the two generators' states, :func:`rng_state`)."""
    error = lambda m: damaged(path, m)                                                  # noqa: E731
    ints = {"epoch": (epoch + 1, epoch + 1), "step": (0, MAX_COUNT), "correct": (0, MAX_COUNT),
            "seen": (0, MAX_COUNT)}
    for key, (lo, hi) in ints.items():
        require_int(f"partial.{key}", p.get(key), lo, hi, error=error)
    for key in ("loss", "seconds"):
        require_number(f"partial.{key}", p.get(key), 0, what="a number ", error=error)
    for key in ("aug_rng", "dropout_rng"):
        text = p.get(key)
        try:
            if not isinstance(text, str):
                raise TypeError
            set_rng_state(np.random.default_rng(), text)           # on a throwaway generator
        except (TypeError, ValueError, KeyError, RecursionError):
            raise damaged(path, f"partial.{key} is not a NumPy generator's state") from None


def checkpoint_progress(path):
    """Where the training checkpoint ``path`` stopped, in words ('stopped at epoch 3, step 12'), for a
    refusal's message: read without the full check, which the resume itself makes."""
    try:
        a = load_arrays(path, names=("epoch", "partial"))
        partial = json.loads(str(a["partial"])) if str(a.get("partial", "")) else None
        if partial:
            return f"stopped at epoch {partial['epoch'] + 1}, step {partial['step'] + 1}"
        return f"stopped after epoch {int(a['epoch']) + 1}"
    except (CheckpointError, KeyError, TypeError, ValueError):
        return "with a checkpoint that cannot be read"


# ----------------------------------------------------------------------------- config.json
def write_config(path, config):
    """config.json: the run's :class:`~minisiamese.runconfig.ExperimentConfig` as its JSON (sorted keys,
    indent 1), atomically; :meth:`ExperimentConfig.from_file` reads it back, checked."""
    write_text(path, config.to_json())


# ----------------------------------------------------------------------------- history.json
def check_history(history, error):
    """``history`` as the module's history.json format says (a list of records, each record's ``epoch``
    its place + 1, every value a finite number, fractions in [0, 1], losses, ``lr`` and ``seconds``
    >= 0); else ``error(message)`` raised.  Returns ``history``."""
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise error("history must be a list of objects of numbers")
    for i, record in enumerate(history):
        for key, v in record.items():
            if key in HISTORY_FRACTIONS or key in HISTORY_NONNEGATIVE:
                require_number(f"history[{i}].{key}", v, 0, 1 if key in HISTORY_FRACTIONS else None,
                               what="a number ", error=error)
            elif not (is_number(v) and math.isfinite(v)):
                raise error(f"history[{i}].{key} must be a finite number, got {shown(v)}")
        if "epoch" in record and record["epoch"] != i + 1:
            raise error(f"history[{i}].epoch must be {i + 1}, got {shown(record['epoch'])}")
    return history


def write_history(path, history):
    """history.json, atomically."""
    write_json(path, history)


def read_history(path):
    """A history.json read and checked (:func:`check_history`); a DataError naming it otherwise, also
    when it is no regular file (a named pipe is never read)."""
    try:
        with open_regular(path, note="; a history is a regular file") as f:
            history = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:                # ValueError: bad JSON or UTF-8
        raise DataError(f"{path}: cannot read the training history ({str(exc)[:200]})") from None
    return check_history(history, lambda m: DataError(f"{path}: damaged training history ({m[:300]}); restore "
                                                      f"it (git checkout, for a kept copy) or delete it"))


# ----------------------------------------------------------------------------- results.json
FRACTIONS = ("accuracy", "oneshot", "recall", "precision", "auc")       # a results file's figures in [0, 1]
CALIBRATION_FRACTIONS = ("ece", "brier", "accuracy_at_half", "accuracy_at_threshold")
# Omniglot's final figures (minisiamese.evaluate.evaluate_omniglot): part -> (fractions, standard errors
# (None: one run only), counts >= 1)
OMNIGLOT_PARTS = {"lake20": (("accuracy",), ("se", "se_binomial"), ("trials", "runs", "way")),
                  "within20": (("accuracy",), ("se",), ("trials", "way")),
                  "verification": (("accuracy", "accuracy_at_threshold", "auc"),
                                   ("accuracy_se", "accuracy_at_threshold_se", "auc_se"), ("pairs",))}


def write_results(run_dir, res):
    """``run_dir``/results.json, atomically: its presence is what marks a run (or an evaluation) finished."""
    write_json(os.path.join(run_dir, RESULT_FILE), res)


def check_results(res, path, seed=None):
    """A results.json (or its kept copy under docs/results/) holds what the report reads from it, of the
    right types, every accuracy and AUC a number in [0, 1] (NaN is none), and the seed its file's name
    says (``seed``: for NAME-sSEED; a result may omit its seed); else a DataError naming the file and the
    field.  Returns ``res``.

    Every run's results hold ``wall_seconds``, ``epochs_run`` and ``best_epoch`` (numbers) and may hold
    ``seed``, ``val`` (the validation figures: ``accuracy``, ``auc``, ...), ``history`` (history.json's
    records), ``conv_plan`` (a list of {layer, algo}) and the texts ``device``, ``protocol``, ``warning``
    and ``dataset``.  LFW-a's test figures: ``accuracy``, ``oneshot``, ``recall``, ``precision``, ``auc``
    (in [0, 1]) and ``parameters``, with ``tuned``, ``test_probs``, ``test_labels``, the calibration figures
    (``ece``, ``brier``, ``accuracy_at_half``, ``accuracy_at_threshold``, in [0, 1]; also under
    ``before_calibration``) and ``view2`` (folds, ``leak_free``).  Omniglot's (``dataset`` "omniglot"):
    ``lake20``, ``within20`` and ``verification`` (:data:`OMNIGLOT_PARTS`: accuracies and AUC in [0, 1],
    standard errors in [0, 1] or None, counts >= 1; ``lake20.per_run`` each run's accuracy;
    ``verification.threshold`` a probability) and ``input_size``."""
    def bad(what):
        return DataError(f"{path}: damaged results ({what[:300]}); restore it (git checkout, for a kept copy) or "
                         f"delete it to run again")

    def fraction(name, v):
        require_number(name, v, 0, 1, what="a number ", error=bad)
    if not isinstance(res, dict):
        raise bad(f"expected a JSON object, got {type(res).__name__}")
    needed = ("wall_seconds", "epochs_run", "best_epoch") + (
        ("accuracy", "oneshot", "recall", "precision", "auc", "parameters") if "accuracy" in res else ())
    for key in needed:
        if not is_number(res.get(key)):
            raise bad(f"{key} must be a number, got {shown(res.get(key))}")
    for key, parts in (("tuned", ("threshold", "accuracy", "precision", "recall")), ("val", ("accuracy", "auc"))):
        if key in res and not (isinstance(res[key], dict) and all(is_number(res[key].get(k)) for k in parts)):
            raise bad(f"{key} must be an object of numbers {list(parts)}")
    for key in FRACTIONS:
        if key in needed:
            fraction(key, res[key])
    for key in ("tuned", "val"):
        for k in ("accuracy", "precision", "recall", "auc", "oneshot"):
            if k in res.get(key, {}):
                fraction(f"{key}.{k}", res[key][k])
    if "seed" in res:
        require_int("seed", res["seed"], 0, MAX_SEED,
                    error=lambda m: bad(f"seed {shown(res['seed'])} is not an integer in [0, {MAX_SEED}]"))
        if seed is not None and res["seed"] != seed:
            raise bad(f"its name says seed {seed}, its seed field {res['seed']}: a copy of another seed's results?")
    _check_view2(res, fraction, bad)
    _check_omniglot(res, fraction, bad)
    for key in ("history", "test_probs", "test_labels", "conv_plan"):
        if key in res and not isinstance(res[key], list):
            raise bad(f"{key} must be a list")
    check_history(res.get("history", []), bad)
    for key in ("test_probs", "test_labels"):
        if not all(is_number(x) for x in res.get(key, [])):
            raise bad(f"{key} must be a list of numbers")
    if not all(isinstance(c, dict) and isinstance(c.get("layer"), str) and isinstance(c.get("algo"), str)
               for c in res.get("conv_plan", [])):
        raise bad("conv_plan must be a list of {layer, algo}")
    for key in ("device", "protocol", "warning", "dataset"):
        if key in res and not isinstance(res[key], str):
            raise bad(f"{key} must be text")
    return res


def _check_view2(res, fraction, bad):
    """LFW-a's View 2 figures (``view2`` and ``view2.leak_free``: folds, means; None where a subset has
    no pair or one class only) and the calibration figures of the test pairs and of View 2."""
    if "view2" in res:
        v = res["view2"]
        for part in (v, v.get("leak_free") if isinstance(v, dict) else None):
            folds = part.get("folds") if isinstance(part, dict) else None
            if not (isinstance(folds, list) and is_number(part.get("accuracy_mean"), True)
                    and is_number(part.get("auc_mean"), True) and is_number(part.get("pairs"))
                    and (folds or part.get("pairs") == 0)
                    and all(isinstance(f, dict) and is_number(f.get("accuracy"), True) and is_number(f.get("auc"), True)
                            for f in folds)):
                raise bad("view2 and view2.leak_free must each hold accuracy_mean, auc_mean, pairs and per-fold "
                          "accuracy and auc")
            for k in ("accuracy_mean", "auc_mean"):
                if part[k] is not None:
                    fraction(f"view2 {k}", part[k])
            for f in folds:
                for k in ("accuracy", "auc"):
                    if f[k] is not None:
                        fraction(f"view2 fold {k}", f[k])
    parts = [res] + ([res["view2"], res["view2"].get("leak_free")] if isinstance(res.get("view2"), dict) else [])
    for part in parts:
        for where in (part, part.get("before_calibration") if isinstance(part, dict) else None):
            if where is None:
                continue
            if not isinstance(where, dict):
                raise bad("before_calibration must be an object of numbers")
            for key in CALIBRATION_FRACTIONS:
                if key in where:
                    fraction(key, where[key])


def _check_omniglot(res, fraction, bad):
    """Omniglot's final figures (:data:`OMNIGLOT_PARTS`), which a finished Omniglot run's results hold."""
    final = res.get("dataset") == "omniglot" and "accuracy" not in res      # not evaluate --validation's
    for name, (fractions, errors, counts) in OMNIGLOT_PARTS.items():
        part = res.get(name)
        if part is None and not final:
            continue
        if not isinstance(part, dict):
            raise bad(f"{name} must be an object (Omniglot's final figures)")
        for key in fractions:
            fraction(f"{name}.{key}", part.get(key))
        for key in errors:
            if part.get(key) is not None or key != "se":          # one run alone has no SE over runs
                fraction(f"{name}.{key}", part.get(key))
        for key in counts:
            require_int(f"{name}.{key}", part.get(key), 1, error=bad)
    per_run = res.get("lake20", {}).get("per_run", {})
    if not isinstance(per_run, dict):
        raise bad("lake20.per_run must map each run to its accuracy")
    for run, v in per_run.items():
        fraction(f"lake20.per_run.{run}", v)
    if "verification" in res:
        check_threshold("verification.threshold", res["verification"].get("threshold"), bad)
    if "input_size" in res:
        require_int("input_size", res["input_size"], 1, error=bad)


def read_results(path, runs_only=False, seed=None):
    """A results.json read and checked (:func:`check_results`; ``seed``: the one its name says); a
    DataError naming it otherwise, also when it is no regular file (a named pipe is never read).  With
    ``runs_only``, the results of something other than a training run (``evaluate --out`` writes no
    ``epochs_run``) give None."""
    try:
        with open_regular(path, note="; results are regular files") as f:
            res = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:                # ValueError: bad JSON or UTF-8
        raise DataError(f"{path}: cannot read the results ({str(exc)[:200]}); restore it (git checkout, for a "
                        f"kept copy) or delete it to run again") from None
    if runs_only and isinstance(res, dict) and "epochs_run" not in res:
        return None
    return check_results(res, path, seed)


def kept_copy(run_dir, runs_only=False, seed=None):
    """The kept copy of the finished run in ``run_dir`` (what :func:`write_kept` writes): its results.json
    read and checked (``seed``: the one the run's name says), with its history.json, when there is one, as
    ``history`` and without ``model`` (a path on the machine that ran it); with ``runs_only``, None for a
    folder that holds no training run's results (``evaluate --out`` there)."""
    res = read_results(os.path.join(run_dir, RESULT_FILE), runs_only, seed)
    if res is None:
        return None
    history = os.path.join(run_dir, HISTORY_FILE)
    if os.path.lexists(history):
        res["history"] = read_history(history)
    res.pop("model", None)
    return res


def write_kept(path, res):
    """A kept copy (docs/results/NAME.json, docs/results/seeds/NAME-sSEED.json, ...: :func:`kept_copy`),
    atomically: the results.json format with the history, as JSON with sorted keys, indent 1 and a final
    newline, so that a kept copy written again from the same run is the same file in git.
    :func:`read_results` reads it back."""
    write_text(path, json.dumps(res, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- the folder's rules
def check_folder(path, what):
    """A TrainingError before the first step when the folder ``path`` (``what``: "run folder", ...)
    cannot be created or written in."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        why = ("it is a file, not a folder" if os.path.isfile(path) else
               "a part of the path is a file, not a folder" if exc.errno == errno.ENOTDIR else
               exc.strerror or str(exc))
        raise TrainingError(f"{path}: cannot write the {what} there ({why})") from None


def refuse_used_folder(out_dir, resume=False):
    """Never start over silently where a run's work is: a finished run, or one stopped with a checkpoint.
    ``resume``: --resume was given, but there is no checkpoint.npz to continue from."""
    held = [name for name in (RESULT_FILE, MODEL_FILE) if os.path.exists(os.path.join(out_dir, name))]
    checkpoint = os.path.join(out_dir, CHECKPOINT_FILE)
    if held:
        what = f"a finished run ({', '.join(held)})"
    elif os.path.exists(checkpoint):
        what = f"a run {checkpoint_progress(checkpoint)} ({checkpoint})"
    else:
        return
    if resume:
        raise TrainingError(f"{out_dir} holds {what} but no checkpoint.npz to resume from; choose another "
                            f"--out, or pass --overwrite to start over")
    raise TrainingError(f"{out_dir} holds {what}; continue it with --resume, choose another --out, "
                        f"or pass --overwrite to start over")


def remove_run(out_dir):
    """Remove what a run wrote in ``out_dir`` (:data:`RUN_FILES`), to start over; returns the paths removed."""
    old = [path for path in (os.path.join(out_dir, name) for name in RUN_FILES) if os.path.exists(path)]
    for path in old:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return old


def refuse_run_folder(out_dir):
    """An evaluation writes results.json and figures/ into ``out_dir``: refuse a training run's folder,
    whose results.json (config, seed, history, test figures) it would replace."""
    if out_dir and any(os.path.exists(os.path.join(out_dir, f)) for f in (MODEL_FILE, CHECKPOINT_FILE)):
        raise DataError(f"--out {out_dir}: holds a training run (model.npz or checkpoint.npz); an evaluation "
                        "there would replace the run's results.json and figures; give another folder")


def not_a_model(path):
    """Why ``path`` is no weights file, when it is something a user mistakes for one (a run folder, a
    training checkpoint); else None."""
    if os.path.exists(path) and not os.path.isfile(path):
        inside = os.path.join(path, MODEL_FILE)
        return (f"{path}: a {'folder' if os.path.isdir(path) else 'special file'}, not a weights file"
                + (f"; use {inside}" if os.path.isfile(inside) else ""))
    try:
        tag = str(load_arrays(path, names=("format",)).get("format", ""))
    except CheckpointError:
        return None
    if tag == TRAIN_FORMAT:
        return f"{path}: is a training state (checkpoint.npz); use the model.npz beside it"
    return None
