"""ModelConfig: the architecture and its regularisation, with named presets."""
import dataclasses
import json
from dataclasses import dataclass

from .convplan import ALGOS
from .errors import ConfigError, require_int, require_number, shown
from .ops import HEAD_FEATURES, head_width

INITS = ("koch", "glorot")
EMBEDDING_ACTIVATIONS = ("sigmoid", "relu", "none")


def check_mapping(d, known, source, part=""):
    """``d`` must be a dict whose keys are all in ``known``."""
    where = f" in {part}" if part else ""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected an object of config keys{where}, got {type(d).__name__}")
    unknown = sorted(k if isinstance(k, str) else shown(k) for k in d if k not in known)
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

    Beyond Koch's net (all off by default, so a stored baseline reads as before):
    ``batch_norm`` normalises every layer's output per channel (conv: conv ->
    max-pool -> BN -> ReLU, and the conv bias is dropped since BN's beta plays
    its role; dense: dense -> BN -> activation, no dense bias); its running
    statistics are part of the state dict.  ``embedding_activation`` is what
    follows the embedding's dense layer ("sigmoid" as Koch, "relu" or "none"),
    ``dense_units`` its width.  ``head`` lists the comparisons of the two
    embeddings that the logistic unit reads (``ops.head_features_forward``:
    "abs" |h1 - h2| as Koch, "sq" (h1 - h2)^2, "prod" h1 h2, "cos" their cosine).
    ``flip_average``: at inference a face's embedding is the mean of the
    embeddings of the image and of its mirror image (training is unchanged).
    ``bn_momentum``: the running statistics' decay per training step.
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
    batch_norm: bool = False
    bn_momentum: float = 0.9
    embedding_activation: str = "sigmoid"
    head: tuple = ("abs",)
    flip_average: bool = False

    def __post_init__(self):
        # tuples even when built from JSON lists
        for name in ("conv_filters", "conv_kernels"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise ConfigError(f"config: {name} must be a list of integers, got {shown(getattr(self, name))}")
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.head, (list, tuple)):
            object.__setattr__(self, "head", tuple(self.head))
        algo = self.conv_algo
        if isinstance(algo, str):
            algo = (algo,) * len(self.conv_filters)
        elif not isinstance(algo, (list, tuple)):
            raise ConfigError(f"config: conv_algo must be one of {list(ALGOS)} or a list of them, got {shown(algo)}")
        object.__setattr__(self, "conv_algo", tuple(algo))
        self.validate()

    # -- checks -----------------------------------------------------------------
    def validate(self):
        require_int("config: input_size", self.input_size, 1, 1000)      # a 1000 x 1000 face is 1 MB already
        require_number("config: crop", self.crop, 0, 1, lo_open=True, what="a fraction of the image side ")
        require_int("config: pool", self.pool, 1, 1000)
        require_int("config: dense_units", self.dense_units, 1, 65536)
        if len(self.conv_filters) == 0 or len(self.conv_filters) != len(self.conv_kernels):
            raise ConfigError(f"config: conv_filters {shown(list(self.conv_filters))} and conv_kernels "
                              f"{shown(list(self.conv_kernels))} must be non-empty lists of the same length")
        for k, (f, kk) in enumerate(zip(self.conv_filters, self.conv_kernels)):
            require_int(f"config: conv_filters[{k}]", f, 1, 4096)
            require_int(f"config: conv_kernels[{k}]", kk, 1, 1000)
        require_number("config: dropout", self.dropout, 0, 1, hi_open=True, what="a rate ")
        for name in ("l2_conv", "l2_dense"):
            require_number(f"config: {name}", getattr(self, name), 0, what="a finite number ")
        if self.init not in INITS:
            raise ConfigError(f"config: init must be one of {INITS}, got {shown(self.init)}")
        if len(self.conv_algo) != len(self.conv_filters):
            raise ConfigError(f"config: conv_algo {shown(list(self.conv_algo))} must name one algorithm per conv layer "
                              f"({len(self.conv_filters)}), or be one name for all")
        for k, algo in enumerate(self.conv_algo):
            if algo not in ALGOS:
                raise ConfigError(f"config: conv_algo[{k}] (layer conv{k + 1}) must be one of {list(ALGOS)}, "
                                  f"got {shown(algo)}")
        for name in ("batch_norm", "flip_average"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config: {name} must be true or false, got {shown(getattr(self, name))}")
        require_number("config: bn_momentum", self.bn_momentum, 0, 1, hi_open=True)
        if self.embedding_activation not in EMBEDDING_ACTIVATIONS:
            raise ConfigError(f"config: embedding_activation must be one of {list(EMBEDDING_ACTIVATIONS)}, "
                              f"got {shown(self.embedding_activation)}")
        if not isinstance(self.head, tuple) or not self.head or not all(isinstance(f, str) for f in self.head) \
                or len(set(self.head)) != len(self.head) or any(f not in HEAD_FEATURES for f in self.head):
            raise ConfigError(f"config: head must be a non-empty list of distinct names from {list(HEAD_FEATURES)}, "
                              f"got {shown(self.head)}")
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
        """Ordered name -> shape of the trained parameters, in forward order
        (conv weights (F, C, KH, KW); with batch_norm, bnK.gamma/beta in place
        of the conv and dense biases)."""
        shapes = {}
        c = 1
        for k, (f, kk) in enumerate(zip(self.conv_filters, self.conv_kernels), start=1):
            shapes[f"conv{k}.w"] = (f, c, kk, kk)
            if self.batch_norm:
                shapes[f"bn{k}.gamma"], shapes[f"bn{k}.beta"] = (f,), (f,)
            else:
                shapes[f"conv{k}.b"] = (f,)
            c = f
        h, w, c = self.feature_shape()
        shapes["dense.w"] = (h * w * c, self.dense_units)
        if self.batch_norm:
            shapes["bn_dense.gamma"], shapes["bn_dense.beta"] = (self.dense_units,), (self.dense_units,)
        else:
            shapes["dense.b"] = (self.dense_units,)
        shapes["out.w"] = (self.head_width(), 1)
        shapes["out.b"] = (1,)
        return shapes

    def buffer_shapes(self):
        """Ordered name -> shape of the state that is not trained by gradient:
        batch norm's running mean and variance per layer (none without it)."""
        if not self.batch_norm:
            return {}
        widths = [(f"bn{k}", f) for k, f in enumerate(self.conv_filters, start=1)] + [("bn_dense", self.dense_units)]
        return {f"{name}.{stat}": (n,) for name, n in widths for stat in ("mean", "var")}

    def state_shapes(self):
        """Everything a weights file holds: parameters, then buffers."""
        return {**self.param_shapes(), **self.buffer_shapes()}

    def head_width(self):
        """Columns of the head's input: dense_units per vector comparison, 1 for the cosine."""
        return head_width(self.head, self.dense_units)

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
        d["head"] = list(self.head)
        return d

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d, source="config"):
        check_mapping(d, {f.name for f in dataclasses.fields(cls)}, source)
        for key in ("conv_filters", "conv_kernels"):
            if key in d and not isinstance(d[key], (list, tuple)):
                raise ConfigError(f"{source}: {key} must be a list of integers, got {shown(d[key])}")
        try:
            return cls(**d)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {str(exc).removeprefix('config: ')}") from None

    @classmethod
    def from_json(cls, text, source="config"):
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as exc:       # JSONDecodeError is a ValueError, as is a too-long number
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
