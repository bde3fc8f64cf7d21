"""The one trained model that ships with minisiamese: bn512w, seed 0, calibrated
on its validation pairs, trained on LFW View 1's training people only.  Its
model card (MODEL_CARD.md beside this file) says how it was trained, what it
scored and what it must not be used for.  ``verify`` and ``identify`` answer
with it when no ``--checkpoint`` is given."""
import hashlib
import os

from ..errors import CheckpointError

NAME = "bn512w-s0"
FILE = "bn512w-s0.npz"
SHA256 = "97e3e0be4af4615fc10a6bece24128c721a7a410ac716316331def57ce136925"   # of FILE, checked at every load
DESCRIPTION = f"the shipped {NAME} (bn512w, seed 0, calibrated; trained on LFW View 1's training people)"


def model_path():
    """The shipped model file's path, after checking its SHA-256; a
    CheckpointError when it is missing or is not the file that shipped."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), FILE)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise CheckpointError(f"{path}: the shipped model cannot be read ({exc.strerror or exc}); reinstall "
                              f"minisiamese, or pass --checkpoint") from None
    if h.hexdigest() != SHA256:
        raise CheckpointError(f"{path}: not the model that shipped (SHA-256 {h.hexdigest()[:16]}..., expected "
                              f"{SHA256[:16]}...); reinstall minisiamese, or pass --checkpoint")
    return path
