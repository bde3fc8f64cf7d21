"""Durable files: atomic writes, ``.npz`` arrays read without pickle, and the
cache folder.  The ground floor of the library: of it, only :mod:`backend`.

Everything the library writes -- weights, training checkpoints, results,
figures, caches -- goes through :func:`atomic_write`, so a crash, a full disk or
Ctrl-C leaves either the old file or the new one, never half of one.
"""
import json
import os
import re
import tempfile
import zipfile

import numpy as np

from .backend import to_numpy
from .errors import CheckpointError

CACHE_ENV = "MINISIAMESE_CACHE"


def cache_root():
    """The cache folder: ``$MINISIAMESE_CACHE`` when set and not empty, else
    ``~/.cache/minisiamese``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "minisiamese")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_leftovers(directory, names):
    """Remove the temporary files that an :func:`atomic_write` of one of
    ``names`` (file names in ``directory``) left when it was killed mid-way
    (SIGKILL, a power cut): ``.tmp-`` + mkstemp's 8 characters + the name.
    Only call it while holding the folder's run lock, so no live write of those
    files owns them.  Returns the names removed."""
    pattern = re.compile(r"\.tmp-[a-z0-9_]{8}(" + "|".join(map(re.escape, names)) + ")")
    found = [n for n in os.listdir(directory) if pattern.fullmatch(n)
             and os.path.isfile(os.path.join(directory, n))] if os.path.isdir(directory) else []
    for name in found:
        os.remove(os.path.join(directory, name))
    return sorted(found)


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then
    rename it over ``path``: a crash leaves either the old file or the new one,
    never half of one.  Errors (a full disk, say) leave the old file untouched.
    The file gets the permissions a plain ``open(path, "w")`` would give it
    (0666 less the umask), not the temporary file's private 0600."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
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


def write_text(path, text):
    """:func:`atomic_write` of a UTF-8 string."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path, obj, **dumps):
    """:func:`atomic_write` of ``obj`` as JSON (``dumps``: json.dumps options, indent 1 by default)."""
    write_text(path, json.dumps(obj, **{"indent": 1, **dumps}))


def save_arrays(path, arrays, compressed=False):
    """Write a dict of arrays (NumPy or CuPy) as an .npz, atomically: uncompressed, or with ``compressed``
    deflated (``np.savez_compressed``)."""
    host = {k: to_numpy(v) for k, v in arrays.items()}
    for k, v in host.items():
        if v.dtype == object:
            raise TypeError(f"refusing to save object array {k!r}")
    save = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda f: save(f, **host))


def load_arrays(path, names=None):
    """Read the arrays of an .npz with allow_pickle=False into memory: every
    one, or only those of ``names`` that it holds (the rest are not read)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: " + ("not a regular file (a folder, pipe or device)" if os.path.exists(path)
                                             else "no such file"))
    if not zipfile.is_zipfile(path):          # else np.load would try to unpickle it and say so
        raise CheckpointError(f"{path}: not a readable .npz file (not a zip archive, so no .npz)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files if names is None or k in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
