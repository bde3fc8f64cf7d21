"""LFW-a on disk: the pairs files, the images, preprocessing and its cache.

Layout (as published):  <data_dir>/lfw2/<Person>/<Person>_NNNN.jpg  and
<data_dir>/pairsDevTrain.txt, pairsDevTest.txt, pairs.txt.

Every problem with the files becomes one :class:`DataError` whose message names
the file (and line) at fault.
"""
import hashlib
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import CheckpointError, DataError, require_int, require_number
from .fileio import atomic_write, load_arrays, save_arrays

IMAGE_SIZE = 105
PREPROCESS_VERSION = "gray-bilinear-antialias-v2"   # v2: 16-bit gray scaled to 8 bits, not clipped
MIN_FACE_SIDE = 20      # pixels on the short side after the crop; fewer cannot hold a face
DATA_DIR_ENV = "MINISIAMESE_DATA"
DEFAULT_DATA_DIR = os.path.join("..", "shared", "data", "lfw-a")


@dataclass(frozen=True)
class Pair:
    name1: str
    num1: int
    name2: str
    num2: int
    label: int          # 1 same person, 0 different
    line: int           # 1-based line in its pairs file


def default_data_dir():
    return os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR


def images_root(data_dir):
    """The folder holding <Person>/ subfolders: data_dir/lfw2, or data_dir itself."""
    inner = os.path.join(data_dir, "lfw2")
    return inner if os.path.isdir(inner) else data_dir


def image_path(data_dir, name, num):
    return os.path.join(images_root(data_dir), name, f"{name}_{num:04d}.jpg")


def missing_data_message(data_dir):
    return (f"LFW-a not found in {data_dir!r} (expected lfw2/<Person>/<Person>_NNNN.jpg and "
            f"pairsDevTrain.txt there). Get it with:  minisiamese download --data-dir {data_dir}  "
            f"or point --data-dir (or ${DATA_DIR_ENV}) at an existing copy.")


def preprocess_tag(size, crop=1.0):
    """Names one preprocessing: '105' (whole image), '105-crop0.5' (centre half)."""
    return f"{size}" if crop == 1.0 else f"{size}-crop{crop:g}"


def bundle_path(data_dir, size=IMAGE_SIZE, crop=1.0):
    """A packed face bundle (see :func:`pack_faces`) standing in for lfw2/."""
    return os.path.join(data_dir, f"faces-{preprocess_tag(size, crop)}.npz")


def _bundle_for(data_dir, keys, size, crop):
    """The bundle standing in for lfw2/ in ``data_dir``, or None (read the
    images).  When the folder holds bundles of other sizes or crops only, and
    not the images, a DataError naming those and the one needed."""
    if os.path.isdir(os.path.join(data_dir, "lfw2")):
        return None
    bundle = bundle_path(data_dir, size, crop)
    if os.path.isfile(bundle):
        return bundle
    others = sorted(n for n in os.listdir(data_dir) if n.startswith("faces-") and n.endswith(".npz")) \
        if os.path.isdir(data_dir) else []
    if others and keys and not os.path.exists(image_path(data_dir, *keys[0])):
        raise DataError(f"{data_dir}: holds the face bundle(s) {', '.join(others)}, but the model needs "
                        f"{os.path.basename(bundle)} (size {size}, crop {crop:g}); make it with 'minisiamese pack "
                        f"--size {size} --crop {crop:g}' from the images")
    return None


def check_data_dir(data_dir, needs=("pairsDevTrain.txt",)):
    """The folder must exist and hold the pairs files in ``needs``.  Its images
    may be in lfw2/, directly inside it, or in a bundle from :func:`pack_faces`;
    a missing image is reported by the loader, naming it."""
    if not os.path.isdir(data_dir):
        raise DataError(missing_data_message(data_dir))
    for name in needs:
        path = os.path.join(data_dir, name)
        if os.path.isdir(path):
            raise DataError(f"{path}: is a folder, not a pairs file")
        if not os.path.isfile(path):
            raise DataError(f"{path}: pairs file missing. " + missing_data_message(data_dir))


