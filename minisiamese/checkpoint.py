"""The weights file (model.npz): weights, config and extra arrays written
atomically, read with ``allow_pickle=False`` and validated, so a wrong or
damaged file becomes one clear error naming it.  The network itself is built
from it by :func:`minisiamese.model.load_model`."""
import json

import numpy as np

from .calibration import check_platt
from .config import ModelConfig
from .errors import CheckpointError, ConfigError, require_number, shown
from .fileio import load_arrays, save_arrays

FORMAT = "minisiamese-weights-1"           # model.npz, best.npz (a run's other files: minisiamese.runfiles)
THRESHOLD_SLACK = 1e-3                     # how far outside [0, 1] a stored decision threshold may lie


def save_model(path, net, extra=None):
    """Weights + config (+ optional extra arrays, e.g. normalisation stats).
    ``param/NAME`` holds every array of the network's state dict: the trained
    parameters and, with batch norm, its running statistics;
    ``extra/calibration`` the net's calibration [a, c] when it has one."""
    arrays = {"format": np.array(FORMAT), "config": np.array(net.config.to_json())}
    arrays.update({f"param/{k}": v for k, v in net.state_dict().items()})
    if getattr(net, "calibration", None) is not None:                      # [a, c] (minisiamese.calibration)
        arrays["extra/calibration"] = np.asarray(net.calibration, dtype=np.float64)
    for k, v in (extra or {}).items():
        arrays[f"extra/{k}"] = v
    save_arrays(path, arrays)


def read_model_file(path):
    """(config, params, extra) from a file written by :func:`save_model`, validated."""
    arrays = load_arrays(path)
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise CheckpointError(f"{path}: not a minisiamese weights file (format tag missing or wrong)")
    try:
        config = ModelConfig.from_dict(json.loads(str(arrays["config"])), source=f"{path}: config")
    except (KeyError, ValueError, RecursionError, ConfigError) as exc:   # ValueError: bad JSON, a too-long number
        raise CheckpointError(f"{path}: bad stored config ({exc})") from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    check_params(path, config, params)
    extra = {k[len("extra/"):]: v for k, v in arrays.items() if k.startswith("extra/")}
    if "calibration" in extra:
        try:
            extra["calibration"] = check_platt(extra["calibration"], path)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    return config, params, extra


def trained_dataset(path):
    """The data set ("lfw-a" or "omniglot") the run that wrote the weights file ``path`` trained on, from
    the experiment config a run stores in its model.npz (``extra/experiment``, the ExperimentConfig's JSON;
    no "dataset" in it: "lfw-a"), read alone and unchecked; None when the file cannot be read or holds none
    (the evaluation's full read, :func:`read_model_file`, then names what is wrong)."""
    try:
        stored = load_arrays(path, names=["extra/experiment"]).get("extra/experiment")
        return json.loads(str(stored)).get("dataset", "lfw-a") if stored is not None else None
    except (CheckpointError, ValueError, AttributeError, RecursionError):
        return None


def check_params(path, config, params):
    """``params`` (name -> array) must be exactly what ``config``'s network
    holds -- its parameters and batch norm's running statistics -- each of its
    shape, finite floating point; else a CheckpointError naming ``path`` and
    the array."""
    expected = config.state_shapes()
    for name, shape in expected.items():
        if name not in params:
            raise CheckpointError(f"{path}: parameter {name} is missing")
        if params[name].shape != shape:
            raise CheckpointError(f"{path}: parameter {name} has shape {params[name].shape}, "
                                  f"its config needs {shape}")
        if params[name].dtype.kind != "f" or not np.isfinite(params[name]).all():
            raise CheckpointError(f"{path}: parameter {name} is not finite floating point")
        if name.endswith(".var") and (params[name] < 0).any():
            raise CheckpointError(f"{path}: {name}, a running variance, has negative values")
    unexpected = sorted(set(params) - set(expected))
    if unexpected:
        raise CheckpointError(f"{path}: unexpected parameters {unexpected}")


def check_threshold(name, value, error):
    """``value`` when it is a decision threshold: a probability in [0, 1] -- or a hair outside it, up to
    :data:`THRESHOLD_SLACK`, where ``metrics.best_threshold`` may place it (below the lowest or above the
    highest probability); else ``error("NAME must be a probability in [0, 1], got VALUE")`` raised."""
    return require_number(name, value, -THRESHOLD_SLACK, 1 + THRESHOLD_SLACK,
                          error=lambda _: error(f"{name} must be a probability in [0, 1], got {shown(value):.80}"))
