"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015) on disk: the character sets, Lake's 20 one-shot runs, and
what Koch et al.'s experiment draws from them.

Layout (Lake's archives, the layout other loaders read), whatever the file names inside a character folder:

    <data_dir>/images_background/<Alphabet>/<character>/*.png     30 alphabets, 964 characters x 20 drawers
    <data_dir>/images_evaluation/<Alphabet>/<character>/*.png     20 alphabets, 659 characters x 20 drawers
    <data_dir>/one-shot-runs/runNN/class_labels.txt               'runNN/test/itemKK.png runNN/training/classJJ.png'

The protocol (issue 35): train on every drawer of the background set; validate on within-alphabet tasks and
pairs of the 10 evaluation alphabets the runs do not use (:data:`VALIDATION_ALPHABETS`); test on Lake's runs,
on within-alphabet trials and on pairs of the 10 run alphabets (:data:`RUN_ALPHABETS`).  Validation and test
draws come from fixed seeds, so every run and preset is measured on the same tasks and pairs.  Lake's runs
are read for the final figures only.

Every problem with the files is one :class:`~minisiamese.data.DataError` naming the file (and line): a
missing folder, a character with fewer than 2 images, an image that is not 105x105, a ``class_labels.txt``
line naming a missing file.
"""
import os
import re
from dataclasses import dataclass

import numpy as np
from .data import PairSet, cached_images, decode_gray, resized
from .errors import DataError
from .oneshot import OneShotTask, group_tasks
from .pairsampler import IdentityPool

DEFAULT_DATA_DIR = os.path.join("..", "shared", "data", "omniglot")
BACKGROUND, EVALUATION, RUNS = "images_background", "images_evaluation", "one-shot-runs"
IMAGE_SIDE = 105
PREPROCESS_VERSION = "omniglot-strokes-on-black-v1"
# Lake's runs use two runs of each of these; the other 10 evaluation alphabets are free for validation
RUN_ALPHABETS = ("Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam", "Manipuri",
                 "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan")
VALIDATION_ALPHABETS = ("Angelic", "Atemayar_Qelisayer", "Aurek-Besh", "Avesta", "Keble", "Mongolian", "Oriya",
                        "Sylheti", "Syriac_(Serto)", "ULOG")
VAL_SEED, TEST_SEED = 3501, 3502        # validation and test draws: the same for every run
WITHIN_TRIALS, TEST_PAIRS, TEST_WAY = 10000, 10000, 20


def missing_data_message(data_dir):
    return (f"Omniglot not found in {data_dir!r} (expected {BACKGROUND}/, {EVALUATION}/ and {RUNS}/ there, "
            f"<set>/<Alphabet>/<character>/*.png); point --data-dir at a copy")


def load_image(path, size=IMAGE_SIDE):
    """One Omniglot image as uint8 (size, size), *inverted*: strokes 255 (1.0 once scaled) on a 0 background.

    Why inverted: the files are black strokes on white, so as stored almost every pixel is 1 and the
    character is the few 0s.  With strokes as 1 the background is 0, so it adds nothing to a convolution's sum
    or to a ReLU's activity: a first-layer filter responds to where the strokes are, as it would to
    foreground in any other image, and a character's mass is what the net sees.  The distortions
    (``augment.kind = "koch"``) fill what they bring in by reflection, which on a 0 background brings in 0
    almost everywhere, not white bars.  The same files read the other way round would train too; this is the
    convention of most Omniglot code and of Koch's figures (white strokes on black).

    An image that is not 105x105 is refused (one DataError naming it), as is anything :func:`decode_gray`
    refuses; it is then resized to ``size`` with Pillow's antialiased bilinear filter (for 52 or 28 inputs)."""
    from PIL import ImageOps
    gray = decode_gray(path)
    if gray.size != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{path}: {gray.size[0]}x{gray.size[1]} pixels; an Omniglot image is "
                        f"{IMAGE_SIDE}x{IMAGE_SIDE}")
    return resized(ImageOps.invert(gray), size)


def _folders(path):
    """The sub-folders of ``path``, sorted (hidden ones left out)."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot list it ({exc.strerror or exc})") from None
    return [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(path, n))]


def scan_set(data_dir, set_name, alphabets=None):
    """[(alphabet, character, [image paths])] of one set (``images_background`` or ``images_evaluation``),
    of every alphabet in it or of those named in ``alphabets``: every PNG of each character folder, sorted
    by name (the names themselves mean nothing).  A DataError for a missing set or alphabet folder, an empty
    alphabet and a character with fewer than 2 images."""
    root = os.path.join(data_dir, set_name)
    if not os.path.isdir(root):
        raise DataError(f"{root}: folder missing. " + missing_data_message(data_dir))
    present = _folders(root)
    wanted = present if alphabets is None else list(alphabets)
    out = []
    for alphabet in wanted:
        folder = os.path.join(root, alphabet)
        if alphabet not in present:
            raise DataError(f"{folder}: alphabet folder missing (the protocol needs the alphabets "
                            f"{', '.join(alphabets)} in {root})")
        characters = _folders(folder)
        if not characters:
            raise DataError(f"{folder}: no character folder in it")
        for character in characters:
            where = os.path.join(folder, character)
            files = sorted(n for n in os.listdir(where) if n.lower().endswith(".png") and not n.startswith("."))
            if len(files) < 2:
                raise DataError(f"{where}: {len(files)} PNG image(s); a character needs at least 2 (a pair of "
                                f"the same character, an anchor and its match)")
            out.append((alphabet, character, [os.path.join(where, n) for n in files]))
    if not out:
        raise DataError(f"{root}: no alphabet folder in it")
    return out


def load_characters(data_dir, set_name, size=IMAGE_SIDE, cache_dir=None, alphabets=None):
    """Every image of a set (or of its ``alphabets``) as an :class:`~minisiamese.pairsampler.IdentityPool`:
    classes are characters ("Alphabet/character"), grouped by alphabet, so it draws same/different pairs
    within and across alphabets; the images are read through the content-keyed cache."""
    items, keys, groups = [], [], {}
    for alphabet, character, paths in scan_set(data_dir, set_name, alphabets):
        name = f"{alphabet}/{character}"
        groups[name] = alphabet
        for path in paths:
            keys.append((name, os.path.basename(path)))
            items.append((f"{set_name}/{name}/{os.path.basename(path)}", path, None))
    if len(groups) < 2:
        raise DataError(f"{os.path.join(data_dir, set_name)}: {len(groups)} character(s); pairs of different "
                        f"characters need at least 2")
    images = cached_images(items, f"{PREPROCESS_VERSION}:{size}", size, cache_dir, lambda p: load_image(p, size))
    return IdentityPool(images, keys, groups)


def draw_tasks(pool, n_tasks, n_way, rng, source):
    """``n_tasks`` within-alphabet ``n_way``-way one-shot tasks over the images of ``pool`` (rows of its
    table); a DataError naming ``source`` when no alphabet there has ``n_way`` characters."""
    try:
        return group_tasks(pool.person, pool.group[pool.person], n_tasks, n_way, rng)
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None


@dataclass
class LakeRuns:
    """Lake's runs as one image table and its tasks: ``table`` a PairSet without pairs (keys (run, file)),
    ``tasks`` one :class:`~minisiamese.oneshot.OneShotTask` per test item (its candidates the run's
    training images, in file-name order), ``run`` (T,) the run of each task, ``names`` the runs."""
    table: PairSet
    tasks: list
    run: np.ndarray
    names: list


_RUN = re.compile(r"run\d+")


def read_run(runs_root, run):
    """[(test path, [training paths], answer)] of one run, from its ``class_labels.txt``: each line names a
    test image and the training image of its class (paths relative to ``runs_root``, as Lake wrote them);
    the candidates are the training images named, sorted.  A DataError naming the file and line for a
    missing file, a malformed line, a path outside ``runs_root`` or a file it names that is missing."""
    path = os.path.join(runs_root, run, "class_labels.txt")
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing (each run folder holds class_labels.txt: 'test image' "
                        f"'training image' a line)")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    root = os.path.realpath(runs_root)
    labelled = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path}:{lineno}: expected 'test image' 'training image', got {line.strip()[:80]!r}")
        full = [os.path.join(runs_root, name) for name in fields]
        for name, file in zip(fields, full):
            if os.path.isabs(name) or not os.path.realpath(file).startswith(root + os.sep):
                raise DataError(f"{path}:{lineno}: names {name!r}, outside {runs_root}")
            if not os.path.isfile(file):
                raise DataError(f"{path}:{lineno}: names {name}, which is missing ({file})")
        labelled.append(full)
    candidates = sorted({train for _, train in labelled})
    if len(candidates) < 2:
        raise DataError(f"{path}: names {len(candidates)} training image(s); a one-shot run needs at least 2")
    return [(test, candidates, candidates.index(train)) for test, train in labelled]


def load_runs(data_dir, size=IMAGE_SIDE, cache_dir=None):
    """Every ``runNN`` folder of ``one-shot-runs`` as :class:`LakeRuns`."""
    root = os.path.join(data_dir, RUNS)
    if not os.path.isdir(root):
        raise DataError(f"{root}: folder missing (Lake's runs, runNN/class_labels.txt). " +
                        missing_data_message(data_dir))
    names = [n for n in _folders(root) if _RUN.fullmatch(n)]
    if not names:
        raise DataError(f"{root}: no runNN folder in it")
    rows, keys, items, tasks, run_of = {}, [], [], [], []

    def row(path):
        if path not in rows:
            rows[path] = len(keys)
            keys.append((os.path.basename(os.path.dirname(os.path.dirname(path))), os.path.relpath(path, root)))
            items.append((f"{RUNS}/{keys[-1][1]}", path, None))
        return rows[path]

    for k, name in enumerate(names):
        for test, candidates, answer in read_run(root, name):
            tasks.append(OneShotTask(row(test), np.array([row(c) for c in candidates]), answer))
            run_of.append(k)
    images = cached_images(items, f"{PREPROCESS_VERSION}:{size}", size, cache_dir, lambda p: load_image(p, size))
    table = PairSet(images, np.zeros(0, int), np.zeros(0, int), np.zeros(0), keys=keys)
    return LakeRuns(table, tasks, np.array(run_of), names)


def training_pool(data_dir, size=IMAGE_SIDE, cache_dir=None):
    """Every image of the background set, every drawer (Lake's standard protocol; Koch used 12 of 20)."""
    return load_characters(data_dir, BACKGROUND, size, cache_dir)


def validation_data(data_dir, n_pairs, n_tasks, n_way, size=IMAGE_SIDE, cache_dir=None):
    """(valset, tasks): ``n_pairs`` same/different pairs (a PairSet, balanced; half the different ones
    within an alphabet) and ``n_tasks`` within-alphabet ``n_way``-way tasks over the same image table, drawn
    once (:data:`VAL_SEED`) from the validation alphabets of the evaluation set."""
    pool = load_characters(data_dir, EVALUATION, size, cache_dir, VALIDATION_ALPHABETS)
    rng = np.random.default_rng(VAL_SEED)
    valset = pool.draw(n_pairs, rng)
    return valset, draw_tasks(pool, n_tasks, n_way, rng, f"{os.path.join(data_dir, EVALUATION)} (validation)")


@dataclass
class Finals:
    """What the final figures read: Lake's runs, and the run alphabets of the evaluation set (``pool``) with
    ``tasks`` (within-alphabet trials) and ``pairs`` (verification) drawn from them (:data:`TEST_SEED`)."""
    runs: LakeRuns
    pool: IdentityPool
    tasks: list
    pairs: PairSet


def load_finals(data_dir, size=IMAGE_SIDE, cache_dir=None, trials=WITHIN_TRIALS, n_pairs=TEST_PAIRS, n_way=TEST_WAY):
    """Read and check everything the test figures need (before training starts)."""
    runs = load_runs(data_dir, size, cache_dir)
    pool = load_characters(data_dir, EVALUATION, size, cache_dir, RUN_ALPHABETS)
    rng = np.random.default_rng(TEST_SEED)
    tasks = draw_tasks(pool, trials, n_way, rng, f"{os.path.join(data_dir, EVALUATION)} (run alphabets)")
    return Finals(runs, pool, tasks, pool.draw(n_pairs, rng))