# ----------------------------------------------------------------------------- pairs files
def _read_lines(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")                      # tolerate a UTF-8 BOM
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    lines = text.splitlines()                               # \n, \r\n and \r alike
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _int_field(path, lineno, value, what):
    # plain ASCII digits only (int() also reads "1_0" as 10, and other scripts' digits); at most 9 of them
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise DataError(f"{path}:{lineno}: {what} must be an integer, got {value[:40]!r}")
    return require_number(f"{path}:{lineno}: {what}", int(value), 1, error=DataError)


def _parse_pair(path, lineno, line, positive):
    fields = line.split()
    if positive:
        if len(fields) != 3:
            raise DataError(f"{path}:{lineno}: expected 'name i j' for a same-person pair, got {line.strip()!r}")
        name, a, b = fields
        return Pair(name, _int_field(path, lineno, a, "image number"), name,
                    _int_field(path, lineno, b, "image number"), 1, lineno)
    if len(fields) != 4:
        raise DataError(f"{path}:{lineno}: expected 'name1 i name2 j' for a different-person pair, "
                        f"got {line.strip()!r}")
    n1, a, n2, b = fields
    if n1 == n2:
        raise DataError(f"{path}:{lineno}: a different-person pair names {n1} twice")
    return Pair(n1, _int_field(path, lineno, a, "image number"), n2,
                _int_field(path, lineno, b, "image number"), 0, lineno)


def _parse_block(path, lines, start, count):
    """``count`` positives then ``count`` negatives beginning at index ``start``."""
    if len(lines) < start + 2 * count:
        raise DataError(f"{path}: header promises {count} same + {count} different pairs from line "
                        f"{start + 1}, but the file ends at line {len(lines)}")
    pairs = [_parse_pair(path, start + k + 1, lines[start + k], True) for k in range(count)]
    pairs += [_parse_pair(path, start + count + k + 1, lines[start + count + k], False) for k in range(count)]
    return pairs


def is_view2_file(path):
    """True when a pairs file starts with View 2's 'folds pairs_per_fold' header
    (two fields) rather than View 1's single pair count."""
    return _view2_header(_read_lines(path))


def _view2_header(lines):
    return bool(lines) and len(lines[0].split()) == 2


def people_in(pairs):
    """The set of people named in a list of :class:`Pair`."""
    return {name for p in pairs for name in (p.name1, p.name2)}


def _pair_key(p):
    """The two images of a pair, in either order."""
    return frozenset(((p.name1, p.num1), (p.name2, p.num2)))


def _check_unique(path, pairs):
    """No two lines list the same two images (in either order): a repeated pair
    could land on both sides of a split, e.g. in training and validation."""
    first = {}
    for p in pairs:
        line = first.setdefault(_pair_key(p), p.line)
        if line != p.line:
            raise DataError(f"{path}:{p.line}: the same pair as line {line} "
                            f"({p.name1} {p.num1}, {p.name2} {p.num2})")


def read_pairs(path):
    """A View 1 file (pairsDevTrain.txt / pairsDevTest.txt): a count line, then
    that many same-person lines and that many different-person lines.  A
    different-person line names two people, and no pair is listed twice (in
    either order); anything else is a DataError naming the file and line."""
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    header = lines[0].split()
    if _view2_header(lines):                                # a View 2 file given where View 1 was expected
        return [p for fold in read_pairs_folds(path) for p in fold]
    if len(header) != 1:
        raise DataError(f"{path}:1: expected a pair count, got {lines[0].strip()!r}")
    count = _int_field(path, 1, header[0], "pair count")
    pairs = _parse_block(path, lines, 1, count)
    if len(lines) != 1 + 2 * count:
        raise DataError(f"{path}:{2 + 2 * count}: {len(lines) - 1 - 2 * count} line(s) beyond the "
                        f"{2 * count} pairs the header promises")
    _check_unique(path, pairs)
    return pairs


def read_pairs_folds(path):
    """View 2 ``pairs.txt``: 'folds count', then per fold count same + count
    different lines, checked as :func:`read_pairs` checks them; no pair is
    listed twice across the folds, and there are at least 2 folds."""
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    header = lines[0].split()
    if len(header) != 2:
        raise DataError(f"{path}:1: expected 'folds pairs_per_fold', got {lines[0].strip()!r}")
    folds = _int_field(path, 1, header[0], "fold count")
    count = _int_field(path, 1, header[1], "pairs per fold")
    require_int("fold count", folds, 2, error=lambda _: DataError(
        f"{path}:1: View 2 needs at least 2 folds (the threshold of each fold is chosen on the others), got {folds}"))
    out = [_parse_block(path, lines, 1 + f * 2 * count, count) for f in range(folds)]
    if len(lines) != 1 + folds * 2 * count:
        raise DataError(f"{path}:{2 + folds * 2 * count}: lines beyond the {folds} folds the header promises")
    _check_unique(path, [p for fold in out for p in fold])
    return out


def check_disjoint(train_path, train_pairs, test_path, test_pairs):
    """Refuse a test set that leaks into training: no person of ``test_pairs``
    (so no pair either) may appear in ``train_pairs``.  The DataError names both
    files, how many people and pairs they share, and an example of each."""
    shared = people_in(train_pairs) & people_in(test_pairs)
    if not shared:
        return
    example = next(name for p in test_pairs for name in (p.name1, p.name2) if name in shared)
    train_line = {_pair_key(p): p.line for p in train_pairs}
    same = [(p.line, train_line[_pair_key(p)]) for p in test_pairs if _pair_key(p) in train_line]
    pairs_text = (f"{len(same)} pair(s) (e.g. line {same[0][0]} here, line {same[0][1]} in the training file)"
                  if same else "no pair")
    who = f"{len(shared)} {'person' if len(shared) == 1 else 'people'} (e.g. {example})"
    raise DataError(f"{test_path}: shares {who} and {pairs_text} with the training file {train_path}; "
                    f"a test set must hold only people never trained on")


# ----------------------------------------------------------------------------- images
def centre_box(width, height, crop):
    """(left, top, right, bottom) of the centre square whose side is ``crop`` times
    the image's shorter side (the whole image when crop is 1 and it is square)."""
    side = max(1, int(round(min(width, height) * crop)))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def open_regular(path, note=""):
    """``path`` opened for binary reading, if it is a regular file.  A named pipe,
    device, socket or folder is refused with a DataError naming it (and ``note``)
    before a byte is read: the file is opened non-blocking and checked with
    fstat, so even a pipe swapped in after a listing cannot hang the caller.
    Other OSErrors (FileNotFoundError included) pass through."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise DataError(f"{path}: not a regular file ({kind}); refusing to read it{note}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _gray(im, path):
    """Pillow image -> 'L'.  16-bit gray (modes I;16*, and mode I holding
    0..65535, as Pillow reads 16-bit PGM) keeps its top 8 bits (v >> 8) instead of
    being clipped to white; mode I beyond 16 bits is refused, naming the file."""
    if not (im.mode == "I" or im.mode.startswith("I;16")):
        return im.convert("L")
    from PIL import Image
    a = np.asarray(im)
    if a.min() < 0 or a.max() > 0xFFFF:
        raise DataError(f"{path}: 32-bit image with values {a.min()}..{a.max()}, beyond 16 bits; "
                        f"save it as 8- or 16-bit gray")
    return Image.fromarray((a >> 8).astype(np.uint8), "L")


def decode_gray(path):
    """An image file as a Pillow 'L' image (16-bit gray scaled by >> 8).

    Refused with one DataError naming the file: a missing file, anything but a
    regular file (checked before reading, so a named pipe cannot hang), an
    undecodable image and a decompression bomb (more than
    PIL.Image.MAX_IMAGE_PIXELS pixels: Pillow's warning counts as refusal too)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with open_regular(path) as f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                im.load()
                return _gray(im, path)
    except FileNotFoundError:
        raise DataError(f"{path}: image file missing") from None
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def resized(gray, size):
    """A Pillow image as uint8 (size, size), resized with Pillow's antialiased bilinear filter when it is
    not that size already."""
    from PIL import Image
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(gray, dtype=np.uint8)


def load_image(path, size=IMAGE_SIZE, crop=1.0):
    """One face as uint8 (size, size): decoded to grayscale by :func:`decode_gray`
    (whose refusals it shares), cut to its centre square when ``crop`` < 1
    (LFW-a's faces fill about the centre half of the 250x250 frame), and
    resized with Pillow's antialiased bilinear filter (250 -> 105 for LFW-a).
    An image whose short side after the crop is under MIN_FACE_SIDE pixels is
    refused too."""
    gray = decode_gray(path)
    width, height = gray.size
    if crop != 1.0:
        gray = gray.crop(centre_box(width, height, crop))
    if min(gray.size) < MIN_FACE_SIDE:
        raise DataError(f"{path}: {width}x{height} pixels is too small to hold a face (short side "
                        f"{min(gray.size)} after the crop {crop:g}; at least {MIN_FACE_SIDE} needed)")
    return resized(gray, size)


LFW_A_FRAME = 250       # LFW-a's images: 250x250 grayscale, the face aligned and centred by the deep funneling


def unlike_lfw_a(path):
    """How an image file differs from an LFW-a frame (its size, colour), as a
    short text, or None when it looks like one; read from the header only.
    Whether its face is aligned as LFW-a's are, no header can say."""
    from PIL import Image, UnidentifiedImageError
    try:
        with open_regular(path) as f, Image.open(f) as im:
            (width, height), mode = im.size, im.mode
    except (OSError, DataError, ValueError, SyntaxError, UnidentifiedImageError):
        return None                                           # load_image names what is wrong with it
    odd = ([] if (width, height) == (LFW_A_FRAME, LFW_A_FRAME) else [f"{width}x{height}"]) + \
        ([] if mode in ("L", "LA", "1", "I", "F") or mode.startswith("I;16") else ["colour"])
    return f"{os.path.basename(path)}: {', '.join(odd)}" if odd else None


def load_faces(paths, config):
    """(N, 1, S, S) float32 in [0, 1]: image files as the model with ModelConfig
    ``config`` takes them (its input_size and crop)."""
    return to_unit_float(np.stack([load_image(p, config.input_size, config.crop) for p in paths]))[:, None]


def file_digest(path, where, kind="image file"):
    """SHA-256 (hex) of a file's content; a missing or unreadable file is a
    DataError naming it, its ``kind`` and ``where`` it was asked for, as is
    anything but a regular file (a named pipe is refused, not read)."""
    h = hashlib.sha256()
    try:
        with open_regular(path, f" ({where})") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise DataError(f"{path}: {kind} missing ({where})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc}) ({where})") from None
    return h.hexdigest()


def load_images(data_dir, keys, cache_dir=None, size=IMAGE_SIZE, where=None, crop=1.0):
    """uint8 array (len(keys), size, size) for the (name, num) keys, read through
    an on-disk cache keyed by the images' *content* (SHA-256 of every file, the
    size, the crop and the preprocessing version), so a changed file is never
    served stale.

    ``where`` maps a key to a text naming where it was asked for (pairs file and
    line), for error messages.
    """
    where = where or {}
    bundle, inner = _bundle_for(data_dir, keys, size, crop), os.path.join(data_dir, "lfw2")
    if bundle:
        return _from_bundle(bundle, keys, where, size)
    note = "" if os.path.isdir(inner) else f"; there is no {inner}, so images are looked for directly in {data_dir}"
    items = [(f"{n}/{k}", image_path(data_dir, n, k), where.get((n, k))) for n, k in keys]
    return cached_images(items, f"{PREPROCESS_VERSION}:{preprocess_tag(size, crop)}", size, cache_dir,
                         lambda path: load_image(path, size, crop), note)


def cached_images(items, version, size, cache_dir, read, note=""):
    """uint8 array (len(items), size, size): ``read(path)`` of each item
    (name, path, where) -- ``where`` a text naming where it was asked for, or
    None -- through an on-disk cache keyed by the images' *content* (SHA-256 of
    every file, its name, and ``version``: the preprocessing and size), so a
    changed file is never served stale.  A DataError of ``read`` gains the
    item's ``where``; a missing file names ``where`` (or "image") and ``note``."""
    h = hashlib.sha256(version.encode())
    for name, path, where in items:
        h.update(f"{name}:{file_digest(path, (where or 'image') + note)};".encode())
    digest = h.hexdigest()[:32]
    cache_file = os.path.join(cache_dir, f"images-{digest}.npz") if cache_dir else None
    if cache_file and os.path.isfile(cache_file):
        try:
            arr = load_arrays(cache_file).get("images")
            if arr is not None and arr.shape == (len(items), size, size) and arr.dtype == np.uint8:
                return arr
        except CheckpointError:
            pass                                              # damaged cache: rebuild it
    arr = np.empty((len(items), size, size), dtype=np.uint8)
    for i, (_, path, where) in enumerate(items):
        try:
            arr[i] = read(path)
        except DataError as exc:
            raise DataError(f"{exc} ({where})" if where else str(exc)) from None
    if cache_file:
        save_arrays(cache_file, {"images": arr})
    return arr


def person_images(data_dir, people, size=IMAGE_SIZE, crop=1.0):
    """[(name, num)] of every image of each person: from lfw2/<Person>/<Person>_NNNN.jpg,
    or from a packed bundle that holds every image of them (``pack --people-of``)."""
    people = sorted(people)
    if not people:
        return []
    bundle = _bundle_for(data_dir, [(people[0], 1)], size, crop)     # names other-size bundles, if only those
    if bundle:
        return _bundle_person_images(bundle, people)
    root = images_root(data_dir)
    keys = []
    for person in people:
        folder = os.path.join(root, person)
        try:
            names = os.listdir(folder)
        except OSError as exc:
            raise DataError(f"{folder}: cannot list the images of {person} ({exc.strerror or exc}); drawing "
                            f"pairs from identities needs the image folders, or a bundle packed with "
                            f"--people-of") from None
        pattern = re.compile(re.escape(person) + r"_(\d{4})\.jpg")
        nums = sorted(int(m.group(1)) for m in map(pattern.fullmatch, names) if m)
        if not nums:
            raise DataError(f"{folder}: no {person}_NNNN.jpg image in it")
        keys += [(person, n) for n in nums]
    return keys


def _read_bundle(path, images=True):
    """A face bundle's arrays, checked: ``keys`` (U,) "Name/num" strings, ``images``
    (U, S, S) uint8 (not read when ``images`` is false) and, when present,
    ``people`` (P,) names; else a DataError."""
    arrays = load_arrays(path, names=None if images else ("keys", "people"))
    keys, people = arrays.get("keys"), arrays.get("people", np.array([], str))
    ok = (keys is not None and keys.ndim == 1 and keys.dtype.kind == "U" and people.ndim == 1
          and (len(people) == 0 or people.dtype.kind == "U"))
    if images:
        faces = arrays.get("images")
        ok = ok and faces is not None and faces.dtype == np.uint8 and faces.ndim == 3 and len(faces) == len(keys)
    if not ok:
        raise DataError(f"{path}: not a face bundle written by 'minisiamese pack'")
    return arrays


_BUNDLE_KEY = re.compile(r"(.+)/(\d{1,9})")          # LFW numbers its images 0001, 0002, ...


def _bundle_person_images(path, people):
    """person_images from a bundle: only people it marks as complete (every image packed).
    Only its keys and people are read; the images are read once, by load_images."""
    arrays = _read_bundle(path, images=False)
    complete = set(arrays["people"].tolist()) if "people" in arrays else set()
    lacking = sorted(set(people) - complete)
    if lacking:
        raise DataError(f"{path}: does not hold every image of {lacking[0]}" +
                        (f" (nor of {len(lacking) - 1} other people)" if len(lacking) > 1 else "") +
                        "; drawing pairs from identities (and pack --people-of) needs every image of them: pack "
                        "them from the image folders with --people-of and their pairs file (pairsDevTrain.txt for "
                        "training)")
    wanted, keys = set(people), []
    for text in arrays["keys"].tolist():
        m = _BUNDLE_KEY.fullmatch(text)
        if m is None:
            raise DataError(f"{path}: bad image key {text[:80]!r} (expected Name/number)")
        if m.group(1) in wanted:
            keys.append((m.group(1), int(m.group(2))))
    return sorted(keys)


def _key_text(key):
    return f"{key[0]}/{key[1]}"


def _from_bundle(path, keys, where, size):
    arrays = _read_bundle(path)
    if arrays["images"].shape[1:] != (size, size):
        raise DataError(f"{path}: holds {arrays['images'].shape[1]}x{arrays['images'].shape[2]} faces, not the "
                        f"{size}x{size} its name promises; pack it again")
    row = {k: i for i, k in enumerate(arrays["keys"].tolist())}
    missing = [k for k in keys if _key_text(k) not in row]
    if missing:
        k = missing[0]
        raise DataError(f"{path}: has no image {_key_text(k)}" + (f" ({where[k]})" if k in where else ""))
    return arrays["images"][[row[_key_text(k)] for k in keys]]


def pack_faces(data_dir, out_dir, pairs_files, cache_dir=None, size=IMAGE_SIZE, crop=1.0, people_of=()):
    """Write the preprocessed faces named by ``pairs_files`` (uint8, size x size)
    and copies of those files into ``out_dir``: a small stand-in for the data
    folder (about 11 KB a face) for machines that cannot hold the JPEGs.  With
    ``people_of`` (pairs files), also every image of every person in them, and
    the bundle's ``people`` array names those people as complete: what drawing
    pairs from identities (``train.pairs: "identities"``) reads.  Every
    pairs file and image is read and checked before ``out_dir`` is touched, and
    each file lands there atomically, so a failure leaves no half-packed folder."""
    sources, keys, seen = [], [], set()

    def add(key):
        if key not in seen:
            seen.add(key)
            keys.append(key)

    def located(name):                                  # a path, or a file name inside data_dir
        return name if os.path.exists(name) else os.path.join(data_dir, name)

    read = {}                                           # path -> its pairs, each file read once

    def pairs_of(path):
        if path not in read:
            read[path] = read_pairs(path)
        return read[path]

    for name in pairs_files:
        src = located(name)
        for p in pairs_of(src):
            add((p.name1, p.num1))
            add((p.name2, p.num2))
        dst = os.path.join(out_dir, os.path.basename(src))
        clash = next((s for s, d in sources if d == dst and not os.path.samefile(s, src)), None)
        if clash:
            raise DataError(f"{src}: has the same name as {clash}, and both would be copied to {dst}; give "
                            f"pairs files of different names")
        if os.path.exists(dst) and os.path.samefile(src, dst):
            raise DataError(f"{src}: packing it into {out_dir} would copy it over itself; give a new folder")
        sources.append((src, dst))
    people = sorted(set().union(*(people_in(pairs_of(located(name))) for name in people_of)))
    for key in person_images(data_dir, people, size, crop):
        add(key)
    images = load_images(data_dir, keys, cache_dir, size, crop=crop)     # (U, size, size) uint8
    for src, dst in sources:
        with open(src, "rb") as f:
            content = f.read()
        atomic_write(dst, lambda out, content=content: out.write(content))
    save_arrays(bundle_path(out_dir, size, crop), {"keys": np.array([_key_text(k) for k in keys]), "images": images,
                                                   "people": np.array(people, dtype=str)})
    return bundle_path(out_dir, size, crop), len(keys)


class PairSet:
    """Pairs as indices into one table of unique images (each face decoded once).

    images (U, S, S) uint8, as decoded; idx1, idx2 (N,) int; labels (N,) float32.
    Pixels become float32 in [0, 1] only batch by batch, so memory is about
    S*S bytes per unique image (11 KB at 105x105) plus one batch, whatever the
    number of pairs.
    """

    def __init__(self, images, idx1, idx2, labels, pairs=None, keys=None):
        self.images, self.idx1, self.idx2 = images, np.asarray(idx1), np.asarray(idx2)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.pairs = pairs
        self.keys = keys

    def __len__(self):
        return len(self.labels)

    def subset(self, rows):
        rows = np.asarray(rows)
        pairs = [self.pairs[i] for i in rows] if self.pairs is not None else None
        return PairSet(self.images, self.idx1[rows], self.idx2[rows], self.labels[rows], pairs, self.keys)

    def image_batch(self, indices):
        """(B, 1, S, S) float32 in [0, 1] for rows of the image table."""
        return to_unit_float(self.images[np.asarray(indices)])[:, None]

    def batch(self, rows):
        """x1, x2 (B, 1, S, S) float32 in [0, 1] and y (B,) for the given pair rows."""
        rows = np.asarray(rows)
        return self.image_batch(self.idx1[rows]), self.image_batch(self.idx2[rows]), self.labels[rows]

    def person_of_image(self):
        """Person name of each row of ``images``."""
        return [k[0] for k in self.keys]


def to_unit_float(images):
    """uint8 pixels -> float32 in [0, 1]; float input is returned as float32."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


def load_pairset(data_dir, pairs_file, cache_dir=None, size=IMAGE_SIZE, crop=1.0):
    """Read a pairs file (View 1 or View 2, flattened) and the images it names."""
    path = pairs_file if os.path.isabs(pairs_file) or os.path.exists(pairs_file) \
        else os.path.join(data_dir, pairs_file)
    pairs = read_pairs(path)
    return pairset_from_pairs(data_dir, pairs, path, cache_dir, size, crop)


def pairset_from_pairs(data_dir, pairs, source, cache_dir=None, size=IMAGE_SIZE, crop=1.0):
    index, keys, where = {}, [], {}
    idx1, idx2 = [], []
    for p in pairs:
        for key, out in (((p.name1, p.num1), idx1), ((p.name2, p.num2), idx2)):
            if key not in index:
                index[key] = len(keys)
                keys.append(key)
                where[key] = f"named in {source}:{p.line}"
            out.append(index[key])
    images = load_images(data_dir, keys, cache_dir, size, where, crop)
    return PairSet(images, idx1, idx2, [p.label for p in pairs], pairs, keys)


class Normalizer:
    """Featurewise normalisation: (x - mean) / std with statistics of the
    training images (one channel, so two scalars).  Identity when not fitted.
    It is input preprocessing that travels with the weights (``to_extra`` /
    ``from_extra``: the extra arrays of model.npz and of the training checkpoint)."""

    def __init__(self, mean=0.0, std=1.0):
        self.mean, self.std = float(mean), float(std)

    @classmethod
    def fit(cls, images):
        std = float(images.std())
        return cls(float(images.mean()), std if std > 0 else 1.0)

    def __call__(self, x):
        if self.mean == 0.0 and self.std == 1.0:
            return x
        return ((x - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32)

    def to_extra(self):
        return {"norm_mean": np.array(self.mean), "norm_std": np.array(self.std)}

    @classmethod
    def from_extra(cls, extra, source="model file"):
        """From the arrays ``to_extra`` wrote (absent: the identity); a mean that
        is not finite or a std that is not finite and > 0 is a CheckpointError
        naming ``source``."""
        try:
            mean, std = float(extra.get("norm_mean", 0.0)), float(extra.get("norm_std", 1.0))
        except (TypeError, ValueError):
            raise CheckpointError(f"{source}: norm_mean and norm_std must be numbers") from None
        def bad(_):
            return CheckpointError(f"{source}: bad normalisation (norm_mean {mean!r}, norm_std {std!r}): the mean "
                                   f"must be finite, the std finite and > 0")
        require_number("norm_mean", mean, -math.inf, error=bad)         # any finite mean
        require_number("norm_std", std, 0, lo_open=True, error=bad)
        return cls(mean, std)
