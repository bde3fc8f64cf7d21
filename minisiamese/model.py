"""SiameseNet: two weight-sharing conv towers, a comparison of their codes (Koch's L1 join, or more) and a
logistic head."""
import math
import os

import numpy as np

from . import calibration, convplan, losses, ops
from .backend import get_backend, to_numpy
from .checkpoint import read_model_file
from .config import ModelConfig
from .errors import InputError


def init_params(config, seed, dtype=np.float32):
    """Fresh weights as NumPy arrays (drawn on the CPU so every backend starts
    from the same numbers for the same seed)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in config.param_shapes().items():
        if name.endswith((".gamma", ".beta")):          # batch norm starts as the identity (no draw)
            params[name] = (np.ones(shape) if name.endswith(".gamma") else np.zeros(shape)).astype(dtype)
            continue
        is_bias = name.endswith(".b")
        is_conv = name.startswith("conv")
        if config.init == "koch":
            if is_bias:
                a = rng.normal(0.5, 1e-2, shape)
            else:
                a = rng.normal(0.0, 1e-2 if is_conv else 2e-1, shape)
        else:  # glorot: Keras's defaults
            if is_bias:
                a = np.zeros(shape)
            else:
                if is_conv:
                    F, C, KH, KW = shape
                    fan_in, fan_out = C * KH * KW, F * KH * KW
                else:
                    fan_in, fan_out = shape
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                a = rng.uniform(-limit, limit, shape)
        params[name] = a.astype(dtype)
    return params


def init_buffers(config, dtype=np.float32):
    """Batch norm's running statistics before any step: mean 0, variance 1."""
    return {name: (np.zeros(shape) if name.endswith(".mean") else np.ones(shape)).astype(dtype)
            for name, shape in config.buffer_shapes().items()}


def channels_last(x, name, size, dtype, xp):
    """Images ``x`` (N, 1, size, size), numeric and finite, as (N, size, size, 1) channels-last arrays of
    ``dtype`` on ``xp``; an InputError naming ``name`` otherwise."""
    if not hasattr(x, "shape") or x.ndim != 4 or tuple(x.shape[1:]) != (1, size, size):
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise InputError(f"{name}: expected images of shape (N, 1, {size}, {size}), got {shape}")
    if x.dtype.kind not in "fiub":
        raise InputError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    x = xp.asarray(x, dtype=dtype)
    if not bool(xp.isfinite(x).all()):
        raise InputError(f"{name}: contains NaN or Inf pixels")
    return x.reshape(x.shape[0], size, size, 1)          # C = 1: NCHW -> NHWC is a reshape


