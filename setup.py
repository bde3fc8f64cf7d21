from setuptools import find_packages, setup

setup(
    name="minisiamese",
    version="0.1.0",
    description="A from-scratch NumPy/CuPy Siamese conv net (Koch et al. 2015) for one-shot face verification on LFW-a",
    packages=find_packages(include=["minisiamese", "minisiamese.*"]),
    python_requires=">=3.9",
    install_requires=["numpy>=1.22", "pillow", "matplotlib"],
    extras_require={
        "gpu": ["cupy-cuda12x"],
        "test": ["pytest", "hypothesis"],
    },
)
