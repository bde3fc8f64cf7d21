"""errors.py, the ground floor: one base class for every error a user can
cause, the range primitives every check of a value uses, one seed bound."""
import ast
import glob
import math
import os

import pytest

from fixtures import make_dataset, tiny_config
from minisiamese import errors
from minisiamese.errors import (MAX_SEED, USER_ERRORS, CheckpointError, ConfigError, DataError, MinisiameseError,
                                require_int, require_number)
from minisiamese.runconfig import ExperimentConfig, build_config
from minisiamese.train import Trainer

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "minisiamese")


def _tree(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read())


def test_errors_imports_nothing_from_the_library():
    for node in ast.walk(_tree(os.path.join(PACKAGE, "errors.py"))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("minisiamese"), ast.unparse(node)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("minisiamese") for a in node.names), ast.unparse(node)


def test_every_user_error_is_defined_in_errors_under_one_base():
    """No other module defines an exception a user can cause (the two
    KeyboardInterrupt subclasses are interruptions, not errors)."""
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        if os.path.basename(path) == "errors.py":
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert not bases & {"Exception", "ValueError", "RuntimeError", "OSError", "MinisiameseError"} \
                    and not any(b.endswith("Error") for b in bases), f"{path}: class {node.name}{sorted(bases)}"
    for name in ("BackendError", "CheckpointError", "ConfigError", "DataError", "DownloadError", "InputError",
                 "RunFolderBusy", "TrainingError"):
        cls = getattr(errors, name)
        assert issubclass(cls, MinisiameseError) and issubclass(cls, USER_ERRORS)
    assert issubclass(CheckpointError, ValueError) and issubclass(errors.TrainingError, RuntimeError)


@pytest.mark.parametrize("value", [0, 11, True, 2.0, "3", None, [1]])
def test_require_int_refuses_what_is_no_integer_in_range(value):
    with pytest.raises(ConfigError, match=r"^n must be an integer in \[1, 10\], got "):
        require_int("n", value, 1, 10)


def test_require_int_takes_its_ends_and_names_the_value_as_asked():
    assert require_int("n", 1, 1, 10) == 1 and require_int("n", 10, 1, 10) == 10
    assert require_int("n", 10 ** 30, 1) == 10 ** 30                   # no upper bound
    with pytest.raises(ConfigError, match=r"^--seed must be an integer in \[0, 4294967295\], got 1_0$"):
        require_int("--seed", None, 0, MAX_SEED, got="1_0")
    with pytest.raises(DataError, match=r"^n must be an integer >= 2, got an integer of about 5000 digits$"):
        require_int("n", -10 ** 5000, 2, error=DataError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "0.5", None, 0.0, 1.5, 10 ** 5000],
                         ids=lambda v: type(v).__name__ if isinstance(v, int) and v > 10 ** 10 else None)
def test_require_number_refuses_nan_infinity_and_what_is_out_of_range(value):
    with pytest.raises(ConfigError, match=r"^p must be a rate in \(0, 1\], got .* \(why\)$"):
        require_number("p", value, 0, 1, lo_open=True, what="a rate ", why=" (why)")


def test_require_number_takes_its_closed_ends_only():
    assert require_number("p", 0, 0, 1) == 0 and require_number("p", 1.0, 0, 1) == 1.0
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1"):
        require_number("p", 1, 0, 1, hi_open=True)
    with pytest.raises(ConfigError, match=r"p must be > 0, got 0"):
        require_number("p", 0, 0, lo_open=True)
    with pytest.raises(ConfigError, match=r"p must be a finite number >= 0, got inf"):
        require_number("p", math.inf, 0, what="a finite number ")


def test_a_one_way_one_shot_task_is_a_config_error():
    """A one-shot task needs the anchor's person and at least one other: the
    config refuses oneshot_way 1 at once, not the one-shot code after training."""
    with pytest.raises(ConfigError, match=r"train.oneshot_way must be an integer in \[2, 1000\], got 1"):
        build_config(settings=["train.oneshot_way=1"])
    assert build_config(settings=["train.oneshot_way=2"]).train.oneshot_way == 2


@pytest.mark.parametrize("seed", [2 ** 33, MAX_SEED + 1, -1, True, "7"])
def test_a_seed_out_of_range_through_the_api_is_refused_at_once(tmp_path, seed):
    """One seed bound everywhere: what --seed refuses, Trainer refuses too,
    before it reads any data (a seed of 2**33 once trained, and then its run
    could not be evaluated on its validation pairs)."""
    data = str(tmp_path / "data")
    make_dataset(data)
    cfg = ExperimentConfig.from_file(tiny_config(str(tmp_path / "cfg.json")))
    with pytest.raises(ConfigError, match=rf"^seed must be an integer in \[0, {MAX_SEED}\], got "):
        Trainer(cfg, str(tmp_path / "run"), data, seed=seed, log=lambda m: None, progress=False)
    assert not os.path.exists(tmp_path / "run")
    Trainer(cfg, str(tmp_path / "run"), data, seed=MAX_SEED, log=lambda m: None, progress=False)
