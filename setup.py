import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "minisiamese", "__init__.py")) as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)   # the one place it is named

setup(
    name="minisiamese",
    version=VERSION,
    description="A from-scratch NumPy/CuPy Siamese conv net (Koch et al. 2015) for one-shot face verification on LFW-a",
    # The CUDA sources stay in the repository's top-level kernels/ and ship inside
    # the package as minisiamese/kernels/*.cu (minisiamese.gpu looks in both places).
    packages=["minisiamese", "minisiamese.kernels", "minisiamese.pretrained"],
    package_dir={"minisiamese.kernels": "kernels"},
    # the shipped model (its SHA-256 is checked at every load) and its card
    package_data={"minisiamese.kernels": ["*.cu"], "minisiamese.pretrained": ["*.npz", "MODEL_CARD.md"]},
    entry_points={"console_scripts": ["minisiamese = minisiamese.cli:main"]},
    python_requires=">=3.9",
    # NumPy 2: float32 FFTs (complex64, not complex128) and out= in numpy.fft
    install_requires=["numpy>=2.0", "pillow", "matplotlib"],
    extras_require={
        "gpu": ["cupy-cuda12x"],
        "test": ["pytest", "hypothesis"],
    },
)
