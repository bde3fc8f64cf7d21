"""minisiamese: a from-scratch NumPy/CuPy Siamese conv net for one-shot faces."""
from .backend import get_backend
from .checkpoint import save_model
from .config import MODEL_PRESETS, ModelConfig
from .errors import BackendError, CheckpointError, ConfigError, InputError
from .model import SiameseNet, load_model
from .optim import SGD, Adam, ExponentialDecay

__version__ = "0.1.0"

__all__ = [
    "Adam", "BackendError", "CheckpointError", "ConfigError", "ExponentialDecay", "InputError",
    "MODEL_PRESETS", "ModelConfig", "SGD", "SiameseNet", "get_backend", "load_model", "save_model",
]
