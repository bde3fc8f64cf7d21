"""minisiamese: a from-scratch NumPy/CuPy Siamese conv net for one-shot faces."""
from .backend import BackendError, get_backend
from .checkpoint import save_model
from .config import MODEL_PRESETS, ConfigError, ModelConfig
from .fileio import CheckpointError
from .model import InputError, SiameseNet, load_model
from .optim import SGD, Adam, ExponentialDecay

__version__ = "0.1.0"

__all__ = [
    "Adam", "BackendError", "CheckpointError", "ConfigError", "ExponentialDecay", "InputError",
    "MODEL_PRESETS", "ModelConfig", "SGD", "SiameseNet", "get_backend", "load_model", "save_model",
]
