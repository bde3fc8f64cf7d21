"""Which convolution algorithm a layer uses: ``"im2col"``, ``"fft"`` or ``"auto"``.

``auto`` is resolved once per layer shape and batch size, in the spirit of
cuDNN's benchmark mode, and kept for the process:

* both algorithms run forward + backward on a probe batch of the layer's
  shape (best of :data:`PROBE_REPEATS` interleaved trials), once per layer
  shape (with or without dx, as the layer needs): im2col on fewer images than
  the FFT (:data:`PROBE_IMAGES`), since its cost is linear in N while the
  FFT's per-frequency GEMMs get more efficient with N, and the FFT's part that does not grow with N -- the filters'
  spectrum and dw's inverse transform -- is timed on its own;
* the times are extrapolated to the real batch N, that fixed part counted once;
* the FFT is chosen only when its estimate is at least :data:`FFT_MARGIN`
  times faster, which keeps the choice stable on a noisy machine (on the 2-core
  CPU the baseline's layers are decided by factors of 2 or more:
  ``docs/performance.md``).

The probe timings are also kept on disk, in ``convplan.json`` under the cache
folder -- the CLI's ``--cache-dir`` (:func:`use_cache_dir`), else
``$MINISIAMESE_CACHE``, else ``~/.cache/minisiamese`` -- keyed by the layer
shape and stamped with the machine (CPU model, core count, NumPy version): later
processes on the same machine reuse them instead of timing again, so ``auto``
makes the same choice on a machine every time (delete the file to re-time).

On a GPU (CuPy arrays) the probe is the whole batch N for both algorithms --
the RawKernel im2col + cuBLAS path against cuFFT + cuBLAS -- with the device
synchronised around each trial: a device is fast enough that nothing need be
extrapolated, and small probes there would time launch overhead, not work.
Device timings are not kept on disk (they take well under a second to redo,
and the file is stamped with the CPU, not the GPU).  On an H200 this picks
cuFFT for conv2 and conv3 and im2col for conv1 and conv4
(``docs/performance.md``, GPU).

Where ``auto`` does not benchmark: a strided layer gets im2col (the FFT path
computes stride 1 only).  Every decision is kept in
:data:`DECISIONS` with its estimates (:func:`decision`), for the training log
and ``results.json``.
"""
import json
import os
import platform
import time

import numpy as np

from . import fftconv
from .fileio import atomic_write, cache_root
from .im2col import im2col_conv2d_backward, im2col_conv2d_forward


ALGOS = ("im2col", "fft", "auto")
PROBE_IMAGES = {"im2col": 32, "fft": 64}
PROBE_REPEATS = 2
FFT_MARGIN = 1.2

DECISIONS = {}           # (layer key, N) -> {"algo", "im2col_s", "fft_s", "reason"}
_PROBES = {}             # layer key -> probe timings
_CACHE_DIR = None        # where convplan.json is kept; None: fileio.cache_root()


def check_algo(algo, where="conv"):
    """A ValueError naming ``where`` unless ``algo`` is one of :data:`ALGOS`."""
    if algo not in ALGOS:
        raise ValueError(f"{where}: unknown convolution algorithm {algo!r}; choose one of {list(ALGOS)}")


def _key(x_shape, w_shape, stride, pad, dtype, xp, need_dx):
    return (xp.__name__, np.dtype(dtype).name, tuple(x_shape[1:]), tuple(w_shape), stride, pad, need_dx)


def resolve(algo, x_shape, w_shape, stride=1, pad=0, dtype=np.float32, xp=np, need_dx=True):
    """The concrete algorithm ("im2col" or "fft") for one layer call; ``need_dx``
    says whether its backward pass will compute dx (what ``auto`` times)."""
    check_algo(algo)
    if algo == "fft" and stride != 1:
        raise ValueError(f"conv: algorithm 'fft' needs stride 1, got stride {stride}; "
                         "use 'im2col' or 'auto' for a strided layer")
    if algo != "auto":
        return algo
    key = (_key(x_shape, w_shape, stride, pad, dtype, xp, need_dx), x_shape[0])
    if key not in DECISIONS:
        if stride != 1:
            DECISIONS[key] = {"algo": "im2col", "reason": "strided layer"}
        else:
            DECISIONS[key] = _estimate(key[0], x_shape, w_shape, pad, dtype, need_dx, xp)
    return DECISIONS[key]["algo"]


def decision(x_shape, w_shape, stride=1, pad=0, dtype=np.float32, xp=np, need_dx=True):
    """What ``auto`` decided for this layer call (after :func:`resolve`)."""
    return DECISIONS[(_key(x_shape, w_shape, stride, pad, dtype, xp, need_dx), x_shape[0])]


