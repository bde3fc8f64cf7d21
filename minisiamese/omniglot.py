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

A packed folder stands in for the three (``minisiamese pack --dataset omniglot``, :func:`pack_omniglot`; for a
machine reached by copying a folder): ``<data_dir>/omniglot-packed.npz`` (:data:`PACK_NAME`), deflated, read
without pickle.  Its arrays:

    format      ()              str     :data:`PACK_FORMAT`
    names       (N,)            str     each image's path in the folder it was packed from, '/'-separated:
                                        '<set>/<Alphabet>/<character>/<file>', or 'one-shot-runs/runNN/...'
                                        for a run image whose pixels no image of the sets has
    bits        (N, 105, 14)    uint8   its pixels as stored, ``np.packbits(pixel == 255, axis=-1)``: 1 white,
                                        0 stroke, 1 bit a pixel (a file with a grey pixel is refused)
    runs        (R,)            str     the run folders, 'run01', ...
    run_files   (M,)            str     each file a ``class_labels.txt`` names, as named ('run01/test/item01.png')
    run_images  (M,)            int64   its row of ``names``/``bits``: an image of the sets with the same pixels
                                        when there is one (Lake's run images are copies of evaluation images),
                                        else its own row
    run_lines   (L, 3)          int64   each ``class_labels.txt`` line in order: (run, test file, training
                                        file), indices into ``runs`` and ``run_files``

Both are read through one seam, :func:`source`: a :class:`Folders` or a :class:`Pack`, which list the same
sets, alphabets, characters and runs under the same paths (a pack's are the paths its images had) and give
the same preprocessed images, bit for bit (:func:`strokes` of the same pixels).
"""
import os
import re
from dataclasses import dataclass

import numpy as np
from .data import PairSet, cached_images, decode_gray, resized
from .errors import CheckpointError, DataError
from .fileio import load_arrays, save_arrays
from .oneshot import OneShotTask, group_tasks
from .pairsampler import IdentityPool

DEFAULT_DATA_DIR = os.path.join("..", "shared", "data", "omniglot")
BACKGROUND, EVALUATION, RUNS = "images_background", "images_evaluation", "one-shot-runs"
IMAGE_SIDE = 105
PACK_NAME, PACK_FORMAT = "omniglot-packed.npz", "minisiamese-omniglot-pack-v1"
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
            f"<set>/<Alphabet>/<character>/*.png, or the {PACK_NAME} of 'minisiamese pack --dataset omniglot'); "
            f"point --data-dir at a copy")


def decode_image(path):
    """One Omniglot image file as a Pillow 'L' image; one that is not 105x105 is refused (one DataError naming
    it), as is anything :func:`~minisiamese.data.decode_gray` refuses."""
    gray = decode_gray(path)
    if gray.size != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{path}: {gray.size[0]}x{gray.size[1]} pixels; an Omniglot image is "
                        f"{IMAGE_SIDE}x{IMAGE_SIDE}")
    return gray


def load_image(path, size=IMAGE_SIDE):
    """:func:`strokes` of the image file ``path`` (:func:`decode_image`)."""
    return strokes(decode_image(path), size)


def strokes(gray, size=IMAGE_SIDE):
    """A decoded Omniglot image as uint8 (size, size), *inverted*: strokes 255 (1.0 once scaled) on a 0
    background.

    Why inverted: the files are black strokes on white, so as stored almost every pixel is 1 and the
    character is the few 0s.  With strokes as 1 the background is 0, so it adds nothing to a convolution's sum
    or to a ReLU's activity: a first-layer filter responds to where the strokes are, as it would to
    foreground in any other image, and a character's mass is what the net sees.  The distortions
    (``augment.kind = "koch"``) fill what they bring in by reflection, which on a 0 background brings in 0
    almost everywhere, not white bars.  The same files read the other way round would train too; this is the
    convention of most Omniglot code and of Koch's figures (white strokes on black).

    It is then resized to ``size`` with Pillow's antialiased bilinear filter (for 52 or 28 inputs)."""
    from PIL import ImageOps
    return resized(ImageOps.invert(gray), size)


def _folders(path):
    """The sub-folders of ``path``, sorted (hidden ones left out)."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot list it ({exc.strerror or exc})") from None
    return [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(path, n))]


_RUN = re.compile(r"run\d+")


class Folders:
    """Omniglot in Lake's folders under ``data_dir``: the images' paths are their files, read through the
    content-keyed cache (:func:`~minisiamese.data.cached_images`, keyed by the files' bytes)."""

    def __init__(self, data_dir):
        self.data_dir = data_dir

    def where(self, *parts):
        """The folder or file of ``parts`` (under the data folder), for a message."""
        return os.path.join(self.data_dir, *parts)

    def listing(self, *parts):
        """Sorted names in the folder of ``parts``: a set's alphabets, an alphabet's characters, or a
        character's PNG files; None when a set's folder is missing."""
        folder = self.where(*parts)
        if len(parts) == 1 and not os.path.isdir(folder):
            return None
        if len(parts) < 3:
            return _folders(folder)
        return sorted(n for n in os.listdir(folder) if n.lower().endswith(".png") and not n.startswith("."))

    def run_names(self):
        """The ``runNN`` folders of ``one-shot-runs``."""
        root = self.where(RUNS)
        if not os.path.isdir(root):
            raise DataError(f"{root}: folder missing (Lake's runs, runNN/class_labels.txt). " +
                            missing_data_message(self.data_dir))
        names = [n for n in _folders(root) if _RUN.fullmatch(n)]
        if not names:
            raise DataError(f"{root}: no runNN folder in it")
        return names

    def run(self, name):
        return read_run(self.where(RUNS), name)

    def images(self, items, size, cache_dir):
        """uint8 (len(items), size, size): :func:`load_image` of each item (name, path, where)."""
        return cached_images(items, f"{PREPROCESS_VERSION}:{size}", size, cache_dir, lambda p: load_image(p, size))


_PACKED_ROW = (IMAGE_SIDE + 7) // 8                  # bytes of a packed row of 105 pixels
_PACK_ARRAYS = {"names": (("N",), "str"), "bits": (("N", IMAGE_SIDE, _PACKED_ROW), "uint8"),
                "runs": (("R",), "str"), "run_files": (("M",), "str"), "run_images": (("M",), "int64"),
                "run_lines": (("L", 3), "int64")}    # key: (shape, dtype) beside the tag; the format's doc: above


def _check_pack(path, arrays):
    """The arrays of the pack ``path``, checked against the format (module docstring); else one DataError
    naming it and what is wrong."""
    def bad(what):
        return DataError(f"{path}: {what}; not an Omniglot pack as 'minisiamese pack --dataset omniglot' writes "
                         f"it ({PACK_FORMAT}); pack it again")

    tag = arrays.get("format")
    if tag is None or tag.shape != () or tag.dtype.kind != "U" or str(tag) != PACK_FORMAT:
        raise bad("no format tag" if tag is None else f"format tag {str(tag)[:80]!r}")
    dims = {}
    for key, (shape, dtype) in _PACK_ARRAYS.items():
        a = arrays.get(key)
        if a is None:
            raise bad(f"no array {key!r}")
        sizes = [dims.setdefault(d, n) if isinstance(d, str) else d for d, n in zip(shape, a.shape)]
        if a.ndim != len(shape) or tuple(sizes) != a.shape or \
                not (a.dtype.kind == "U" if dtype == "str" else a.dtype == dtype):
            raise bad(f"{key!r} is {a.dtype} {a.shape}, not {dtype} ({', '.join(str(dims.get(d, d)) for d in shape)})")
    lines = arrays["run_lines"]
    for key, index, high in (("run_images", arrays["run_images"], "N"), ("run_lines", lines[:, 0], "R"),
                             ("run_lines", lines[:, 1:], "M")):
        if index.size and (index.min() < 0 or index.max() >= dims[high]):
            raise bad(f"{key!r} holds an index out of range (0..{dims[high] - 1})")
    for key in ("names", "runs"):
        if len(set(arrays[key].tolist())) != len(arrays[key]):
            raise bad(f"{key!r} holds a name twice")
    if dims["R"] == 0:
        raise bad("no run")
    return arrays


class Pack:
    """Omniglot from ``<data_dir>/omniglot-packed.npz`` (module docstring), read and checked at once: the
    images' paths are those they had in the folder packed (names under ``data_dir``).  Its images are not
    cached: unpacking them is the decoding, and the image cache is never read or written from a pack, so the
    two never meet there (a folder's entries are keyed by its files' bytes, which a pack does not have)."""

    def __init__(self, data_dir):
        self.data_dir, self.file = data_dir, os.path.join(data_dir, PACK_NAME)
        try:
            arrays = _check_pack(self.file, load_arrays(self.file))
        except CheckpointError as exc:                      # unreadable, truncated: named by load_arrays
            raise DataError(str(exc)) from None
        self.bits = arrays["bits"]
        names = arrays["names"].tolist()
        self.row = {os.path.join(data_dir, name): i for i, name in enumerate(names)}
        self.tree = {}
        for name in names:
            parts = name.split("/")
            if parts[0] in (BACKGROUND, EVALUATION) and len(parts) == 4 and all(parts):
                self.tree.setdefault(parts[0], {}).setdefault(parts[1], {}).setdefault(parts[2], []).append(parts[3])
            elif parts[0] != RUNS:
                raise DataError(f"{self.file}: image name {name[:80]!r} is not <set>/<Alphabet>/<character>/<file> "
                                f"nor {RUNS}/...; pack it again")
        files = [os.path.join(data_dir, RUNS, f) for f in arrays["run_files"].tolist()]
        self.row.update(zip(files, arrays["run_images"].tolist()))
        self.runs = arrays["runs"].tolist()
        self.lines = {name: [] for name in self.runs}
        for r, test, train in arrays["run_lines"].tolist():
            self.lines[self.runs[r]].append((files[test], files[train]))

    def where(self, *parts):
        return f"{self.file}: {'/'.join(parts)}"

    def listing(self, *parts):
        node = self.tree.get(parts[0])
        for part in parts[1:]:
            node = node[part]
        return None if node is None else sorted(node)

    def run_names(self):
        return self.runs

    def run(self, name):
        return one_shot_run(f"{self.file}: run {name}", self.lines[name])

    def images(self, items, size, cache_dir):
        from PIL import Image
        out = np.empty((len(items), size, size), np.uint8)
        for i, (_, path, _) in enumerate(items):
            pixels = np.unpackbits(self.bits[self.row[path]], axis=-1, count=IMAGE_SIDE) * np.uint8(255)
            out[i] = strokes(Image.fromarray(pixels, "L"), size)
        return out


def source(data_dir):
    """The one place that chooses where Omniglot is read from: Lake's folders in ``data_dir`` when any of them
    is there (or no pack is either: then the folders' checks say what is missing), else its pack."""
    if any(os.path.isdir(os.path.join(data_dir, n)) for n in (BACKGROUND, EVALUATION, RUNS)) or \
            not os.path.isfile(os.path.join(data_dir, PACK_NAME)):
        return Folders(data_dir)
    return Pack(data_dir)


def _scan(src, set_name, alphabets=None):
    """:func:`scan_set` of a :func:`source`."""
    root = src.where(set_name)
    present = src.listing(set_name)
    if present is None:
        raise DataError(f"{root}: folder missing. " + missing_data_message(src.data_dir))
    wanted = present if alphabets is None else list(alphabets)
    out = []
    for alphabet in wanted:
        if alphabet not in present:
            raise DataError(f"{src.where(set_name, alphabet)}: alphabet folder missing (the protocol needs the "
                            f"alphabets {', '.join(alphabets)} in {root})")
        characters = src.listing(set_name, alphabet)
        if not characters:
            raise DataError(f"{src.where(set_name, alphabet)}: no character folder in it")
        for character in characters:
            files = src.listing(set_name, alphabet, character)
            if len(files) < 2:
                raise DataError(f"{src.where(set_name, alphabet, character)}: {len(files)} PNG image(s); a character "
                                f"needs at least 2 (a pair of the same character, an anchor and its match)")
            out.append((alphabet, character,
                        [os.path.join(src.data_dir, set_name, alphabet, character, n) for n in files]))
    if not out:
        raise DataError(f"{root}: no alphabet folder in it")
    return out


def scan_set(data_dir, set_name, alphabets=None):
    """[(alphabet, character, [image paths])] of one set (``images_background`` or ``images_evaluation``),
    of every alphabet in it or of those named in ``alphabets``: every PNG of each character folder, sorted
    by name (the names themselves mean nothing); from a pack, the paths its images had.  A DataError for a
    missing set or alphabet folder, an empty alphabet and a character with fewer than 2 images."""
    return _scan(source(data_dir), set_name, alphabets)


def _characters(src, set_name, size, cache_dir, alphabets=None):
    """:func:`load_characters` of a :func:`source`."""
    items, keys, groups = [], [], {}
    for alphabet, character, paths in _scan(src, set_name, alphabets):
        name = f"{alphabet}/{character}"
        groups[name] = alphabet
        for path in paths:
            keys.append((name, os.path.basename(path)))
            items.append((f"{set_name}/{name}/{os.path.basename(path)}", path, None))
    if len(groups) < 2:
        raise DataError(f"{src.where(set_name)}: {len(groups)} character(s); pairs of different characters need "
                        f"at least 2")
    return IdentityPool(src.images(items, size, cache_dir), keys, groups)


def load_characters(data_dir, set_name, size=IMAGE_SIDE, cache_dir=None, alphabets=None):
    """Every image of a set (or of its ``alphabets``) as an :class:`~minisiamese.pairsampler.IdentityPool`:
    classes are characters ("Alphabet/character"), grouped by alphabet, so it draws same/different pairs
    within and across alphabets; the images are read through the content-keyed cache (from a folder)."""
    return _characters(source(data_dir), set_name, size, cache_dir, alphabets)


def draw_tasks(pool, n_tasks, n_way, rng, where):
    """``n_tasks`` within-alphabet ``n_way``-way one-shot tasks over the images of ``pool`` (rows of its
    table); a DataError naming ``where`` when no alphabet there has ``n_way`` characters."""
    try:
        return group_tasks(pool.person, pool.group[pool.person], n_tasks, n_way, rng)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None


@dataclass
class LakeRuns:
    """Lake's runs as one image table and its tasks: ``table`` a PairSet without pairs (keys (run, file)),
    ``tasks`` one :class:`~minisiamese.oneshot.OneShotTask` per test item (its candidates the run's
    training images, in file-name order), ``run`` (T,) the run of each task, ``names`` the runs."""
    table: PairSet
    tasks: list
    run: np.ndarray
    names: list


def one_shot_run(where, labelled):
    """[(test, [candidates], answer)] of one run from its (test image, training image) lines: the candidates
    are the training images named, sorted; a DataError naming ``where`` when they are fewer than 2."""
    candidates = sorted({train for _, train in labelled})
    if len(candidates) < 2:
        raise DataError(f"{where}: names {len(candidates)} training image(s); a one-shot run needs at least 2")
    return [(test, candidates, candidates.index(train)) for test, train in labelled]


def read_run(runs_root, run):
    """:func:`one_shot_run` of one run's ``class_labels.txt``: each line names a test image and the training
    image of its class (paths relative to ``runs_root``, as Lake wrote them).  A DataError naming the file
    and line for a missing file, a malformed line, a path outside ``runs_root`` or a file it names that is
    missing."""
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
    return one_shot_run(path, labelled)


def _runs(src, size, cache_dir):
    """:func:`load_runs` of a :func:`source`."""
    root = os.path.join(src.data_dir, RUNS)
    rows, keys, items, tasks, run_of = {}, [], [], [], []

    def row(path):
        if path not in rows:
            rows[path] = len(keys)
            keys.append((os.path.basename(os.path.dirname(os.path.dirname(path))), os.path.relpath(path, root)))
            items.append((f"{RUNS}/{keys[-1][1]}", path, None))
        return rows[path]

    names = src.run_names()
    for k, name in enumerate(names):
        for test, candidates, answer in src.run(name):
            tasks.append(OneShotTask(row(test), np.array([row(c) for c in candidates]), answer))
            run_of.append(k)
    table = PairSet(src.images(items, size, cache_dir), np.zeros(0, int), np.zeros(0, int), np.zeros(0), keys=keys)
    return LakeRuns(table, tasks, np.array(run_of), names)


def load_runs(data_dir, size=IMAGE_SIDE, cache_dir=None):
    """Every ``runNN`` folder of ``one-shot-runs`` (or run of a pack) as :class:`LakeRuns`."""
    return _runs(source(data_dir), size, cache_dir)


def training_pool(data_dir, size=IMAGE_SIDE, cache_dir=None):
    """Every image of the background set, every drawer (Lake's standard protocol; Koch used 12 of 20)."""
    return load_characters(data_dir, BACKGROUND, size, cache_dir)


def validation_data(data_dir, n_pairs, n_tasks, n_way, size=IMAGE_SIDE, cache_dir=None):
    """(valset, tasks): ``n_pairs`` same/different pairs (a PairSet, balanced; half the different ones
    within an alphabet) and ``n_tasks`` within-alphabet ``n_way``-way tasks over the same image table, drawn
    once (:data:`VAL_SEED`) from the validation alphabets of the evaluation set."""
    src = source(data_dir)
    pool = _characters(src, EVALUATION, size, cache_dir, VALIDATION_ALPHABETS)
    rng = np.random.default_rng(VAL_SEED)
    valset = pool.draw(n_pairs, rng)
    return valset, draw_tasks(pool, n_tasks, n_way, rng, f"{src.where(EVALUATION)} (validation)")


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
    src = source(data_dir)
    runs = _runs(src, size, cache_dir)
    pool = _characters(src, EVALUATION, size, cache_dir, RUN_ALPHABETS)
    rng = np.random.default_rng(TEST_SEED)
    tasks = draw_tasks(pool, trials, n_way, rng, f"{src.where(EVALUATION)} (run alphabets)")
    return Finals(runs, pool, tasks, pool.draw(n_pairs, rng))


# ----------------------------------------------------------------------------- packing
def _packed(path):
    """The pixels of the image file ``path`` (:func:`decode_image`'s checks) as the pack stores them; a file
    with a pixel other than 0 or 255 is refused, naming it."""
    pixels = np.asarray(decode_image(path))
    grey = (pixels != 0) & (pixels != 255)
    if grey.any():
        r, c = np.argwhere(grey)[0]
        raise DataError(f"{path}: pixel (row {r}, column {c}) is {pixels[r, c]} ({grey.sum()} pixels neither 0 nor "
                        f"255); an Omniglot image is black strokes on white, which a pack keeps as 1 bit a pixel")
    return np.packbits(pixels == 255, axis=-1)


def pack_omniglot(data_dir, out_dir):
    """Write every image the protocol needs -- the background and evaluation sets and Lake's runs, at 105x105,
    1 bit a pixel -- into ``out_dir``/:data:`PACK_NAME` (the format is in the module's docstring): a stand-in
    for the folders (:class:`Pack`).  A run image whose pixels an image of the sets has is stored as a
    reference to it.  Every file is read and checked (as the loader checks it, and every pixel 0 or 255)
    before ``out_dir`` is touched; the file lands atomically.  Returns (its path, images stored, run images
    stored as references)."""
    src = Folders(data_dir)
    names, bits = [], []
    for set_name in (BACKGROUND, EVALUATION):
        for alphabet, character, paths in _scan(src, set_name):
            for path in paths:
                names.append(f"{set_name}/{alphabet}/{character}/{os.path.basename(path)}")
                bits.append(_packed(path))
    row_of = {b.tobytes(): i for i, b in enumerate(bits)}
    files, file_rows = {}, []                           # run file name -> its index; the row of each

    def run_file(path):
        name = os.path.relpath(path, src.where(RUNS))
        if name not in files:
            b = _packed(path)
            if b.tobytes() not in row_of:
                row_of[b.tobytes()] = len(bits)
                names.append(f"{RUNS}/{name}")
                bits.append(b)
            files[name] = len(file_rows)
            file_rows.append(row_of[b.tobytes()])
        return files[name]

    sets = len(bits)
    runs = src.run_names()
    lines = [(r, run_file(test), run_file(candidates[answer]))
             for r, run in enumerate(runs) for test, candidates, answer in src.run(run)]
    path = os.path.join(out_dir, PACK_NAME)
    save_arrays(path, {"format": np.array(PACK_FORMAT), "names": np.array(names), "bits": np.stack(bits),
                       "runs": np.array(runs), "run_files": np.array(list(files)),
                       "run_images": np.array(file_rows, np.int64), "run_lines": np.array(lines, np.int64)},
                compressed=True)
    return path, len(bits), sum(row < sets for row in file_rows)
