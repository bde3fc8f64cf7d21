"""The weights file (model.npz): weights, config and extra arrays written
atomically, read with ``allow_pickle=False`` and validated, so a wrong or
damaged file becomes one clear error naming it.  The network itself is built
from it by :func:`minisiamese.model.load_model`."""
import json

import numpy as np

from .config import ConfigError, ModelConfig
from .fileio import CheckpointError, load_arrays, save_arrays

FORMAT = "minisiamese-weights-1"           # model.npz, best.npz
TRAIN_FORMAT = "minisiamese-train-1"       # checkpoint.npz: the whole training state (minisiamese.train)


def save_model(path, net, extra=None):
    """Weights + config (+ optional extra arrays, e.g. normalisation stats).
    ``param/NAME`` holds every array of the network's state dict: the trained
    parameters and, with batch norm, its running statistics."""
    arrays = {"format": np.array(FORMAT), "config": np.array(net.config.to_json())}
    arrays.update({f"param/{k}": v for k, v in net.state_dict().items()})
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
    expected = config.state_shapes()                  # parameters and batch norm's running statistics
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
    extra = {k[len("extra/"):]: v for k, v in arrays.items() if k.startswith("extra/")}
    return config, params, extra