class SiameseNet:
    """The Koch et al. Siamese network, forward and backward written out by hand.

    Inputs are pairs ``x1, x2`` of shape (N, 1, S, S) (S = config.input_size,
    105 by default), float in [0, 1]; labels ``y`` are 1 for the same person.
    """

    def __init__(self, config=None, seed=0, backend="cpu", dtype=np.float32):
        self.config = config if config is not None else ModelConfig()
        if not isinstance(self.config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(self.config).__name__}")
        self.xp = get_backend(backend)
        self.dtype = np.dtype(dtype)
        self.params = {k: self.xp.asarray(v) for k, v in init_params(self.config, seed, self.dtype).items()}
        self.buffers = {k: self.xp.asarray(v) for k, v in init_buffers(self.config, self.dtype).items()}
        self.rng = self.xp.random.default_rng(seed + 1)   # dropout masks
        self.n_conv = len(self.config.conv_filters)
        self.conv_algos = None       # the fixed algorithms ["im2col" | "fft", ...] of the plan (see fix_conv_plan)
        self.calibration = None      # [a, c]: score() gives sigmoid(a z + c) (minisiamese.calibration); None: sigmoid(z)

    # ------------------------------------------------------------------ parameters
    def state_dict(self):
        """Ordered name -> array: the parameters in forward order, then the
        buffers (batch norm's running statistics); the live arrays."""
        return {**self.params, **self.buffers}

    def load_state_dict(self, state, source="state dict"):
        expected = self.config.state_shapes()
        missing = [k for k in expected if k not in state]
        extra = [k for k in state if k not in expected]
        if missing or extra:
            raise ValueError(f"{source}: parameter names do not match the model "
                             f"(missing {missing}, unexpected {extra})")
        for name, shape in expected.items():
            if tuple(state[name].shape) != shape:
                raise ValueError(f"{source}: {name} has shape {tuple(state[name].shape)}, "
                                 f"the model needs {shape}")
        loaded = {k: self.xp.asarray(state[k], dtype=self.dtype).copy() for k in expected}
        self.params = {k: loaded[k] for k in self.config.param_shapes()}
        self.buffers = {k: loaded[k] for k in self.config.buffer_shapes()}

    def num_params(self):
        return sum(int(v.size) for v in self.params.values())

    # ------------------------------------------------------------------ inputs
    def _images(self, x, name):
        """(N, 1, S, S) in [0, 1] -> (N, S, S, 1) channels-last, model dtype (:func:`channels_last`)."""
        return channels_last(x, name, self.config.input_size, self.dtype, self.xp)

    def _pair(self, x1, x2):
        a, b = self._images(x1, "x1"), self._images(x2, "x2")
        if a.shape[0] != b.shape[0]:
            raise InputError(f"x1 has {a.shape[0]} images but x2 has {b.shape[0]}")
        return a, b

    # ------------------------------------------------------------------ the tower
    def _tower_forward(self, x, train, need_grad=True):
        """x (M, S, S, 1) -> h (M, U), and the caches of every layer in order.
        ``train`` turns dropout on and makes batch norm use (and update) the
        batch's statistics; ``need_grad=False`` (inference) lets layers skip
        what only the backward pass reads (max-pooling's argmax), and with
        ``flip_average`` averages the embeddings of x and of its mirror image."""
        if need_grad or train or not self.config.flip_average:          # flip averaging: inference only
            return self._tower(x, train, need_grad)
        M = x.shape[0]
        h, _ = self._tower(self.xp.concatenate([x, x[:, :, ::-1]]), train, need_grad)   # (2M, U)
        return (h[:M] + h[M:]) / 2, None

    def _running(self, name):
        return {"mean": self.buffers[f"{name}.mean"], "var": self.buffers[f"{name}.var"]}

    def _normalize_forward(self, h, name, train):
        """Batch norm ``name`` on h (channels last); in training the op updates the running statistics in
        place, and they are the arrays of self.buffers."""
        return ops.batchnorm_forward(h, self.params[f"{name}.gamma"], self.params[f"{name}.beta"],
                                     self._running(name), train, momentum=self.config.bn_momentum)

    def _conv_norm(self, k):
        """Layer k's batch norm for :func:`ops.conv_block_forward` (its running statistics are the arrays of
        self.buffers, updated in place in training), or None without batch norm."""
        if not self.config.batch_norm:
            return None
        return {"gamma": self.params[f"bn{k}.gamma"], "beta": self.params[f"bn{k}.beta"],
                "running": self._running(f"bn{k}")}

    def _tower(self, x, train, need_grad):
        p, caches = self.params, []
        bn = self.config.batch_norm
        h = x
        algos = self.conv_algos or [step["algo"] for step in self.conv_plan(x.shape[0], timings=False)]
        for k in range(1, self.n_conv + 1):
            # conv -> pool (all but the last layer) -> bias + ReLU or BN + ReLU: see ops.conv_block_forward
            h, cache = ops.conv_block_forward(h, p[f"conv{k}.w"], None if bn else p[f"conv{k}.b"], self._conv_norm(k),
                                              algos[k - 1], self.config.pool if k < self.n_conv else None, train,
                                              need_grad, momentum=self.config.bn_momentum)
            caches.append(cache)
        h, c_flat = ops.flatten_forward(h)                                       # (M, D)
        h, c_drop = ops.dropout_forward(h, self.config.dropout, train, self.rng)
        h, c_dense = ops.dense_forward(h, p["dense.w"], None if bn else p["dense.b"])   # (M, U)
        c_bn = None
        if bn:
            h, c_bn = self._normalize_forward(h, "bn_dense", train)
        h, c_emb = ops.activation_forward(h, self.config.embedding_activation)
        return h, (caches, c_flat, c_drop, c_dense, c_bn, c_emb)

    def _tower_backward(self, dh, cache, grads):
        """Adds the tower's parameter gradients into ``grads``."""
        caches, c_flat, c_drop, c_dense, c_bn, c_emb = cache
        d = ops.activation_backward(dh, c_emb, self.config.embedding_activation)
        if c_bn is not None:
            d, grads["bn_dense.gamma"], grads["bn_dense.beta"] = ops.batchnorm_backward(d, c_bn)
        d, grads["dense.w"], db = ops.dense_backward(d, c_dense)
        if db is not None:
            grads["dense.b"] = db
        d = ops.dropout_backward(d, c_drop)
        d = ops.flatten_backward(d, c_flat)
        for k in range(self.n_conv, 0, -1):
            d, grads[f"conv{k}.w"], other = ops.conv_block_backward(d, caches[k - 1], need_dx=k > 1)
            for key, g in other.items():                        # conv{k}.b, or bn{k}.gamma and bn{k}.beta
                grads[f"conv{k}.b" if key == "b" else f"bn{k}.{key}"] = g
            caches[k - 1] = None                                # free the activations early

    def conv_plan(self, images, timings=True):
        """The algorithm each conv layer runs for a batch of ``images`` tower inputs (2 x the pairs of a
        batch): :func:`minisiamese.convplan.layer_plan` of the config's settings ("auto" is timed once per
        layer shape and machine)."""
        weights = [self.params[f"conv{k}.w"].shape for k in range(1, self.n_conv + 1)]
        return convplan.layer_plan(self.config.conv_algo, self.config.conv_input_shapes(), weights, images,
                                   self.dtype, self.xp, timings)

    def fix_conv_plan(self, images=None, algos=None):
        """Fix the layers' algorithms for every later batch: the plan resolved
        for ``images`` tower inputs, or the given list of ``algos`` (a stored
        plan, so a resumed run computes exactly what the first one did).
        Returns the plan as :meth:`conv_plan` describes it."""
        plan = self.conv_plan(images) if algos is None else convplan.stored_plan(self.config.conv_algo, algos)
        self.conv_algos = [step["algo"] for step in plan]
        return plan

    # ------------------------------------------------------------------ the pair
    def _forward(self, a, b, train, need_grad=True):
        """Both towers run as one batch of 2N images (one set of big GEMMs)."""
        N = a.shape[0]
        h, tower_cache = self._tower_forward(self.xp.concatenate([a, b]), train, need_grad)   # (2N, U)
        d, c_join = ops.head_features_forward(h[:N], h[N:], self.config.head)     # (N, head width)
        z, c_out = ops.dense_forward(d, self.params["out.w"], self.params["out.b"])  # (N, 1)
        return z[:, 0], (tower_cache, c_join, c_out)

    def logits(self, x1, x2, train=False):
        a, b = self._pair(x1, x2)
        return self._forward(a, b, train, need_grad=False)[0]

    def embed(self, x, batch_size=256):
        """(N, U) tower outputs for images x (N, 1, S, S) in eval mode, computed
        ``batch_size`` images at a time; an array on the backend.  A face is
        embedded once however many pairs it is in: :meth:`score` compares them."""
        return self._embed(self._images(x, "x"), batch_size)

    def _embed(self, a, batch_size):
        """embed() of channels-last images a (N, S, S, 1) already checked."""
        out = [self._tower_forward(a[i:i + batch_size], False, need_grad=False)[0]
               for i in range(0, a.shape[0], batch_size)]
        if not out:
            return self.xp.zeros((0, self.config.dense_units), dtype=self.dtype)
        return out[0] if len(out) == 1 else self.xp.concatenate(out)

    def _head(self, h1, h2):
        """The head's logits z = d w + b (N,) on the backend, for embeddings
        h1[n] and h2[n] (N, U): d are the comparisons of ``config.head``
        (Koch's: d = |h1 - h2|)."""
        xp = self.xp
        h1, h2 = xp.asarray(h1, dtype=self.dtype), xp.asarray(h2, dtype=self.dtype)
        U = self.config.dense_units
        if h1.ndim != 2 or h1.shape[1] != U or h1.shape != h2.shape:
            raise InputError(f"score: expected two (N, {U}) embedding arrays, got {tuple(h1.shape)} and "
                             f"{tuple(h2.shape)}")
        d, _ = ops.head_features_forward(h1, h2, self.config.head)
        z, _ = ops.dense_forward(d, self.params["out.w"], self.params["out.b"])
        return z[:, 0]

    def head_logits(self, h1, h2):
        """(N,) logits (NumPy float64) that embeddings h1[n] and h2[n] from
        :meth:`embed` show the same person, before any calibration."""
        return to_numpy(self._head(h1, h2)).astype(np.float64)

    def score(self, h1, h2):
        """(N,) probabilities (NumPy) that embeddings h1[n] and h2[n] (N, U), from
        :meth:`embed`, show the same person: sigmoid(z) of the head's logits,
        or sigmoid(a z + c) (float64) when the model has a calibration fitted on
        validation pairs (:mod:`minisiamese.calibration`)."""
        if self.calibration is None:
            return to_numpy(ops.sigmoid(self._head(h1, h2)))
        return calibration.apply_platt(self.head_logits(h1, h2), self.calibration)

    def predict_proba(self, x1, x2, batch_size=128):
        """(N,) probabilities that each pair shows the same person (eval mode),
        returned as a NumPy array: ``score(embed(x1), embed(x2))``, a batch of
        ``batch_size`` pairs at a time.  :meth:`logits` in inference mode (both
        towers as one batch) computes the same function."""
        a, b = self._pair(x1, x2)
        out = [self.score(self._embed(a[i:i + batch_size], batch_size), self._embed(b[i:i + batch_size], batch_size))
               for i in range(0, a.shape[0], batch_size)]
        return np.concatenate(out) if out else np.zeros(0, dtype=self.dtype)

    def l2_penalty(self):
        """The weight penalty alone and its gradients (kernels only)."""
        total, grads = 0.0, {}
        for name, w in self.params.items():
            if name.endswith(".w"):
                lam = self.config.l2_conv if name.startswith("conv") else self.config.l2_dense
                if lam:
                    pen, grads[name] = losses.l2_penalty(w, lam)
                    total = total + pen
        return total, grads

    def loss_and_grads(self, x1, x2, y, train=True, return_probs=False):
        """Mean BCE (fused with the sigmoid) + L2 penalty, and its gradient for
        every parameter, keyed like :meth:`state_dict`.  ``train`` turns dropout on.

        Returns (loss: float, grads: dict), and with ``return_probs`` also the
        (N,) probabilities of this forward pass (on the backend).
        """
        a, b = self._pair(x1, x2)
        y = self.xp.asarray(y, dtype=self.dtype).reshape(-1)
        if y.shape[0] != a.shape[0]:
            raise InputError(f"y has {y.shape[0]} labels for {a.shape[0]} pairs")
        if not bool(((y == 0) | (y == 1)).all()):
            raise InputError("y: labels must be 0 (different people) or 1 (same person)")
        z, (tower_cache, c_join, c_out) = self._forward(a, b, train)
        loss, c_loss = losses.bce_with_logits_forward(z, y)
        grads = {}
        dz = losses.bce_with_logits_backward(c_loss)[:, None]                     # (N, 1)
        dd, grads["out.w"], grads["out.b"] = ops.dense_backward(dz, c_out)         # (N, U)
        dh1, dh2 = ops.head_features_backward(dd, c_join)
        self._tower_backward(self.xp.concatenate([dh1, dh2]), tower_cache, grads)
        penalty, pgrads = self.l2_penalty()
        for name, g in pgrads.items():
            grads[name] = grads[name] + g
        grads = {k: grads[k] for k in self.params}                                 # forward order
        if return_probs:
            return float(loss + penalty), grads, ops.sigmoid(z)
        return float(loss + penalty), grads


def load_model(path, backend="cpu", dtype=np.float32, with_extra=False):
    """A SiameseNet with the weights and config stored in ``path`` (a model.npz
    written by :func:`minisiamese.checkpoint.save_model`), validated, with its
    calibration when the file has one; with ``with_extra`` also the file's
    extra arrays (threshold, normalisation, calibration)."""
    config, params, extra = read_model_file(path)
    net = SiameseNet(config, backend=backend, dtype=dtype)
    net.load_state_dict(params, source=os.fspath(path))
    net.calibration = extra.get("calibration")                    # checked by read_model_file
    return (net, extra) if with_extra else net
