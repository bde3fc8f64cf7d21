"""One full training step of the baseline network: forward both images of every
pair, BCE + L2, backward, Adam update; batch 128 pairs = 256 tower images.

Prints the conv plan (the algorithm of each layer, resolved before timing as
the trainer does), the median step time after warm-up, effective GFLOP/s (the
direct network's FLOPs over the time, whatever the algorithm), peak resident
memory, the time the step's own GEMMs take (timed inside the step), the median
inference time of 128 pairs (``predict_proba``) and, when PyTorch is installed,
the same step and inference in PyTorch in the same run with the ratios
ours/PyTorch.  Each implementation runs in its own subprocess so its peak memory
is its own.

    python benchmarks/train_step_bench.py [--device cpu|gpu] [--conv-algo auto|im2col|fft] [--steps 5] [--json out.json]
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, median_time, peak_rss_gib, run_child, torch_available  # noqa: E402


def gemm_flops(a, b):
    """Real FLOPs of matmul(a, b), batched (stacked) operands included; a complex
    multiply-add is 8 real FLOPs, against 2 for a real one."""
    batch = max(math.prod(a.shape[:-2]), math.prod(b.shape[:-2]))
    per_mac = 8.0 if a.dtype.kind == "c" or b.dtype.kind == "c" else 2.0
    return per_mac * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


def direct_flops(config, images):
    """FLOPs of one training step of the direct network: every conv as a direct
    convolution (forward, dW, and dX except for the first layer) and the dense
    layers (forward, dW, dX).  The same for every algorithm, so
    flops / time is an effective rate that compares across them."""
    total = 0.0
    for k, ((H, W, C), F, K) in enumerate(zip(config.conv_input_shapes(), config.conv_filters,
                                              config.conv_kernels)):
        fwd = 2.0 * images * (H - K + 1) * (W - K + 1) * F * C * K * K
        total += fwd * (2 if k == 0 else 3)
    H, W, C = config.feature_shape()
    total += 3 * 2.0 * images * H * W * C * config.dense_units + 3 * 2.0 * images * config.dense_units
    return total


def model_config(name):
    """The architecture of a model preset (baseline, narrow, ...) or of a run
    preset (best, bn512, ...: its config's model)."""
    from minisiamese import ModelConfig
    from minisiamese.config import MODEL_PRESETS
    from minisiamese.runconfig import ExperimentConfig
    return ModelConfig.preset(name) if name in MODEL_PRESETS else ExperimentConfig.preset(name).model


def child_ours(args):
    import numpy as np

    from minisiamese import Adam, SiameseNet
    cfg = model_config(args.preset).replace(conv_algo=args.conv_algo)
    net = SiameseNet(cfg, seed=0, backend=args.device)
    xp = net.xp
    t0 = time.perf_counter()
    plan = net.fix_conv_plan(2 * args.batch)           # as the trainer does, before its first step
    plan_s = time.perf_counter() - t0
    opt = Adam(lr=1e-4, beta1=0.5)
    rng = np.random.default_rng(0)
    n = args.batch
    s = cfg.input_size
    x1 = rng.random((n, 1, s, s), dtype=np.float32)
    x2 = rng.random((n, 1, s, s), dtype=np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    x1, x2, y = xp.asarray(x1), xp.asarray(x2), xp.asarray(y)     # on the device, as PyTorch's are
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp.__name__ == "cupy" else None

    def step():
        loss, grads = net.loss_and_grads(x1, x2, y)
        opt.step(net.params, grads)

    infer, infer_times = median_time(lambda: net.predict_proba(x1, x2, batch_size=n), args.steps,
                                     warmup=args.warmup, sync=sync)
    if args.inference_only:
        return {"impl": "minisiamese", "device": args.device, "infer_s": infer, "infer_times_s": infer_times,
                "plan": plan, "plan_s": plan_s, "peak_rss_gib": peak_rss_gib()}
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
        gemm["flops"] += gemm_flops(a, b)
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
              "infer_s": infer, "infer_times_s": infer_times, "plan": plan, "plan_s": plan_s,
              "direct_gflop": direct_flops(cfg, 2 * n) / 1e9,
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
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False   # float32, as ours
    torch.manual_seed(0)
    model = SiamesePeer().to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_fn = make_step(model)
    n = args.batch

    def infer():
        with torch.no_grad():
            torch.sigmoid(model(x1, x2))

    x1 = torch.rand(n, 1, 105, 105, device=dev)
    x2 = torch.rand(n, 1, 105, 105, device=dev)
    if args.channels_last:
        x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(n, device=dev) < 0.5).float()
    sync = torch.cuda.synchronize if dev == "cuda" else None
    infer_med, infer_times = median_time(infer, args.steps, warmup=args.warmup, sync=sync)
    if args.inference_only:
        return {"impl": "pytorch" + (" channels_last" if args.channels_last else ""), "device": args.device,
                "torch": torch.__version__, "infer_s": infer_med, "infer_times_s": infer_times}
    med, times = median_time(lambda: step_fn(x1, x2, y), args.steps, warmup=args.warmup, sync=sync)
    return {"impl": "pytorch" + (" channels_last" if args.channels_last else ""), "device": args.device,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "median_s": med, "times_s": times,
            "infer_s": infer_med, "infer_times_s": infer_times,
            "peak_rss_gib": peak_rss_gib()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--preset", default="baseline",
                   help="a model preset (baseline, narrow, dropout) or a run preset (best, bn512, ...)")
    p.add_argument("--conv-algo", default="auto", choices=["auto", "im2col", "fft"],
                   help="our conv algorithm for every layer (default: %(default)s, resolved per layer)")
    p.add_argument("--batch", type=int, default=128, help="pairs per step (tower sees twice as many images)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparator")
    p.add_argument("--inference-only", action="store_true", help="time inference (128 pairs) only, no training step")
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
    common = ["--device", args.device, "--preset", args.preset, "--conv-algo", args.conv_algo,
              "--batch", str(args.batch)] + (["--inference-only"] if args.inference_only else []) + [
              "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.default_allocator:
        common.append("--default-allocator")
    ours_args = common + ["--impl", "ours"] + (["--profile"] if args.profile else [])
    results = [run_child(here, ours_args)]
    if args.no_torch:
        pass
    elif model_config(args.preset) != model_config("baseline"):
        print(f"(no PyTorch comparator: its peer is the baseline network, not {args.preset})")
    elif torch_available():
        results.append(run_child(here, common + ["--impl", "torch"]))
        if args.device == "cpu":
            results.append(run_child(here, common + ["--impl", "torch", "--channels-last"]))
    else:
        print("(PyTorch not installed: no comparator; pip install torch to add it)")

    ours = results[0]
    from minisiamese.convplan import describe_plan
    if args.inference_only:
        print(f"inference, preset {args.preset}, {args.batch} pairs, device {args.device}, median of {args.steps} "
              f"after {args.warmup} warm-up; conv plan: {describe_plan(ours['plan'])}")
        for r in results:
            print(f"{r['impl']:28s} {r['infer_s']:7.2f} s   ({' '.join(f'{t:.2f}' for t in r['infer_times_s'])})")
        for r in results[1:]:
            print(f"ratio ours / {r['impl']}: inference {ours['infer_s'] / r['infer_s']:.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine(), "args": vars(args), "results": results}, f, indent=2)
        return
    print(f"training step, preset {args.preset}, batch {args.batch} pairs ({2 * args.batch} tower images), "
          f"device {args.device}, median of {args.steps} after {args.warmup} warm-up")
    print(f"conv plan (--conv-algo {args.conv_algo}, resolved in {ours['plan_s']:.1f} s): "
          f"{describe_plan(ours['plan'])}")
    print(f"{'implementation':28s} {'step s':>7s} {'eff. GFLOP/s':>12s} {'peak RSS GiB':>13s} {'inference s':>12s}")
    for r in results:
        print(f"{r['impl']:28s} {r['median_s']:7.2f} {ours['direct_gflop'] / r['median_s']:12.1f} "
              f"{r['peak_rss_gib']:13.2f} {r['infer_s']:12.2f}")
    print(f"our GEMMs: {ours['gemm_calls']} calls, {ours['gemm_gflop']:.1f} GFLOP (direct network: "
          f"{ours['direct_gflop']:.1f}), {ours['gemm_s']:.2f} s ({ours['gemm_gflop'] / ours['gemm_s']:.1f} GFLOP/s); "
          f"step / GEMM time = {ours['instrumented_step_s'] / ours['gemm_s']:.2f} (same instrumented step)")
    for r in results[1:]:
        print(f"ratio ours / {r['impl']}: step {ours['median_s'] / r['median_s']:.2f}, "
              f"inference {ours['infer_s'] / r['infer_s']:.2f}")
    if len(results) > 1:
        fastest = min(results[1:], key=lambda r: r["median_s"])
        fastest_inf = min(results[1:], key=lambda r: r["infer_s"])
        print(f"ratio ours / PyTorch's faster layout: step {ours['median_s'] / fastest['median_s']:.2f} "
              f"({fastest['impl']}), inference {ours['infer_s'] / fastest_inf['infer_s']:.2f} ({fastest_inf['impl']})")
    if "profile_s" in ours:
        print("seconds per op in one step (nested: conv2d_* include their im2col/col2im):")
        for name, secs in ours["profile_s"].items():
            print(f"  {name:22s} {secs:7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
