"""The weights file (model.npz): weights, config and extra arrays written
atomically, read with ``allow_pickle=False`` and validated, so a wrong or
damaged file becomes one clear error naming it.  The network itself is built
from it by :func:`minisiamese.model.load_model`."""
import json

import numpy as np

from .calibration import check_platt
from .config import ModelConfig
from .errors import CheckpointError, ConfigError, require_int, shown
from .fileio import load_arrays, save_arrays

FORMAT = "minisiamese-weights-1"           # model.npz, best.npz
TRAIN_FORMAT = "minisiamese-train-1"       # checkpoint.npz: the whole training state (minisiamese.train)


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


# ----------------------------------------------------------------------------- the training checkpoint
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
