"""Optimizers and the learning-rate schedule.  Updates are in place, parameter
by parameter, over the dicts that ``SiameseNet.state_dict`` and
``loss_and_grads`` return."""
import numpy as np

from .backend import get_array_module
from .errors import require_number


def _check_keys(params, grads):
    if set(params) != set(grads):
        raise ValueError(f"optimizer: gradients for {sorted(grads)} do not match parameters {sorted(params)}")


def _for_param(setting, name):
    """A scalar setting, or a dict keyed by parameter name or layer prefix
    ("conv2" covers conv2.w and conv2.b)."""
    if isinstance(setting, dict):
        if name in setting:
            return setting[name]
        layer = name.split(".")[0]
        if layer in setting:
            return setting[layer]
        raise ValueError(f"optimizer: no setting for parameter {name!r} in {sorted(setting)}")
    return setting


class Adam:
    """Adam (Kingma & Ba) with bias correction, in the Keras form:

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t)
        w <- w - alpha_t m / (sqrt(v) + eps)

    The seed report's "momentum 0.5" is beta1 = 0.5.  ``lr_scale`` multiplies
    ``lr`` (the schedule sets it each epoch).
    """

    def __init__(self, lr=1e-4, beta1=0.9, beta2=0.999, eps=1e-7):
        for name, v in (("lr", lr), ("eps", eps)):
            require_number(f"Adam: {name}", v, 0, lo_open=True)
        for name, v in (("beta1", beta1), ("beta2", beta2)):
            require_number(f"Adam: {name}", v, 0, 1, hi_open=True)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.lr_scale = 1.0
        self.t = 0
        self.m, self.v = {}, {}

    def step(self, params, grads):
        _check_keys(params, grads)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        alpha = self.lr * self.lr_scale * (1 - b2 ** self.t) ** 0.5 / (1 - b1 ** self.t)
        for name, w in params.items():
            g = grads[name]
            xp = get_array_module(w)
            if name not in self.m:
                self.m[name] = xp.zeros_like(w)
                self.v[name] = xp.zeros_like(w)
            m, v = self.m[name], self.v[name]
            if xp is not np:                            # CuPy: one fused kernel per array
                from .gpu import adam_update_gpu
                adam_update_gpu(w, xp.ascontiguousarray(g, dtype=w.dtype), m, v, alpha, b1, b2, self.eps)
                continue
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            w -= alpha * m / (xp.sqrt(v) + self.eps)

    def state_dict(self):
        state = {"t": self.t, "lr_scale": self.lr_scale}
        state.update({f"m/{k}": v for k, v in self.m.items()})
        state.update({f"v/{k}": v for k, v in self.v.items()})
        return state

    def load_state_dict(self, state, xp):
        self.t = int(state["t"])
        self.lr_scale = float(state["lr_scale"])
        self.m = {k[2:]: xp.asarray(v).copy() for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: xp.asarray(v).copy() for k, v in state.items() if k.startswith("v/")}


class SGD:
    """SGD with momentum, as Koch et al. trained: per-layer learning rates and
    momenta (``lr`` and ``momentum`` are scalars or dicts keyed by layer or
    parameter name).

        u <- mu u - eta g;   w <- w + u
    """

    def __init__(self, lr=1e-2, momentum=0.5):
        self.lr, self.momentum = lr, momentum
        self.lr_scale = 1.0
        self.u = {}

    def step(self, params, grads):
        _check_keys(params, grads)
        for name, w in params.items():
            eta = _for_param(self.lr, name) * self.lr_scale
            mu = _for_param(self.momentum, name)
            if name not in self.u:
                self.u[name] = get_array_module(w).zeros_like(w)
            u = self.u[name]
            u *= mu
            u -= eta * grads[name]
            w += u

    def state_dict(self):
        state = {"lr_scale": self.lr_scale}
        state.update({f"u/{k}": v for k, v in self.u.items()})
        return state

    def load_state_dict(self, state, xp):
        self.lr_scale = float(state["lr_scale"])
        self.u = {k[2:]: xp.asarray(v).copy() for k, v in state.items() if k.startswith("u/")}


class ExponentialDecay:
    """lr(epoch) = lr0 * rate^epoch: the seed's 1 % per epoch is rate = 0.99."""

    def __init__(self, rate=0.99):
        self.rate = require_number("ExponentialDecay: rate", rate, 0, 1, lo_open=True)

    def apply(self, optimizer, epoch):
        """Set the optimizer's scale for ``epoch`` (0-based)."""
        optimizer.lr_scale = self.rate ** epoch
        return optimizer.lr_scale
