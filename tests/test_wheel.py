"""The package as a user installs it: a wheel built from this checkout, installed
into a fresh virtual environment and run from a folder outside the checkout.

Checks the console command, ``python -m minisiamese verify`` with a tiny model
this test writes, that every CUDA source the loader may ask for is inside the
installed package, and the host build of those installed sources."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fake_cupy
from conftest import build_shim
from minisiamese import ModelConfig, SiameseNet, gpu, save_model
from minisiamese.im2col import im2col

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, cwd, **kw):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, command, site-packages/minisiamese, outside folder) of a fresh venv
    holding only the wheel (its dependencies come from the system's site-packages)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # build isolation, as a user building the wheel gets it (setuptools and wheel from the package index)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), ROOT],
        cwd=str(tmp))
    wheels = glob.glob(str(dist / "minisiamese-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=str(tmp))
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheels[0]], cwd=str(tmp))
    outside = tmp / "elsewhere"
    outside.mkdir()
    where = run([python, "-c", "import minisiamese, os; print(os.path.dirname(minisiamese.__file__))"],
                cwd=str(outside)).strip()
    # the venv's own copy, not the checkout's (an editable install of the checkout must not leak in)
    assert where.startswith(str(venv)), where
    return python, str(venv / "bin" / "minisiamese"), where, str(outside)


def test_console_command_and_module_are_the_same_program(installed):
    python, command, _, outside = installed
    text = run([command, "--help"], cwd=outside)
    for name in ("train", "evaluate", "experiments", "verify", "pack", "download"):
        assert name in text
    assert run([python, "-m", "minisiamese", "--help"], cwd=outside) == text
    # relative defaults are explained from where the command runs
    train_help = run([command, "train", "--help"], cwd=outside, env=dict(os.environ, COLUMNS="400"))
    assert f"runs/<preset>, here {os.path.join(outside, 'runs', '<preset>')}" in train_help


def test_verify_with_a_tiny_model_from_outside_the_checkout(installed, tmp_path):
    from PIL import Image
    python, _, _, outside = installed
    cfg = ModelConfig(input_size=20, conv_filters=(3, 4), conv_kernels=(3, 3), dense_units=5)
    model = str(tmp_path / "tiny.npz")
    save_model(model, SiameseNet(cfg, seed=0), extra={"threshold": np.array(0.4)})
    rng = np.random.default_rng(0)
    images = []
    for k in range(2):
        path = str(tmp_path / f"face{k}.png")
        Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(path)
        images.append(path)
    out = run([python, "-m", "minisiamese", "verify", *images, "--checkpoint", model, "--device", "cpu"],
              cwd=outside)
    assert re.fullmatch(r"\d\.\d{4}  \((same person|different people) at threshold 0\.400\)\n", out), out


def test_verify_with_the_shipped_model_from_outside_the_checkout(installed, tmp_path):
    """No --checkpoint: the model inside the wheel answers (its SHA-256 checked
    on load), on two LFW-a faces when the data is beside the checkout, else on
    two faces this test draws."""
    from PIL import Image
    from minisiamese import pretrained
    python, _, package, outside = installed
    assert os.path.isfile(os.path.join(package, "pretrained", pretrained.FILE))
    assert os.path.isfile(os.path.join(package, "pretrained", "MODEL_CARD.md"))
    lfw = os.path.join(ROOT, "..", "shared", "data", "lfw-a", "lfw2", "Aaron_Peirsol")
    if os.path.isdir(lfw):
        images = [os.path.join(lfw, f"Aaron_Peirsol_000{k}.jpg") for k in (1, 2)]
    else:
        rng = np.random.default_rng(0)
        images = [str(tmp_path / f"face{k}.png") for k in range(2)]
        for path in images:
            Image.fromarray(rng.integers(0, 256, (250, 250), dtype=np.uint8)).save(path)
    proc = subprocess.run([python, "-m", "minisiamese", "verify", *images, "--device", "cpu"], cwd=outside,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\d\.\d{4}  \((same person|different people) at threshold 0\.500\)\n", proc.stdout)
    assert proc.stderr.startswith(f"model: the shipped {pretrained.NAME}")


def test_every_kernel_source_is_inside_the_installed_package(installed):
    python, _, package, outside = installed
    with open(os.path.join(ROOT, "minisiamese", "gpu.py")) as f:
        asked = set(re.findall(r'_kernel\("([^"]+\.cu)"', f.read()))
    assert asked and asked <= set(gpu.KERNEL_FILES)
    paths = json.loads(run([python, "-c", "import json; from minisiamese import gpu; "
                            "print(json.dumps([gpu.kernel_path(f) for f in gpu.KERNEL_FILES]))"], cwd=outside))
    for name, path in zip(gpu.KERNEL_FILES, paths):
        assert path == os.path.join(package, "kernels", name)
        with open(path) as a, open(os.path.join(ROOT, "kernels", name)) as b:
            assert a.read() == b.read(), f"{path} differs from kernels/{name}"


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_installed_kernel_sources_build_and_run_on_the_host(installed, tmp_path, monkeypatch):
    """The host build of the *installed* .cu files, run through the CuPy stand-in."""
    lib = build_shim(os.path.join(installed[2], "kernels"), tmp_path / "libshim.so")
    cp = fake_cupy.make(lib)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    gpu._module.cache_clear()
    try:
        x = np.random.default_rng(1).standard_normal((2, 7, 6, 3))
        np.testing.assert_array_equal(im2col(cp.asarray(x), 3, 2, 2, 1), im2col(x, 3, 2, 2, 1))
    finally:
        gpu._module.cache_clear()
