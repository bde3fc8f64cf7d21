"""The ground floor: every exception a user can cause (bad files, values,
devices), under one base class, :class:`MinisiameseError`, whose message the
CLI prints on one line instead of a traceback; and the primitives that build
such messages and check values (:func:`shown`, :func:`is_number`,
:func:`require_int`, :func:`require_number`).  It imports nothing from the
library, so every module may use it."""
import math

# The one bound on a seed, wherever it comes from (--seed, --seeds, the Python API, a stored run):
# one 32-bit word, what NumPy's generators take as one entry and what a run's files record.
MAX_SEED = 2 ** 32 - 1


class MinisiameseError(Exception):
    """Something a user can cause and mend; the message is one line naming the file, option or value."""


class BackendError(MinisiameseError, RuntimeError):
    """The requested device cannot be used on this machine."""


class CheckpointError(MinisiameseError, ValueError):
    """An .npz file of ours (weights, a training checkpoint, a cache) is missing,
    damaged or of another kind; the message names it."""


class ConfigError(MinisiameseError, ValueError):
    """A config value or key (or a command-line option) is not acceptable; the message names it."""


class DataError(MinisiameseError, ValueError):
    """Bad or missing data; the message names the file and line."""


class DownloadError(MinisiameseError, RuntimeError):
    """A download, checksum or extraction failed; the message says which and why."""


class InputError(MinisiameseError, ValueError):
    """Input images or labels have the wrong shape, dtype or values."""


class RunFolderBusy(MinisiameseError, RuntimeError):
    """Another live process holds this run folder."""


class TrainingError(MinisiameseError, RuntimeError):
    """Training cannot go on (non-finite loss, a checkpoint for another run...)."""


# What the CLI reports as one line: ours, and the OS's refusals of a path.
USER_ERRORS = (MinisiameseError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
               FileExistsError)


def shown(v):
    """repr(v) for an error message.  An integer too long for Python to print
    (over 4,300 digits), alone or inside a list, is described instead of
    crashing the message."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 10000:
        return f"an integer of about {int(v.bit_length() * 0.30103)} digits"
    try:
        return repr(v)
    except ValueError:                                   # a list or dict holding such an integer
        return f"a {type(v).__name__} holding an integer too long to print"


def is_number(v, none=False):
    """An int or float as JSON gives it (a bool is not one); None too when ``none``."""
    return (v is None and none) or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _span(lo, hi, lo_open=False, hi_open=False):
    """'in [lo, hi]', '(lo, hi)', ...; '>= lo' or '> lo' without an upper bound."""
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def require_int(name, value, lo, hi=None, error=ConfigError, got=None):
    """``value`` when it is an int (not a bool) in [lo, hi] (no upper bound when
    ``hi`` is None); else ``error(message)`` raised, the message "NAME must be an
    integer in [LO, HI], got VALUE" (``got``: how to show the value, when it is
    the text a user typed rather than what it was converted to)."""
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value and (hi is None or value <= hi):
        return value
    raise error(f"{name} must be an integer {_span(lo, hi)}, got {shown(value) if got is None else got}")


def require_number(name, value, lo, hi=None, lo_open=False, hi_open=False, what="", why="", error=ConfigError):
    """``value`` when it is a finite int or float (not a bool; NaN is no number
    here) in [lo, hi] -- ``lo_open``/``hi_open`` leave an end out, no upper bound
    when ``hi`` is None; else ``error(message)`` raised, the message "NAME must be
    WHAT in [LO, HI], got VALUE" + ``why`` (``what``, e.g. "a rate ", says what
    the number is; ``why``, why the range is what it is)."""
    if is_number(value) and not (isinstance(value, float) and not math.isfinite(value)) \
            and (lo < value if lo_open else lo <= value) \
            and (hi is None or (value < hi if hi_open else value <= hi)):
        return value
    raise error(f"{name} must be {what}{_span(lo, hi, lo_open, hi_open)}, got {shown(value)}{why}")
