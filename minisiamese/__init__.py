"""minisiamese: a from-scratch NumPy/CuPy Siamese conv net for one-shot faces."""
from .backend import BackendError, get_backend
from .checkpoint import CheckpointError, load_model, save_model
from .config import PRESETS, ConfigError, ModelConfig
from .model import InputError, SiameseNet
from .optim import SGD, Adam, ExponentialDecay

__version__ = "0.1.0"

__all__ = [
    "Adam", "BackendError", "CheckpointError", "ConfigError", "ExponentialDecay", "InputError",
    "ModelConfig", "PRESETS", "SGD", "SiameseNet", "get_backend", "load_model", "save_model",
]
