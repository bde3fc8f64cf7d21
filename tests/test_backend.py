import numpy as np
import pytest

from minisiamese import BackendError, get_backend
from minisiamese.backend import get_array_module, gpu_available, to_numpy


def test_cpu_is_numpy_and_auto_falls_back():
    assert get_backend("cpu") is np
    assert get_backend("CPU") is np
    if not gpu_available():
        assert get_backend("auto") is np


@pytest.mark.skipif(gpu_available(), reason="a GPU is present")
def test_gpu_without_cupy_or_device_is_one_clear_error():
    with pytest.raises(BackendError, match="--device gpu was asked for, but"):
        get_backend("gpu")


def test_unknown_device():
    with pytest.raises(BackendError, match="unknown device 'tpu'"):
        get_backend("tpu")


def test_array_module_and_to_numpy(xp):
    a = xp.arange(3.0)
    assert get_array_module(a) is xp
    assert isinstance(to_numpy(a), np.ndarray)
