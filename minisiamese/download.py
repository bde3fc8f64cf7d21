"""`cli.py download`: fetch LFW-a and the pairs files, verify, extract safely.

* Nothing already in the data folder is changed.  A pairs file or ``lfw2/``
  that is there and matches its checksums is kept as it is and reported
  present; one that does not match is left untouched and reported, with how to
  replace it, before anything is downloaded.
* Each file is fetched to ``<name>.part`` and resumed with an HTTP Range request
  when a partial file is there; a progress bar shows bytes and speed.
* A download is verified before it is installed: the pairs files against their
  published SHA-256 sums, the image archive against ``archive_sha256`` when one
  is given and, either way, what it unpacks file by file (the 13,233 images must
  hash to the digest of the LFW-a manifest below) before they become ``lfw2/``.
  A download that fails verification installs nothing and is moved aside to
  ``<name>.bad``.
* Extraction refuses members that would land outside the target folder
  (absolute paths, ``..``), links and device files.
"""
import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

from .data import open_regular
from .errors import DownloadError

ARCHIVE_URL = "https://www.openu.ac.il/home/hassner/data/lfwa/lfwa.tar.gz"
PAIRS_URL = "http://vis-www.cs.umass.edu/lfw/"
PAIRS_SHA256 = {
    "pairsDevTrain.txt": "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa",
    "pairsDevTest.txt": "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c",
    "pairs.txt": "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
}
# SHA-256 of the sorted lines "<Person>/<file>.jpg <sha256>\n" over all 13,233 LFW-a images
# (the lines of SHA256SUMS.lfw2, shipped beside the data, hash to it too).
LFW2_TREE_SHA256 = "256a77446e60244df7284859b10c0a36f5cd6fb686976e7b7d02e4e0d667baf1"


def sha256_file(path):
    """SHA-256 (hex) of a regular file; a named pipe or folder is a DataError naming it, not a hang."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _progress(name, done, total, t0, stream):
    if stream is None:
        return
    rate = done / max(1e-9, time.time() - t0) / 2 ** 20
    if total:
        fill = int(30 * done / total)
        stream.write(f"\r{name}: [{'#' * fill}{'.' * (30 - fill)}] {done / 2 ** 20:.1f}/{total / 2 ** 20:.1f} MiB "
                     f"{rate:.1f} MiB/s")
    else:
        stream.write(f"\r{name}: {done / 2 ** 20:.1f} MiB {rate:.1f} MiB/s")
    stream.flush()


def fetch(url, dest, timeout=60, stream=sys.stderr):
    """Download ``url`` into ``dest.part``, resuming a partial one; returns that
    path, complete.  ``dest`` itself is not touched: verify, then install."""
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:                    # already complete
            return part
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect ({reason}); run again to resume") from None
    with resp:
        resumed = have and resp.status == 206
        total = int(resp.headers.get("Content-Length") or 0) + (have if resumed else 0)
        done = have if resumed else 0
        t0 = time.time()
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    _progress(os.path.basename(dest), done, total, t0, stream)
        except OSError as exc:
            raise DownloadError(f"{url}: transfer broke off after {done} bytes ({exc}); "
                                f"run again to resume") from None
        finally:
            if stream is not None:
                stream.write("\n")
    if total and done != total:
        raise DownloadError(f"{url}: got {done} of {total} bytes; run again to resume")
    return part


def verify(path, expected, source):
    """A DownloadError naming ``source`` unless the file at ``path`` has SHA-256 ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise DownloadError(f"{source}: SHA-256 {got} does not match the published {expected}")


@contextlib.contextmanager
def set_aside_on_failure(part, dest):
    """A DownloadError inside moves the download ``part`` aside to ``dest.bad``
    (so a run again downloads afresh, and nothing is installed) and says so."""
    try:
        yield
    except DownloadError as exc:
        os.replace(part, dest + ".bad")
        raise DownloadError(f"{exc}; nothing installed, the download is moved aside to {dest}.bad") from None


def safe_extract(archive, target):
    """Extract a tar archive into ``target``, refusing anything that would
    escape it: absolute names, '..' components, symbolic or hard links, devices."""
    root = os.path.realpath(target)
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        why = " ".join(str(exc).split())                   # tarfile's reasons span several lines
        raise DownloadError(f"{archive}: not a readable tar archive ({why})") from None
    with tar:
        members = tar.getmembers()
        for m in members:
            name = m.name
            if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                raise DownloadError(f"{archive}: member {name!r} would be written outside {target}; refusing")
            if m.issym() or m.islnk():
                raise DownloadError(f"{archive}: member {name!r} is a link; refusing")
            if not (m.isfile() or m.isdir()):
                raise DownloadError(f"{archive}: member {name!r} is not a regular file or folder; refusing")
            dest = os.path.realpath(os.path.join(root, name))
            if os.path.commonpath([root, dest]) != root:
                raise DownloadError(f"{archive}: member {name!r} would be written outside {target}; refusing")
        for m in members:
            dest = os.path.join(root, m.name)
            if m.isdir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            src = tar.extractfile(m)
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)


