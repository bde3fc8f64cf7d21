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
