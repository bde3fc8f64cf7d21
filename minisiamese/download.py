"""`cli.py download`: fetch LFW-a and the pairs files, verify, extract safely.

* Each file is fetched to ``<name>.part`` and resumed with an HTTP Range request
  when a partial file is there; a progress bar shows bytes and speed.
* The pairs files are checked against their published SHA-256 sums before they
  are renamed into place.
* The image archive is checked against ``archive_sha256`` when one is given;
  either way, what it unpacks is checked file by file: the 13,233 images must
  hash to the digest of the LFW-a manifest below before they are moved into
  ``lfw2/``.
* Extraction refuses members that would land outside the target folder
  (absolute paths, ``..``), links and device files.
"""
import hashlib
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request

ARCHIVE_URL = "https://www.openu.ac.il/home/hassner/data/lfwa/lfwa.tar.gz"
PAIRS_URL = "http://vis-www.cs.umass.edu/lfw/"
PAIRS_SHA256 = {
    "pairsDevTrain.txt": "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa",
    "pairsDevTest.txt": "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c",
    "pairs.txt": "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
}
# SHA-256 of the sorted lines "<Person>/<file>.jpg <sha256>\n" over all 13,233 LFW-a images.
LFW2_TREE_SHA256 = "256a77446e60244df7284859b10c0a36f5cd6fb686976e7b7d02e4e0d667baf1"


class DownloadError(RuntimeError):
    """A download, checksum or extraction failed; the message says which and why."""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
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
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial file."""
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:                    # already complete
            os.replace(part, dest)
            return dest
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
    os.replace(part, dest)
    return dest


def verify(path, expected):
    got = sha256_file(path)
    if got != expected:
        bad = path + ".bad"
        os.replace(path, bad)
        raise DownloadError(f"{path}: SHA-256 {got} does not match the published {expected}; "
                            f"moved aside to {bad}")


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


def download_lfwa(data_dir, archive_url=None, pairs_url=None, archive_sha256=None, pairs_sha256=None,
                  tree_sha256=LFW2_TREE_SHA256, stream=sys.stderr):
    """Fetch what is missing of LFW-a into ``data_dir``; already-complete parts are kept."""
    archive_url = archive_url or ARCHIVE_URL
    pairs_url = pairs_url or PAIRS_URL
    pairs_sha256 = pairs_sha256 or PAIRS_SHA256
    os.makedirs(data_dir, exist_ok=True)
    for name, digest in pairs_sha256.items():
        dest = os.path.join(data_dir, name)
        if os.path.exists(dest) and sha256_file(dest) == digest:
            continue
        fetch(pairs_url.rstrip("/") + "/" + name, dest, stream=stream)
        verify(dest, digest)
    lfw2 = os.path.join(data_dir, "lfw2")
    if os.path.isdir(lfw2):
        _say(stream, f"{lfw2} already present; not downloading the archive")
        return data_dir
    archive = os.path.join(data_dir, os.path.basename(archive_url.split("?")[0]) or "lfwa.tar.gz")
    if not os.path.exists(archive):
        fetch(archive_url, archive, stream=stream)
    if archive_sha256:
        verify(archive, archive_sha256)
    tmp = os.path.join(data_dir, ".extract")
    shutil.rmtree(tmp, ignore_errors=True)
    safe_extract(archive, tmp)
    found = [os.path.join(d, "lfw2") for d, subdirs, _ in os.walk(tmp) if "lfw2" in subdirs]
    if not found:
        raise DownloadError(f"{archive}: no lfw2/ folder inside the archive")
    if tree_sha256:
        digest, count = tree_digest(found[0])
        if digest != tree_sha256:
            raise DownloadError(f"{archive}: the {count} extracted images do not match the LFW-a checksums "
                                f"(tree digest {digest}); the archive is not LFW-a or is damaged")
    os.replace(found[0], lfw2)
    shutil.rmtree(tmp, ignore_errors=True)
    os.unlink(archive)
    _say(stream, f"LFW-a ready in {data_dir}")
    return data_dir


def _say(stream, msg):
    if stream is not None:
        stream.write(msg + "\n")
