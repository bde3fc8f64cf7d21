"""Shared fixtures: every backend test runs on NumPy, and on CuPy where a GPU exists."""
import os
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minisiamese.backend import gpu_available  # noqa: E402

# The tests' caches (conv-plan timings, preprocessed faces by default) go to a
# folder of their own, never the user's ~/.cache/minisiamese.
os.environ["MINISIAMESE_CACHE"] = tempfile.mkdtemp(prefix="minisiamese-test-cache-")

settings.register_profile("default", deadline=None, max_examples=25, derandomize=True)
settings.register_profile("thorough", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("gpu", id="gpu", marks=pytest.mark.skipif(not gpu_available(), reason="no CuPy/CUDA device")),
]


@pytest.fixture(params=BACKENDS)
def xp(request):
    from minisiamese.backend import get_backend
    return get_backend(request.param)


@pytest.fixture(params=BACKENDS)
def device(request):
    return request.param


def as_xp(xp, a):
    return xp.asarray(a)


def to_np(a):
    from minisiamese.backend import to_numpy
    return to_numpy(a)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def build_shim(kernel_dir, lib):
    """Compile tests/kernel_shim with the .cu sources of ``kernel_dir`` into ``lib``;
    returns the ctypes library."""
    import ctypes
    import subprocess
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_shim", "shim.cpp")
    proc = subprocess.run(["g++", "-O1", "-std=c++17", "-shared", "-fPIC", "-I", kernel_dir, src, "-o", str(lib)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return ctypes.CDLL(str(lib))


@pytest.fixture(scope="session")
def shim(tmp_path_factory):
    """kernels/*.cu compiled for the host (tests/kernel_shim), as a ctypes library."""
    import shutil
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return build_shim(os.path.join(root, "kernels"), tmp_path_factory.mktemp("shim") / "libshim.so")


@pytest.fixture(params=["cuda", "host-shim"])
def cp(request, monkeypatch):
    """The GPU code path's two stand-ins for a device: ``cuda``, real CuPy on a
    CUDA device (skipped where there is none), and ``host-shim``,
    tests/fake_cupy.py -- NumPy arrays typed as CuPy's with the kernels' host
    build -- so every CuPy branch also runs in CI, without a GPU."""
    from minisiamese import gpu
    if request.param == "cuda":
        if not gpu_available():
            pytest.skip("no CuPy/CUDA device")
        import cupy
        return cupy
    import fake_cupy
    mod = fake_cupy.make(request.getfixturevalue("shim"))
    monkeypatch.setitem(sys.modules, "cupy", mod)
    gpu._module.cache_clear()
    request.addfinalizer(gpu._module.cache_clear)
    return mod
