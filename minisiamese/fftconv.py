"""Convolution through the convolution theorem: per-frequency GEMMs between FFTs.

Same contract as :func:`minisiamese.ops.conv2d_forward` / ``conv2d_backward``
(channels-last x (N, H, W, C), filters w (F, C, KH, KW)), for stride 1 and any
padding.  With Hp = H + 2 pad and Wp = W + 2 pad, every transform has the size
of the padded input itself, (Hp, Wp):

* forward, a valid cross-correlation ``y = x (*) w``: the circular correlation
  of xpad with w (zero-padded to Hp x Wp) differs from the valid one only at
  outputs oh > Hp - KH, which the valid correlation drops, so
  ``Y^[n, k, f] = sum_c X^[n, k, c] conj(W^[f, c, k])``.
* dx, a full convolution of dy with w: ``DX^[n, k, c] = sum_f DY^[n, k, f] W^[f, c, k]``
  (no conjugate: correlating forward means convolving backward), cropped to
  the unpadded H x W.
* dw, the correlation of xpad with dy: ``DW^[c, f, k] = sum_n X^[n, k, c] conj(DY^[n, k, f])``,
  whose inverse is cropped to KH x KW.

At each of the Hp * (Wp//2 + 1) frequencies k of ``rfft2`` each of the three
is one complex matrix product -- (N, C) @ (C, F), (N, F) @ (F, C) and
(C, N) @ (N, F) -- so a layer is a batch of small GEMMs between FFTs, all
through ``xp`` (numpy.fft on the CPU, cuFFT through cupy.fft on the GPU).
``docs/walkthrough.md`` derives each line; ``tests/test_fftconv.py`` checks
them against the loop reference and central differences.

The forward cache keeps the input's spectrum X^ (N, Hp, Wr, C), Wr = Wp//2 + 1,
which the dw product reuses, and the filters' spectrum W^ (Hp, Wr, C, F).  In
complex64 X^ costs 8 N Hp Wr C bytes: 157 MB for conv2 at N = 256 (the input
itself is 151 MB), 11 MB for conv1, 61 MB for conv3.
"""
import hashlib
from collections import OrderedDict, namedtuple

import numpy as np

from .backend import get_array_module
from .parallel import over_batch
from .shapes import check_conv_args

# FFT work is cut into pieces of about one image (pieces of 8 MB ran rfft2 at
# half the speed on the 2-core machine: the transforms' lines fall out of L2).
FFT_PIECE_BYTES = 2 ** 20

FFTConvCache = namedtuple("FFTConvCache", "xf wf x_shape w_shape pad has_bias")
FFTConvCache.__doc__ = """What :func:`conv2d_fft_backward` reads.

xf (N, Hp, Wr, C) complex: rfft2 of the padded input over (H, W).
wf (Hp, Wr, C, F) complex: rfft2 of the filters zero-padded to (Hp, Wp).
x_shape, w_shape: (N, H, W, C) and (F, C, KH, KW).  pad: the zero padding.
has_bias: whether the forward pass added a bias (then db is returned)."""


def complex_dtype(dtype):
    """complex64 for float32, complex128 for float64."""
    return np.complex64 if np.dtype(dtype) == np.float32 else np.complex128


def _rfft_images(x, s, pad, out, conj=False):
    """rfft2 over the (H, W) axes of x (N, H, W, C) zero-padded to size ``s``
    (``pad`` rows/columns before, the rest after), into ``out`` (N, Hp, Wr, C);
    ``conj`` stores the complex conjugate instead.

    On the CPU the batch is cut into pieces that run on the worker threads
    (NumPy's FFT releases the GIL), so each piece's conjugate is taken while it
    is still in cache."""
    xp = get_array_module(x)

    def run(n0, n1):
        piece, o = x[n0:n1], out[n0:n1]
        if pad:                                        # the zeros after come from s=
            piece = xp.pad(piece, ((0, 0), (pad, 0), (pad, 0), (0, 0)))
        if xp is np and piece.shape[1:3] == s:
            xp.fft.rfft2(piece, axes=(1, 2), out=o)
        else:                                          # NumPy's out= cannot pad; cupy.fft has no out=
            o[...] = xp.fft.rfft2(piece, s=s, axes=(1, 2))
        if conj:
            xp.conj(o, out=o)

    over_batch(run, x.shape[0], out.nbytes, xp, FFT_PIECE_BYTES)
    return out


def _irfft_images(spec, s, rows, cols, out, conj=False):
    """Inverse of :func:`_rfft_images`: irfft2 of spec (N, Hp, Wr, C) -- of its
    conjugate with ``conj``, which overwrites spec -- to (N, Hp, Wp, C), keeping
    the window ``rows`` x ``cols`` (two slices) in ``out``."""
    xp = get_array_module(spec)

    def run(n0, n1):
        piece = spec[n0:n1]
        if conj:
            xp.conj(piece, out=piece)
        out[n0:n1] = xp.fft.irfft2(piece, s=s, axes=(1, 2))[:, rows, cols]

    over_batch(run, spec.shape[0], spec.nbytes, xp, FFT_PIECE_BYTES)
    return out


