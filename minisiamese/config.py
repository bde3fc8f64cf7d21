"""ModelConfig: the architecture and its regularisation, with named presets."""
import dataclasses
import json
from dataclasses import dataclass

from .convplan import ALGOS

INITS = ("koch", "glorot")


class ConfigError(ValueError):
    """A config value or key is not acceptable; the message names it."""


def check_mapping(d, known, source, part=""):
    """``d`` must be a dict whose keys are all in ``known``."""
    where = f" in {part}" if part else ""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected an object of config keys{where}, got {type(d).__name__}")
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}{where}; known keys are {sorted(known)}")


@dataclass(frozen=True)
class ModelConfig:
    """The Siamese network of Koch et al. (2015) as the seed report sized it.

    Each tower: conv(conv_filters[k], conv_kernels[k]) + ReLU, followed by a
    pool x pool max-pool after every conv except the last; flatten; dropout
    (``dropout`` > 0 only); dense(dense_units) + sigmoid.  The towers share
    weights; the head is dense(1) on |h1 - h2|, trained through a fused
    sigmoid + binary cross-entropy.

    ``l2_conv`` applies to conv kernels, ``l2_dense`` to both dense kernels
    (Keras kernel_regularizer: lambda * sum w^2; biases are not penalised).
    ``init``: "glorot" (Keras defaults: Glorot-uniform kernels, zero biases) or
    "koch" (kernels N(0, 0.01) for conv and N(0, 0.2) for dense, biases N(0.5, 0.01)).
    ``input_size`` and ``crop`` say how a face becomes the network's input, so
    they travel with the weights: the centre square of side ``crop`` times the
    image's side is kept (1.0 = the whole image), then resized to input_size.
    ``conv_algo``: how each conv layer is computed, "im2col", "fft" or "auto"
    (see :mod:`minisiamese.convplan`), one name for every layer or a list with
    one per layer; it changes the speed, not the function.
    """
    input_size: int = 105
    crop: float = 1.0
    conv_filters: tuple = (64, 128, 128, 256)
    conv_kernels: tuple = (10, 7, 4, 4)
    pool: int = 2
    dense_units: int = 4096
    dropout: float = 0.0
    l2_conv: float = 1e-3
    l2_dense: float = 1e-4
    init: str = "glorot"
    conv_algo: tuple = "auto"

    def __post_init__(self):
        # tuples even when built from JSON lists
        object.__setattr__(self, "conv_filters", tuple(self.conv_filters))
        object.__setattr__(self, "conv_kernels", tuple(self.conv_kernels))
        algo = self.conv_algo
        if isinstance(algo, str):
            algo = (algo,) * len(self.conv_filters)
        elif not isinstance(algo, (list, tuple)):
            raise ConfigError(f"config: conv_algo must be one of {list(ALGOS)} or a list of them, got {algo!r}")
        object.__setattr__(self, "conv_algo", tuple(algo))
        self.validate()

    # -- checks -----------------------------------------------------------------
    def validate(self):
        def pos_int(name, v):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"config: {name} must be a positive integer, got {v!r}")

        def non_neg(name, v):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                raise ConfigError(f"config: {name} must be a finite number >= 0, got {v!r}")

        pos_int("input_size", self.input_size)
        if isinstance(self.crop, bool) or not isinstance(self.crop, (int, float)) or not 0 < self.crop <= 1:
            raise ConfigError(f"config: crop must be a fraction of the image side in (0, 1], got {self.crop!r}")
        pos_int("pool", self.pool)
        pos_int("dense_units", self.dense_units)
        if len(self.conv_filters) == 0 or len(self.conv_filters) != len(self.conv_kernels):
            raise ConfigError(f"config: conv_filters {list(self.conv_filters)} and conv_kernels "
                              f"{list(self.conv_kernels)} must be non-empty lists of the same length")
        for k, (f, kk) in enumerate(zip(self.conv_filters, self.conv_kernels)):
            pos_int(f"conv_filters[{k}]", f)
            pos_int(f"conv_kernels[{k}]", kk)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0 <= self.dropout < 1:
            raise ConfigError(f"config: dropout must be a rate in [0, 1), got {self.dropout!r}")
        non_neg("l2_conv", self.l2_conv)
        non_neg("l2_dense", self.l2_dense)
        if self.init not in INITS:
            raise ConfigError(f"config: init must be one of {INITS}, got {self.init!r}")
        if len(self.conv_algo) != len(self.conv_filters):
            raise ConfigError(f"config: conv_algo {list(self.conv_algo)} must name one algorithm per conv layer "
                              f"({len(self.conv_filters)}), or be one name for all")
        for k, algo in enumerate(self.conv_algo):
            if algo not in ALGOS:
                raise ConfigError(f"config: conv_algo[{k}] (layer conv{k + 1}) must be one of {list(ALGOS)}, "
                                  f"got {algo!r}")
        self.feature_shape()  # raises when the maps shrink to nothing

    def feature_shape(self):
        """(H, W, C) of the last conv block's output, checking every layer fits."""
        return self._conv_shapes()[-1]

    def conv_input_shapes(self):
        """[(H, W, C)] of each conv layer's input, in order."""
        return self._conv_shapes()[:-1]

    def _conv_shapes(self):
        s, c = self.input_size, 1
        n = len(self.conv_kernels)
        shapes = []
        for k, kk in enumerate(self.conv_kernels):
            shapes.append((s, s, c))
            c = self.conv_filters[k]
            if kk > s:
                raise ConfigError(f"config: conv{k + 1} kernel {kk} does not fit its {s}x{s} input "
                                  f"(input_size {self.input_size})")
            s = s - kk + 1
            if k < n - 1:
                if self.pool > s:
                    raise ConfigError(f"config: pool {self.pool} does not fit the {s}x{s} output of conv{k + 1}")
                s //= self.pool
        shapes.append((s, s, c))
        return shapes

    # -- shapes -------------------------------------------------------------------
    def param_shapes(self):
        """Ordered name -> shape, in forward order (conv weights (F, C, KH, KW))."""
        shapes = {}
        c = 1
        for k, (f, kk) in enumerate(zip(self.conv_filters, self.conv_kernels), start=1):
            shapes[f"conv{k}.w"] = (f, c, kk, kk)
            shapes[f"conv{k}.b"] = (f,)
            c = f
        h, w, c = self.feature_shape()
        shapes["dense.w"] = (h * w * c, self.dense_units)
        shapes["dense.b"] = (self.dense_units,)
        shapes["out.w"] = (self.dense_units, 1)
        shapes["out.b"] = (1,)
        return shapes

    def num_params(self):
        total = 0
        for shape in self.param_shapes().values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    # -- (de)serialisation ----------------------------------------------------------
    def to_dict(self):
        d = dataclasses.asdict(self)
        d["conv_filters"] = list(self.conv_filters)
        d["conv_kernels"] = list(self.conv_kernels)
        d["conv_algo"] = list(self.conv_algo)
        return d

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d, source="config"):
        check_mapping(d, {f.name for f in dataclasses.fields(cls)}, source)
        for key in ("conv_filters", "conv_kernels"):
            if key in d and not isinstance(d[key], (list, tuple)):
                raise ConfigError(f"{source}: {key} must be a list of integers, got {d[key]!r}")
        try:
            return cls(**d)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {str(exc).removeprefix('config: ')}") from None

    @classmethod
    def from_json(cls, text, source="config"):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_dict(d, source)

    @classmethod
    def preset(cls, name):
        if name not in MODEL_PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}")
        return MODEL_PRESETS[name]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


# Architectures by name (ModelConfig.preset); whole runs by name are runconfig.RUN_PRESETS.
MODEL_PRESETS = {
    "baseline": ModelConfig(),
    "narrow": ModelConfig(dense_units=2048),
    "dropout": ModelConfig(dropout=0.1),
}
