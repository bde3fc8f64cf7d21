"""The exceptions a user can cause (bad files, values, devices): the CLI prints
their message on one line instead of a traceback."""
from .backend import BackendError
from .fileio import CheckpointError
from .download import DownloadError
from .config import ConfigError
from .data import DataError
from .model import InputError
from .runlock import RunFolderBusy
from .train import TrainingError

USER_ERRORS = (BackendError, CheckpointError, ConfigError, DataError, DownloadError, InputError, RunFolderBusy,
               TrainingError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
               FileExistsError)
