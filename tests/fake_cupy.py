"""A stand-in for CuPy, for running the GPU code path on the CPU in tests.

Arrays are a NumPy subclass whose type claims to live in ``cupy`` (so
``backend.get_array_module`` sends them down the GPU branches), the array
functions are NumPy's, and ``RawModule`` runs kernels/*.cu compiled for the
host by tests/kernel_shim.  It checks the Python side of the GPU path --
dispatch, argument types and order, grid sizes, contiguity, dtypes -- which
the shim tests of the kernels alone do not.  Timing and real device behaviour
still need a GPU.
"""
import ctypes
import types

import numpy as np


class ndarray(np.ndarray):
    def get(self):
        return np.array(self, copy=True).view(np.ndarray)


ndarray.__module__ = "cupy._core.core"


def _wrap(value):
    if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
        return value.view(ndarray)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _host(value):
    return value.view(np.ndarray) if isinstance(value, ndarray) else value


class _Generator:
    def __init__(self, seed):
        self._g = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return _wrap(self._g.random(size, dtype=dtype))


class _Kernel:
    def __init__(self, lib, name):
        self.fn = getattr(lib, f"shim_{name}")
        self.name = name

    def __call__(self, grid, block, args):
        assert isinstance(grid, tuple) and isinstance(block, tuple) and isinstance(args, tuple), self.name
        conv = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, f"{self.name}: non-contiguous array argument"
                conv.append(a.ctypes.data_as(ctypes.c_void_p))
            elif isinstance(a, np.int32):
                conv.append(ctypes.c_int(int(a)))
            elif isinstance(a, np.int64):
                conv.append(ctypes.c_longlong(int(a)))
            elif isinstance(a, np.float32):
                conv.append(ctypes.c_float(float(a)))
            elif isinstance(a, np.float64):
                conv.append(ctypes.c_double(float(a)))
            else:
                raise TypeError(f"{self.name}: argument of type {type(a).__name__} would not reach a CUDA kernel")
        self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *conv)


def make(shim_lib):
    """A module object that imports as ``cupy``."""
    mod = types.ModuleType("cupy")
    mod.__version__ = "fake"
    mod.ndarray = ndarray

    def forward(name, namespace=np):
        fn = getattr(namespace, name)
        return lambda *a, **k: _wrap(fn(*[_host(x) if not isinstance(x, (list, tuple)) else
                                         type(x)(_host(y) for y in x) for x in a],
                                       **{kk: _host(v) for kk, v in k.items()}))

    for name in ("empty", "zeros", "empty_like", "zeros_like", "ascontiguousarray", "concatenate", "maximum",
                 "exp", "abs", "where", "sign", "log1p", "log", "sqrt", "clip", "isfinite", "sum", "arange",
                 "full", "ones", "conj", "pad"):
        setattr(mod, name, forward(name))
    for name in ("uint8", "float32", "float64", "int32", "int64"):
        setattr(mod, name, getattr(np, name))

    def asarray(a, dtype=None):
        return np.array(_host(a), dtype=dtype, copy=True).view(ndarray)

    def matmul(a, b, out=None):
        if out is None:
            return _wrap(np.matmul(a, b))
        np.matmul(_host(a), _host(b), out=_host(out))
        return out

    def copyto(dst, src, where=True):
        np.copyto(_host(dst), _host(src), where=_host(where))

    mod.asarray, mod.matmul, mod.copyto = asarray, matmul, copyto
    mod.random = types.SimpleNamespace(default_rng=_Generator)
    mod.fft = types.SimpleNamespace(**{name: forward(name, np.fft) for name in ("rfft2", "irfft2", "ifft", "irfft")})
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                     Stream=types.SimpleNamespace(null=types.SimpleNamespace(synchronize=lambda: None)))
    mod.RawModule = lambda code, options=(): types.SimpleNamespace(
        get_function=lambda name: _Kernel(shim_lib, name), code=code, options=options)
    return mod
