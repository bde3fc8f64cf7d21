"""Helpers shared by the benchmarks: timing, machine description, peak memory,
and running one measurement in a fresh subprocess (so peak RSS is its own)."""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def peak_rss_gib():
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def machine():
    import numpy as np
    info = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [f"{d.get('internal_api')} {d.get('version')} ({d.get('num_threads')} threads)"
                        for d in threadpool_info()]
    except ImportError:
        pass
    return info


def median_time(fn, repeats, warmup=1, sync=None):
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run_child(script, args):
    """Run ``script args --child`` in a fresh interpreter; it prints one JSON line last."""
    cmd = [sys.executable, script] + list(args) + ["--child"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark child failed: {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False