def filter_spectrum(w, s, ctype):
    """rfft2 of the filters w (F, C, KH, KW) zero-padded to ``s`` = (Hp, Wp):
    (Hp, Wr, C, F), the layout whose per-frequency (C, F) slices BLAS reads as
    they are.  Cut over F into pieces for the worker threads."""
    xp = get_array_module(w)
    F, C = w.shape[:2]
    out = xp.empty((s[0], s[1] // 2 + 1, C, F), dtype=ctype)

    def run(f0, f1):
        out[..., f0:f1] = xp.fft.rfft2(w[f0:f1].transpose(2, 3, 1, 0), s=s, axes=(0, 1))

    over_batch(run, F, out.nbytes, xp, FFT_PIECE_BYTES)
    return out


# The filters' spectrum of each layer shape, for the weights it last saw:
# inference and evaluation run many batches through unchanged weights, and
# conv2's spectrum costs about 0.15 s on the 2-core CPU.  One entry per layer
# shape, so a training step (new weights every time: it only misses, and
# hashing costs ~2 ms) holds no more than one spectrum per layer.
_SPECTRA = OrderedDict()     # (shape, dtypes, s) -> (content digest, spectrum)
SPECTRA_SHAPES = 16


def cached_filter_spectrum(w, s, ctype):
    """:func:`filter_spectrum`, served from :data:`_SPECTRA` when these exact
    filters were transformed at this size last time (NumPy arrays only)."""
    if get_array_module(w) is not np:
        return filter_spectrum(w, s, ctype)
    digest = hashlib.blake2b(np.ascontiguousarray(w).view(np.uint8).reshape(-1), digest_size=16).digest()
    key = (w.shape, w.dtype.str, np.dtype(ctype).str, s)
    hit = _SPECTRA.get(key)
    if hit is not None and hit[0] == digest:
        _SPECTRA.move_to_end(key)
        return hit[1]
    wf = filter_spectrum(w, s, ctype)
    wf.flags.writeable = False                       # shared between calls: nobody may change it
    _SPECTRA[key] = (digest, wf)
    _SPECTRA.move_to_end(key)
    while len(_SPECTRA) > SPECTRA_SHAPES:
        _SPECTRA.popitem(last=False)
    return wf


def filter_from_spectrum(wf, s, KH, KW, dtype):
    """The inverse of :func:`filter_spectrum` cropped to KH x KW: (F, C, KH, KW).

    Only KH of the Hp rows survive the crop, so the inverse runs in two steps:
    ifft over H, keep KH rows, irfft over W, keep KW columns."""
    xp = get_array_module(wf)
    C, F = wf.shape[2:]
    out = xp.empty((F, C, KH, KW), dtype=dtype)

    def run(f0, f1):
        rows = xp.fft.ifft(wf[..., f0:f1], axis=0)[:KH]                       # (KH, Wr, C, f)
        out[f0:f1] = xp.fft.irfft(rows, n=s[1], axis=1)[:, :KW].transpose(3, 2, 0, 1)

    over_batch(run, F, wf.nbytes, xp, FFT_PIECE_BYTES)
    return out


def _per_frequency(a):
    """(N, Hp, Wr, D) -> the (K, N, D) view with K = Hp * Wr frequencies first."""
    N, Hp, Wr, D = a.shape
    return a.reshape(N, Hp * Wr, D).transpose(1, 0, 2)


def _forward_spectra(x, w, pad):
    """The forward pass in the frequency domain: X^ (N, Hp, Wr, C), W^ (Hp, Wr, C, F),
    Y^ = X^ conj(W^) per frequency (N, Hp, Wr, F), and the transform size (Hp, Wp)."""
    xp = get_array_module(x)
    N, H, W, C = x.shape
    F = w.shape[0]
    s = (H + 2 * pad, W + 2 * pad)                                          # (Hp, Wp)
    ctype = complex_dtype(x.dtype)
    wf = cached_filter_spectrum(w, s, ctype)                                # (Hp, Wr, C, F)
    Hp, Wr = wf.shape[:2]
    xf = _rfft_images(x, s, pad, xp.empty((N, Hp, Wr, C), dtype=ctype))    # (N, Hp, Wr, C)
    yf = xp.empty((N, Hp, Wr, F), dtype=ctype)                              # (N, Hp, Wr, F)
    xp.matmul(_per_frequency(xf), xp.conj(wf).reshape(Hp * Wr, C, F), out=_per_frequency(yf))
    return xf, wf, yf, s


def conv2d_fft_forward(x, w, b=None, stride=1, pad=0):
    """x (N, H, W, C), w (F, C, KH, KW), b (F,) or None -> out (N, OH, OW, F), cache.

    Computes exactly what :func:`minisiamese.ops.conv2d_forward` computes (up to
    rounding).  Only stride 1: a strided output would need every stride-th
    output of the full spectrum product, i.e. the work of stride 1, so a strided
    layer is a configuration error here, not a slow path.
    cache: a :class:`FFTConvCache`.
    """
    xp = get_array_module(x)
    OH, OW = check_conv_args(x.shape, w.shape, None if b is None else b.shape, stride, pad)
    if stride != 1:
        raise ValueError(f"conv (fft): the FFT algorithm needs stride 1, got stride {stride}; "
                         "use algo 'im2col' (or 'auto') for a strided layer")
    xf, wf, yf, s = _forward_spectra(x, w, pad)
    out = _irfft_images(yf, s, slice(0, OH), slice(0, OW), xp.empty((x.shape[0], OH, OW, w.shape[0]), dtype=x.dtype))
    if b is not None:
        out += b
    return out, FFTConvCache(xf, wf, x.shape, w.shape, pad, b is not None)


def conv2d_fft_pool_forward(x, w, pool, pad=0):
    """Inference only: max-pool(pool x pool, stride pool) of the FFT convolution
    of x by w (no bias), each piece of the batch pooled right after its inverse
    transform, while it is in cache, instead of in a second pass over the whole
    output.  Returns (N, OH // pool, OW // pool, F); there is no backward pass.
    Equal to ``ops.maxpool2d_forward(conv2d_fft_forward(x, w, None, 1, pad)[0], pool)[0]``.
    NumPy arrays only: on CuPy :func:`minisiamese.ops.conv_block_forward` runs the two ops in turn."""
    xp = get_array_module(x)
    if xp is not np:
        raise ValueError("conv (fft) + pool: the fused inference path is written for NumPy arrays; "
                         "on CuPy run conv2d_fft_forward and maxpool2d_forward in turn")
    OH, OW = check_conv_args(x.shape, w.shape, None, 1, pad)
    N, F = x.shape[0], w.shape[0]
    PH, PW = OH // pool, OW // pool
    if min(PH, PW) < 1:
        raise ValueError(f"conv (fft) + pool: window {pool}x{pool} does not fit the {OH}x{OW} output")
    _, _, yf, s = _forward_spectra(x, w, pad)
    out = xp.empty((N, PH, PW, F), dtype=x.dtype)                             # (N, PH, PW, F)

    def run(n0, n1):
        y = xp.fft.irfft2(yf[n0:n1], s=s, axes=(1, 2))[:, :PH * pool, :PW * pool]
        out[n0:n1] = y.reshape(n1 - n0, PH, pool, PW, pool, F).max(axis=(2, 4))

    over_batch(run, N, yf.nbytes, xp, FFT_PIECE_BYTES)
    return out


def conv2d_fft_backward(dout, cache, need_dx=True):
    """dout (N, OH, OW, F) -> dx (N, H, W, C) or None, dw (F, C, KH, KW), db (F,) or None.

    DY^ = rfft2(dout) at the forward's size (zero-padded at the bottom/right),
    stored conjugated, DYc = conj(DY^), as both products want it:
    DW^ = (X^)^T DYc per frequency, cropped to KH x KW after the inverse;
    DX^ = conj(DYc conj(W^)^T) per frequency (the conjugate of the batch-sized
    result is taken piece by piece just before its inverse), cropped to the
    unpadded input.
    """
    xf, wf, x_shape, w_shape, pad, has_bias = cache
    xp = get_array_module(dout)
    N, H, W, C = x_shape
    F, _, KH, KW = w_shape
    Hp, Wr = wf.shape[:2]
    s = (H + 2 * pad, W + 2 * pad)
    db = dout.reshape(-1, F).sum(axis=0) if has_bias else None               # (F,)
    dyc = _rfft_images(dout, s, 0, xp.empty((N, Hp, Wr, F), dtype=xf.dtype), conj=True)  # (N, Hp, Wr, F)
    dwf = xp.matmul(_per_frequency(xf).transpose(0, 2, 1), _per_frequency(dyc))  # (K, C, F)
    dw = filter_from_spectrum(dwf.reshape(Hp, Wr, C, F), s, KH, KW, dout.dtype)  # (F, C, KH, KW)
    dx = None
    if need_dx:
        dxc = xp.empty((N, Hp, Wr, C), dtype=xf.dtype)                       # conj(DX^) (N, Hp, Wr, C)
        xp.matmul(_per_frequency(dyc), xp.conj(wf).reshape(Hp * Wr, C, F).transpose(0, 2, 1),
                  out=_per_frequency(dxc))
        dx = _irfft_images(dxc, s, slice(pad, pad + H), slice(pad, pad + W),
                           xp.empty(x_shape, dtype=dout.dtype), conj=True)
    return dx, dw, db
