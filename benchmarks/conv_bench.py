"""Per-layer conv benchmark: the four conv layers of the baseline at N = 256
(channels-last), forward and backward time and GFLOP/s.

Columns on --device cpu: the nested-loop reference (measured on a small proxy --
N = 1 and a 4x4 output -- and reported as GFLOP/s, since a full layer would take
hours), our two algorithms -- im2col + BLAS, and the FFT (numpy.fft + batched
complex GEMMs) -- and PyTorch (NCHW, oneDNN) when installed.
On --device gpu: our CuPy paths (im2col/col2im kernels + cuBLAS; cuFFT + cuBLAS)
and cuDNN through PyTorch when installed, timed after warm-up with the device
synchronised, plus the device's measured float32 GEMM rate for scale.
GFLOP/s are effective: the direct convolution's FLOPs over the time, whatever
the algorithm (as cuDNN reports its FFT algorithms), so the columns compare.

    python benchmarks/conv_bench.py [--device cpu|gpu] [--n 256] [--repeats 3] [--json out.json] [--plot out.png]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, median_time, torch_available  # noqa: E402

from minisiamese import ops, reference  # noqa: E402
from minisiamese.backend import tune_cpu_allocator  # noqa: E402

# (name, input H=W, C, F, K) of the baseline's conv layers
LAYERS = [("conv1", 105, 1, 64, 10), ("conv2", 48, 64, 128, 7), ("conv3", 21, 128, 128, 4),
          ("conv4", 9, 128, 256, 4)]


def flops(n, S, C, F, K):
    O = S - K + 1
    fwd = 2.0 * n * O * O * F * K * K * C
    return fwd, fwd * (2 if C > 1 else 1)          # backward: dW (+ dX except for the first layer)


def bench_reference(C, F, K):
    """GFLOP/s of the nested-loop conv on N = 1 with a 4x4 output (F capped at 2)."""
    S, f = K + 3, min(F, 2)
    rng = np.random.default_rng(0)
    x, w, b = rng.random((1, S, S, C)), rng.random((f, C, K, K)), rng.random(f)
    t0 = time.perf_counter()
    reference.conv2d_ref(x, w, b)
    return 2.0 * 16 * f * K * K * C / (time.perf_counter() - t0) / 1e9


ALGOS = ("im2col", "fft")


def bench_ours(n, S, C, F, K, repeats, xp=np, algo="im2col"):
    """minisiamese's conv by ``algo`` on the backend ``xp`` (NumPy, or CuPy)."""
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.random((n, S, S, C), dtype=np.float32))
    w = xp.asarray((rng.standard_normal((F, C, K, K)) * 0.01).astype(np.float32))
    b = xp.zeros(F, np.float32)
    out, cache = ops.conv2d_forward(x, w, b, algo=algo)
    dout = xp.asarray(rng.standard_normal(out.shape, dtype=np.float32))
    sync = xp.cuda.Stream.null.synchronize if xp is not np else None
    fwd, _ = median_time(lambda: ops.conv2d_forward(x, w, b, algo=algo), repeats, sync=sync)
    bwd, _ = median_time(lambda: ops.conv2d_backward(dout, cache, need_dx=C > 1), repeats, sync=sync)
    return fwd, bwd


def device_gemm_gflops(xp, size=8192, repeats=5):
    a = xp.random.random((size, size), dtype=np.float32)
    sync = xp.cuda.Stream.null.synchronize
    t, _ = median_time(lambda: a @ a, repeats, sync=sync)
    return 2.0 * size ** 3 / t / 1e9


