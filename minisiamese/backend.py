"""One switch between NumPy (CPU) and CuPy (GPU).

Ops never import a backend themselves: they ask the array they were given
(:func:`get_array_module`), so the same code runs on both.  Only code that
*creates* arrays from nothing (model initialisation, the optimizer state) needs
the module chosen here by name.
"""
import numpy as np

from .errors import BackendError

DEVICES = ("cpu", "gpu", "auto")


def _cupy_or_reason():
    """Return (cupy, None) when a usable CUDA device exists, else (None, reason)."""
    try:
        import cupy  # noqa: F401  (optional dependency)
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return None, f"CuPy is not importable ({type(exc).__name__}: {exc}); install it with pip install -e '.[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy found no usable CUDA runtime ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "CuPy is installed but no CUDA device is visible"
    return cupy, None


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return _cupy_or_reason()[0] is not None


def get_backend(device="auto"):
    """Return the array module for ``device``: ``"cpu"`` -> numpy, ``"gpu"`` -> cupy.

    ``"auto"`` picks the GPU when one is usable and the CPU otherwise.  Asking for
    ``"gpu"`` where there is none raises :class:`BackendError` with the reason.
    """
    if isinstance(device, str):
        name = device.lower()
    else:  # an array module passed straight through
        if device is np or getattr(device, "__name__", "") == "cupy":
            return device
        raise BackendError(f"unknown device {device!r}; expected one of {DEVICES}")
    if name == "cpu":
        return np
    if name not in DEVICES:
        raise BackendError(f"unknown device {device!r}; expected one of {DEVICES}")
    cupy, reason = _cupy_or_reason()
    if cupy is not None:
        return cupy
    if name == "auto":
        return np
    raise BackendError(f"--device gpu was asked for, but {reason}")


def get_array_module(x):
    """numpy or cupy, whichever ``x`` belongs to (NumPy for anything else)."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy
        return cupy
    return np


def to_numpy(x):
    """A NumPy copy (or view) of ``x`` wherever it lives."""
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def device_name(xp):
    return "gpu" if xp.__name__ == "cupy" else "cpu"


def tune_cpu_allocator():
    """Keep freed memory in the process for reuse instead of returning it to the OS.

    Every training step allocates and frees arrays of hundreds of MB (conv1's
    output alone is 604 MB at batch 256).  glibc serves such blocks with fresh
    mmap()s, so each step pays for page faults on gigabytes of new pages -- on
    the 2-core machines we measured, about 1 s of a 14 s step.  With mmap turned
    off for large blocks and trimming disabled, freed blocks are reused.  The
    process keeps its peak footprint (peak RSS is unchanged in practice).

    Call once at program start (the CLI and the benchmarks do).  A no-op off
    glibc.  Returns True when the setting took effect.
    """
    import ctypes
    import ctypes.util
    import platform
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