def _probe(x_shape, w_shape, pad, dtype, need_dx, xp=np):
    """Seconds for forward + backward of each algorithm on its probe batch, and
    of the FFT path's per-layer (not per-image) part; on a device (``xp`` is
    CuPy) the probe batch is the whole batch and each trial ends synchronised."""
    rng = np.random.default_rng(0)
    on_device = xp is not np
    images = {name: x_shape[0] if on_device else min(x_shape[0], n) for name, n in PROBE_IMAGES.items()}
    x = xp.asarray(rng.standard_normal((max(images.values()),) + tuple(x_shape[1:])).astype(dtype))
    w = xp.asarray(rng.standard_normal(w_shape).astype(dtype))
    sync = xp.cuda.Stream.null.synchronize if on_device else (lambda: None)
    s = (x_shape[1] + 2 * pad, x_shape[2] + 2 * pad)

    def filters_only():
        wf = fftconv.filter_spectrum(w, s, fftconv.complex_dtype(dtype))
        fftconv.filter_from_spectrum(wf, s, w_shape[2], w_shape[3], dtype)

    def both(forward, backward, n):
        def run():
            out, cache = forward(x[:n], w, None, 1, pad)
            backward(out, cache, need_dx)
        return run

    runs = {"im2col": both(im2col_conv2d_forward, im2col_conv2d_backward, images["im2col"]),
            "fft": both(fftconv.conv2d_fft_forward, fftconv.conv2d_fft_backward, images["fft"]),
            "fft_fixed": filters_only}
    best = {name: float("inf") for name in runs}
    for _ in range(PROBE_REPEATS + on_device):        # on a device the first trial also compiles
        for name, run in runs.items():
            sync()
            t = time.perf_counter()
            run()
            sync()
            best[name] = min(best[name], time.perf_counter() - t)
    return best, images


def use_cache_dir(path):
    """Keep the probe timings under ``path`` from now on (the CLI's --cache-dir);
    None goes back to the default, :func:`minisiamese.fileio.cache_root`."""
    global _CACHE_DIR
    _CACHE_DIR = path


def store_path():
    return os.path.join(_CACHE_DIR or cache_root(), "convplan.json")


def machine():
    """What the probe timings belong to."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "numpy": np.__version__, "arch": platform.machine()}


def _stored():
    """The probe timings on disk for this machine ({} when none, or another machine's)."""
    try:
        with open(store_path()) as f:
            data = json.load(f)
        return data["probes"] if data.get("machine") == machine() else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _store(name, probe):
    probes = _stored()
    probes[name] = probe
    text = json.dumps({"machine": machine(), "probes": probes}, indent=1, sort_keys=True)
    try:
        atomic_write(store_path(), lambda f: f.write(text.encode()))
    except OSError:
        pass                                  # a read-only home: the choice is kept for this process only


def _estimate(layer, x_shape, w_shape, pad, dtype, need_dx, xp=np):
    if xp is not np:                                  # a device: timed at this very batch size, never stored
        layer = (layer, x_shape[0])
        if layer not in _PROBES:
            _PROBES[layer] = _probe(x_shape, w_shape, pad, dtype, need_dx, xp)
    if layer not in _PROBES:
        name = json.dumps(layer)
        stored = _stored().get(name)
        if stored is not None:
            _PROBES[layer] = (stored["best"], stored["images"])
        else:
            _PROBES[layer] = _probe(x_shape, w_shape, pad, dtype, need_dx)
            _store(name, {"best": _PROBES[layer][0], "images": _PROBES[layer][1]})
    best, images = _PROBES[layer]
    N = x_shape[0]
    fixed = min(best["fft_fixed"], best["fft"])
    t_im2col = best["im2col"] * N / images["im2col"]
    t_fft = fixed + (best["fft"] - fixed) * N / images["fft"]
    algo = "fft" if t_fft * FFT_MARGIN <= t_im2col else "im2col"
    return {"algo": algo, "im2col_s": round(t_im2col, 4), "fft_s": round(t_fft, 4),
            "reason": f"forward + backward timed on {images['im2col']} (im2col) and {images['fft']} (fft) "
                      f"images, estimated for {N}"}


def layer_plan(settings, input_shapes, weight_shapes, images, dtype=np.float32, xp=np, timings=True):
    """The algorithm each conv layer runs for a batch of ``images`` inputs: a list of {"layer", "setting",
    "algo"} dicts, layer k (1-based) named "conv<k>", with its ``settings[k - 1]`` (one of :data:`ALGOS`),
    input (H, W, C) ``input_shapes[k - 1]`` and kernel ``weight_shapes[k - 1]``; with ``timings`` also
    what ``auto`` measured (:func:`decision`).  Layer 1 is timed without dx, which a network's first
    layer never computes."""
    plan = []
    for k, (setting, (H, W, C), w_shape) in enumerate(zip(settings, input_shapes, weight_shapes), 1):
        args = ((images, H, W, C), w_shape, 1, 0, dtype, xp, k > 1)
        entry = {"layer": f"conv{k}", "setting": setting, "algo": resolve(setting, *args)}
        if timings and setting == "auto":
            entry.update({key: v for key, v in decision(*args).items() if key != "algo"})
        plan.append(entry)
    return plan


def stored_plan(settings, algos):
    """The plan (as :func:`layer_plan` gives it, each step marked "stored") of a stored list of ``algos``,
    for layers set to ``settings``; a ValueError unless it names "im2col" or "fft" for each layer."""
    if len(algos) != len(settings) or any(a not in ("im2col", "fft") for a in algos):
        raise ValueError(f"conv plan {algos!r}: expected one of 'im2col'/'fft' per conv layer ({len(settings)})")
    return [{"layer": f"conv{k}", "setting": s, "algo": a, "stored": True}
            for k, (s, a) in enumerate(zip(settings, algos), 1)]


def describe_plan(plan):
    """One line for a log: each layer's algorithm and why (a :func:`layer_plan`)."""
    def why(step):
        if step.get("stored"):
            return f"from the stored plan; set to {step['setting']}"
        if "fft_s" in step:
            return f"auto: im2col {step['im2col_s']:.2f} s, fft {step['fft_s']:.2f} s estimated"
        return f"auto: {step['reason']}" if "reason" in step else f"set to {step['setting']}"
    return ", ".join(f"{step['layer']} {step['algo']} ({why(step)})" for step in plan)

