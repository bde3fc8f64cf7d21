"""Split big memory-bound NumPy work across the CPU cores.

NumPy's copies and ufuncs release the GIL but run on one core; BLAS already uses
all of them.  The im2col copy, the col2im scatter-add and max-pooling write
disjoint images, so they split over the batch axis.  Each piece is also kept
small (about ``PIECE_BYTES``) so its temporaries stay in the CPU caches.  CuPy
arrays (and small NumPy work) run in the calling thread, in one piece.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PIECE_BYTES = 8 * 2 ** 20
_MIN_BYTES = 4 * 2 ** 20         # below this a thread costs more than it saves
_pool = None


def _workers():
    return max(1, int(os.environ.get("MINISIAMESE_THREADS", "0")) or os.cpu_count() or 1)


def over_batch(fn, N, work_bytes, xp=np, piece_bytes=PIECE_BYTES):
    """Call ``fn(n0, n1)`` on contiguous slices that cover range(N), each about
    ``piece_bytes`` of the ``work_bytes`` in all."""
    global _pool
    workers = min(_workers(), N)
    if xp is not np or workers < 2 or work_bytes < _MIN_BYTES:
        fn(0, N)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="minisiamese")
    pieces = max(workers, min(N, -(-work_bytes // piece_bytes)))
    bounds = [N * k // pieces for k in range(pieces + 1)]
    futures = [_pool.submit(fn, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    for f in futures:
        f.result()