def tree_digest(folder):
    """SHA-256 of the sorted '<relative path> <sha256>' lines of every .jpg below ``folder``."""
    lines = []
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(".jpg"):
                p = os.path.join(dirpath, f)
                lines.append(f"{os.path.relpath(p, folder).replace(os.sep, '/')} {sha256_file(p)}")
    return hashlib.sha256(("\n".join(sorted(lines)) + "\n").encode()).hexdigest(), len(lines)


def check_existing(data_dir, pairs_sha256, tree_sha256, stream=None):
    """The names (pairs files, "lfw2") missing from ``data_dir``.  What is there
    and matches its checksums is reported present (``lfw2/`` is trusted without
    checking when no ``tree_sha256`` is given); what does not match is one
    DownloadError listing all of it, which says it is left untouched and how to
    replace it."""
    missing, wrong = [], []
    for name, digest in pairs_sha256.items():
        path = os.path.join(data_dir, name)
        if not os.path.lexists(path):
            missing.append(name)
        elif sha256_file(path) == digest:
            _say(stream, f"{path}: present, checksum matches; kept")
        else:
            wrong.append(f"{path} (SHA-256 not the published one)")
    lfw2 = os.path.join(data_dir, "lfw2")
    if not os.path.lexists(lfw2):
        missing.append("lfw2")
    elif not tree_sha256:
        _say(stream, f"{lfw2}: present; not checked (no tree checksum given)")
    else:
        _say(stream, f"{lfw2}: present, checking every image against the LFW-a checksums")
        digest, count = tree_digest(lfw2)
        if digest == tree_sha256:
            _say(stream, f"{lfw2}: {count} images, checksums match; kept")
        else:
            wrong.append(f"{lfw2}/ ({count} images, not LFW-a's: incomplete or changed)")
    if wrong:
        them = "it" if len(wrong) == 1 else "them"
        raise DownloadError(f"{'; '.join(wrong)}: already there and left untouched; to download {them} afresh, "
                            f"move {them} away (e.g. rename to *.old) and run again")
    return missing


def download_lfwa(data_dir, archive_url=None, pairs_url=None, archive_sha256=None, pairs_sha256=None,
                  tree_sha256=LFW2_TREE_SHA256, stream=sys.stderr):
    """Fetch what is missing of LFW-a into ``data_dir`` (made if need be).

    Guarantees: whatever is in ``data_dir`` already is never replaced or changed
    (see :func:`check_existing`, run before any download); every download is
    verified before it is installed, and one that fails installs nothing and is
    kept as ``<name>.bad``; a ``data_dir`` that is a file is one DownloadError."""
    archive_url = archive_url or ARCHIVE_URL
    pairs_url = pairs_url or PAIRS_URL
    pairs_sha256 = pairs_sha256 or PAIRS_SHA256
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as exc:
        why = "a file of that name is there" if os.path.lexists(data_dir) else exc.strerror
        raise DownloadError(f"{data_dir}: cannot be the data folder ({why}); give --data-dir a folder") from None
    missing = check_existing(data_dir, pairs_sha256, tree_sha256, stream)
    for name in (n for n in missing if n in pairs_sha256):
        dest, url = os.path.join(data_dir, name), pairs_url.rstrip("/") + "/" + name
        part = fetch(url, dest, stream=stream)
        with set_aside_on_failure(part, dest):
            verify(part, pairs_sha256[name], url)
        os.replace(part, dest)
    if "lfw2" in missing:
        install_lfw2(data_dir, archive_url, archive_sha256, tree_sha256, stream)
    _say(stream, f"LFW-a ready in {data_dir}")
    return data_dir


def install_lfw2(data_dir, archive_url, archive_sha256, tree_sha256, stream):
    """Download the archive, verify it and what it unpacks (in a temporary folder
    inside ``data_dir``), and only then rename its lfw2/ into ``data_dir``."""
    archive = os.path.join(data_dir, os.path.basename(archive_url.split("?")[0]) or "lfwa.tar.gz")
    part = fetch(archive_url, archive, stream=stream)
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=data_dir)
    try:
        with set_aside_on_failure(part, archive):
            if archive_sha256:
                verify(part, archive_sha256, archive_url)
            safe_extract(part, tmp)
            found = [os.path.join(d, "lfw2") for d, subdirs, _ in os.walk(tmp) if "lfw2" in subdirs]
            if not found:
                raise DownloadError(f"{archive_url}: no lfw2/ folder inside the archive")
            if tree_sha256:
                digest, count = tree_digest(found[0])
                if digest != tree_sha256:
                    raise DownloadError(f"{archive_url}: the {count} extracted images do not match the LFW-a "
                                        f"checksums (tree digest {digest}); the archive is not LFW-a or is damaged")
        os.rename(found[0], os.path.join(data_dir, "lfw2"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.unlink(part)


def _say(stream, msg):
    if stream is not None:
        stream.write(msg + "\n")
