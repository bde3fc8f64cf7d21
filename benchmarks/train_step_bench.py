"""One full training step of the baseline network: forward both images of every
pair, BCE + L2, backward, Adam update; batch 128 pairs = 256 tower images.

Prints the median step time after warm-up, GFLOP/s, peak resident memory, the
time the step's own GEMMs take (timed inside the step) and, when PyTorch is
installed, the same step in PyTorch in the same run with the ratio ours/PyTorch.
Each implementation runs in its own subprocess so its peak memory is its own.

    python benchmarks/train_step_bench.py [--device cpu|gpu] [--steps 5] [--json out.json]
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, median_time, peak_rss_gib, run_child, torch_available  # noqa: E402


def gemm_flops(a_shape, b_shape):
    """FLOPs of matmul(a, b), batched (stacked) operands included."""
    batch = max(math.prod(a_shape[:-2]), math.prod(b_shape[:-2]))
    return 2.0 * batch * a_shape[-2] * a_shape[-1] * b_shape[-1]


def child_ours(args):
    import numpy as np

    from minisiamese import Adam, ModelConfig, SiameseNet
    net = SiameseNet(ModelConfig.preset(args.preset), seed=0, backend=args.device)
    xp = net.xp
    opt = Adam(lr=1e-4, beta1=0.5)
    rng = np.random.default_rng(0)
    n = args.batch
    x1 = rng.random((n, 1, 105, 105), dtype=np.float32)
    x2 = rng.random((n, 1, 105, 105), dtype=np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    x1, x2, y = xp.asarray(x1), xp.asarray(x2), xp.asarray(y)     # on the device, as PyTorch's are
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp.__name__ == "cupy" else None

    def step():
        loss, grads = net.loss_and_grads(x1, x2, y)
        opt.step(net.params, grads)

    med, times = median_time(step, args.steps, warmup=args.warmup, sync=sync)

    # One more step with every matmul timed in place: the GEMM time and FLOPs of this step.
    gemm = {"seconds": 0.0, "flops": 0.0, "calls": 0}
    real_matmul = xp.matmul

    def timed_matmul(a, b, *rest, **kw):
        if sync:
            sync()
        t0 = time.perf_counter()
        r = real_matmul(a, b, *rest, **kw)
        if sync:
            sync()
        gemm["seconds"] += time.perf_counter() - t0
        gemm["flops"] += gemm_flops(a.shape, b.shape)
        gemm["calls"] += 1
        return r

    xp.matmul = timed_matmul
    try:
        t0 = time.perf_counter()
        step()
        instrumented = time.perf_counter() - t0
    finally:
        xp.matmul = real_matmul
    result = {"impl": "minisiamese", "device": args.device, "median_s": med, "times_s": times,
              "gemm_s": gemm["seconds"], "gemm_gflop": gemm["flops"] / 1e9, "gemm_calls": gemm["calls"],
              "instrumented_step_s": instrumented, "peak_rss_gib": peak_rss_gib()}
    if args.profile:
        result["profile_s"] = profile_step(step, sync)
    return result


def profile_step(step, sync):
    """Seconds per op over one more step, every public op and im2col/col2im timed
    where it is called (nested calls count in both: conv2d_backward includes its
    im2col)."""
    from minisiamese import ops
    names = [n for n in dir(ops) if n.endswith(("_forward", "_backward"))] + ["im2col", "col2im"]
    spent, originals = {}, {n: getattr(ops, n) for n in names}

    def timed(name, fn):
        def wrapper(*a, **k):
            if sync:
                sync()
            t0 = time.perf_counter()
            r = fn(*a, **k)
            if sync:
                sync()
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
            return r
        return wrapper

    for n, fn in originals.items():
        setattr(ops, n, timed(n, fn))
    try:
        step()
    finally:
        for n, fn in originals.items():
            setattr(ops, n, fn)
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))


def child_torch(args):
    import torch

    from torch_peer import SiamesePeer, make_step
    dev = "cuda" if args.device == "gpu" else "cpu"
    torch.manual_seed(0)
    model = SiamesePeer().to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_fn = make_step(model)
    n = args.batch
    x1 = torch.rand(n, 1, 105, 105, device=dev)
    x2 = torch.rand(n, 1, 105, 105, device=dev)
    if args.channels_last:
        x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(n, device=dev) < 0.5).float()
    sync = torch.cuda.synchronize if dev == "cuda" else None
    med, times = median_time(lambda: step_fn(x1, x2, y), args.steps, warmup=args.warmup, sync=sync)
    return {"impl": "pytorch" + (" channels_last" if args.channels_last else ""), "device": args.device,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "median_s": med, "times_s": times,
            "peak_rss_gib": peak_rss_gib()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--preset", default="baseline")
    p.add_argument("--batch", type=int, default=128, help="pairs per step (tower sees twice as many images)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparator")
    p.add_argument("--json", help="write all figures to this JSON file")
    p.add_argument("--profile", action="store_true", help="also print seconds per op for one more step")
    p.add_argument("--default-allocator", action="store_true",
                   help="leave glibc's allocator as it is (cli.py tunes it; see backend.tune_cpu_allocator)")
    p.add_argument("--impl", choices=["ours", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        from minisiamese.backend import tune_cpu_allocator
        if not args.default_allocator:
            tune_cpu_allocator()        # as cli.py does; applied to the comparator too
        result = child_ours(args) if args.impl == "ours" else child_torch(args)
        print(json.dumps(result))
        return

    here = os.path.abspath(__file__)
    common = ["--device", args.device, "--preset", args.preset, "--batch", str(args.batch),
              "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.default_allocator:
        common.append("--default-allocator")
    ours_args = common + ["--impl", "ours"] + (["--profile"] if args.profile else [])
    results = [run_child(here, ours_args)]
    if not args.no_torch and torch_available():
        results.append(run_child(here, common + ["--impl", "torch"]))
        if args.device == "cpu":
            results.append(run_child(here, common + ["--impl", "torch", "--channels-last"]))
    elif not args.no_torch:
        print("(PyTorch not installed: no comparator; pip install torch to add it)")

    ours = results[0]
    print(f"training step, preset {args.preset}, batch {args.batch} pairs ({2 * args.batch} tower images), "
          f"device {args.device}, median of {args.steps} after {args.warmup} warm-up")
    print(f"{'implementation':28s} {'median s':>9s} {'GFLOP/s':>8s} {'peak RSS GiB':>13s}")
    for r in results:
        gflops = ours["gemm_gflop"] / r["median_s"]
        print(f"{r['impl']:28s} {r['median_s']:9.2f} {gflops:8.1f} {r['peak_rss_gib']:13.2f}")
    print(f"our GEMMs: {ours['gemm_calls']} calls, {ours['gemm_gflop']:.1f} GFLOP, {ours['gemm_s']:.2f} s "
          f"({ours['gemm_gflop'] / ours['gemm_s']:.1f} GFLOP/s); step / GEMM time = "
          f"{ours['instrumented_step_s'] / ours['gemm_s']:.2f} (same instrumented step)")
    for r in results[1:]:
        print(f"ratio ours / {r['impl']}: {ours['median_s'] / r['median_s']:.2f}")
    if "profile_s" in ours:
        print("seconds per op in one step (nested: conv2d_* include their im2col/col2im):")
        for name, secs in ours["profile_s"].items():
            print(f"  {name:22s} {secs:7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