def bench_torch(n, S, C, F, K, repeats, device="cpu"):
    import torch
    x = torch.rand(n, C, S, S, device=device, requires_grad=C > 1)
    conv = torch.nn.Conv2d(C, F, K).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    out = conv(x)
    dout = torch.randn_like(out)

    def forward():
        with torch.no_grad():
            conv(x)

    def backward():
        y = conv(x)
        y.backward(dout)
    fwd, _ = median_time(forward, repeats, sync=sync)
    both, _ = median_time(backward, repeats, sync=sync)
    return fwd, max(both - fwd, 1e-9)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--n", type=int, default=256, help="images per batch (default: 256 = 128 pairs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", help="write the table to this JSON file")
    p.add_argument("--plot", help="write a bar chart of GFLOP/s to this PNG file")
    args = p.parse_args()
    tune_cpu_allocator()
    from minisiamese.backend import get_backend
    xp = get_backend(args.device)
    gpu = args.device == "gpu"
    use_torch = not args.no_torch and torch_available()
    if use_torch:
        import torch
        torch.set_num_threads(os.cpu_count())
        if gpu:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False   # float32, as ours
    extra = {}
    if gpu:
        extra["device_gemm_gflops"] = device_gemm_gflops(xp)
        extra["gpu"] = xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        extra["cupy"] = xp.__version__
        print(f"{extra['gpu']}: float32 GEMM (8192^3, cuBLAS) {extra['device_gemm_gflops']:.0f} GFLOP/s")
    rows = []
    for name, S, C, F, K in LAYERS:
        f_fwd, f_bwd = flops(args.n, S, C, F, K)
        row = {"layer": name, "shape": f"{S}x{S}x{C} -> {F}@{K}x{K}", "gflop_fwd": f_fwd / 1e9,
               "gflop_bwd": f_bwd / 1e9, "ref_gflops": bench_reference(C, F, K) if not gpu else float("nan")}
        for algo in ALGOS:
            row[f"{algo}_fwd_s"], row[f"{algo}_bwd_s"] = bench_ours(args.n, S, C, F, K, args.repeats, xp, algo)
        if use_torch:
            row["torch_fwd_s"], row["torch_bwd_s"] = bench_torch(args.n, S, C, F, K, args.repeats,
                                                                 "cuda" if gpu else "cpu")
        rows.append(row)
        print(f"{name} done", file=sys.stderr)
    theirs = "cudnn" if gpu else "torch"
    cols = list(ALGOS) + ([theirs] if use_torch else [])
    key = {"cudnn": "torch"}
    head = f"{'layer':6s} {'GFLOP f/b':>11s} {'loop ref GF/s':>13s}" + "".join(
        f" {c + ' fwd s':>12s} {'bwd s':>7s} {'GF/s':>6s}" for c in cols)
    print(f"conv layers of the baseline at N = {args.n}, device {args.device} (median of {args.repeats}); "
          f"im2col and fft are minisiamese ({'CuPy' if gpu else 'NumPy'})")
    print(head)
    for r in rows:
        total = r["gflop_fwd"] + r["gflop_bwd"]
        line = f"{r['layer']:6s} {r['gflop_fwd']:5.1f}/{r['gflop_bwd']:5.1f} {r['ref_gflops']:13.5f}"
        for c in cols:
            fwd, bwd = r[key.get(c, c) + "_fwd_s"], r[key.get(c, c) + "_bwd_s"]
            line += f" {fwd:12.3f} {bwd:7.3f} {total / (fwd + bwd):6.1f}"
        line += f"   fft speed-up {(r['im2col_fwd_s'] + r['im2col_bwd_s']) / (r['fft_fwd_s'] + r['fft_bwd_s']):.2f}x"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "device": args.device, "n": args.n, "rows": rows, **extra}, f,
                      indent=1)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = np.arange(len(rows))
        tot = lambda r, k: (r["gflop_fwd"] + r["gflop_bwd"]) / (r[k + "_fwd_s"] + r[k + "_bwd_s"])  # noqa: E731
        bars = [(a, f"minisiamese {a} ({args.device})") for a in ALGOS]
        if use_torch:
            bars.append(("torch", "PyTorch + cuDNN" if gpu else "PyTorch CPU"))
        width = 0.8 / len(bars)
        for i, (k, label) in enumerate(bars):
            ax.bar(xs + (i - (len(bars) - 1) / 2) * width, [tot(r, k) for r in rows], width, label=label)
        ax.set_xticks(xs, [r["layer"] for r in rows])
        ax.set_ylabel("effective GFLOP/s (fwd + bwd)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
