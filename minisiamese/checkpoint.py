"""Saving and loading weights: atomic writes, ``allow_pickle=False`` reads, and
validation that turns a wrong or damaged file into one clear error naming it."""
import json
import os
import tempfile
import zipfile

import numpy as np

from .backend import to_numpy
from .config import ConfigError, ModelConfig

FORMAT = "minisiamese-weights-1"


class CheckpointError(ValueError):
    """A weights/checkpoint file is missing, damaged or for another model."""


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then
    rename it over ``path``: a crash leaves either the old file or the new one,
    never half of one.  Errors (a full disk, say) leave the old file untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_arrays(path, arrays):
    """Write a dict of arrays (NumPy or CuPy) as an uncompressed .npz, atomically."""
    host = {k: to_numpy(v) for k, v in arrays.items()}
    for k, v in host.items():
        if v.dtype == object:
            raise TypeError(f"refusing to save object array {k!r}")
    atomic_write(path, lambda f: np.savez(f, **host))


def load_arrays(path):
    """Read every array of an .npz with allow_pickle=False into memory."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def save_model(path, net, extra=None):
    """Weights + config (+ optional extra arrays, e.g. normalisation stats)."""
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
    except (KeyError, json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: bad stored config ({exc})") from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    expected = config.param_shapes()
    for name, shape in expected.items():
        if name not in params:
            raise CheckpointError(f"{path}: parameter {name} is missing")
        if params[name].shape != shape:
            raise CheckpointError(f"{path}: parameter {name} has shape {params[name].shape}, "
                                  f"its config needs {shape}")
        if params[name].dtype.kind != "f" or not np.isfinite(params[name]).all():
            raise CheckpointError(f"{path}: parameter {name} is not finite floating point")
    unexpected = sorted(set(params) - set(expected))
    if unexpected:
        raise CheckpointError(f"{path}: unexpected parameters {unexpected}")
    extra = {k[len("extra/"):]: v for k, v in arrays.items() if k.startswith("extra/")}
    return config, params, extra


def load_model(path, backend="cpu", dtype=np.float32):
    """A SiameseNet with the weights and config stored in ``path``."""
    from .model import SiameseNet
    config, params, _ = read_model_file(path)
    net = SiameseNet(config, backend=backend, dtype=dtype)
    net.load_state_dict(params, source=os.fspath(path))
    return net
