"""`download` never loses what the user has and installs only what it verified:
driven through cli.main and a real `python3 cli.py download` against a loopback
HTTP server (tests/test_download.py's) serving a tiny fake LFW-a."""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest

import cli
from minisiamese import download as dl
from test_download import Server, make_tar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = {"Ann/Ann_0001.jpg": b"jpeg-1", "Ann/Ann_0002.jpg": b"jpeg-2", "Bob/Bob_0001.jpg": b"jpeg-3" * 1000}
PAIRS = {name: f"1\nAnn\t1\t2\nAnn\t1\tBob\t1\n{name}\n".encode() for name in dl.PAIRS_SHA256}


class Asked(dict):
    """The server's files; remembers every path asked for."""

    def __init__(self, files):
        super().__init__(files)
        self.asked = []

    def get(self, path, default=None):
        self.asked.append(path)
        return super().get(path, default)


@pytest.fixture
def site(monkeypatch):
    """A loopback server for the fake LFW-a (archive at /lfwa.tar.gz, pairs files
    under /pairs/) that stops itself after 60 s and gives up on a silent client
    after 10 s.  cli.main's download checks against the fake checksums and
    writes to sys.stderr as it is when called (capfd's)."""
    files = Asked({"/lfwa.tar.gz": make_tar([(f"lfw2/{n}", d, "file") for n, d in IMAGES.items()])})
    files.update({f"/pairs/{n}": d for n, d in PAIRS.items()})
    server = Server(files)
    server.httpd.RequestHandlerClass.timeout = 10
    stop = threading.Timer(60, server.close)
    stop.daemon = True
    stop.start()
    lines = sorted(f"{n} {hashlib.sha256(d).hexdigest()}" for n, d in IMAGES.items())
    tree = hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()
    pairs_sha = {n: hashlib.sha256(d).hexdigest() for n, d in PAIRS.items()}
    real = dl.download_lfwa
    monkeypatch.setattr(dl, "download_lfwa", lambda *a, **kw: real(*a, pairs_sha256=pairs_sha, tree_sha256=tree,
                                                                    stream=sys.stderr, **kw))
    yield server
    stop.cancel()
    server.close()


def download(server, target):
    return cli.main(["download", "--data-dir", str(target), "--archive-url", server.url + "/lfwa.tar.gz",
                     "--pairs-url", server.url + "/pairs"])


def download_in_a_process(server, target):
    """`python3 cli.py download` (with the real LFW-a checksums): (status, stderr)."""
    proc = subprocess.run([sys.executable, "cli.py", "download", "--data-dir", str(target),
                           "--archive-url", server.url + "/lfwa.tar.gz", "--pairs-url", server.url + "/pairs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def error_line(err):
    """The one 'error: ' line of a failed command's stderr (progress lines aside)."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def snapshot(folder):
    """Every file below ``folder``: relative path -> (inode, mtime_ns, content)."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(d, f)
            st = os.stat(p)
            out[os.path.relpath(p, folder)] = (st.st_ino, st.st_mtime_ns, open(p, "rb").read())
    return out


def installed(target):
    return {os.path.relpath(os.path.join(d, f), target) for d, _, files in os.walk(target) for f in files}


FULL = {*PAIRS, *(f"lfw2/{n}" for n in IMAGES)}


def test_fresh_install(site, tmp_path, capfd):
    assert download(site, tmp_path / "d") == 0
    assert installed(tmp_path / "d") == FULL                     # no .part, .bad, archive or .extract-* left
    assert (tmp_path / "d" / "lfw2" / "Bob" / "Bob_0001.jpg").read_bytes() == IMAGES["Bob/Bob_0001.jpg"]
    assert (tmp_path / "d" / "pairs.txt").read_bytes() == PAIRS["pairs.txt"]
    assert "LFW-a ready" in capfd.readouterr().err


def test_a_matching_existing_pairs_file_is_kept_as_it_is(site, tmp_path, capfd):
    target = tmp_path / "d"
    target.mkdir()
    (target / "pairsDevTest.txt").write_bytes(PAIRS["pairsDevTest.txt"])
    before = snapshot(target)
    assert download(site, target) == 0
    assert snapshot(target)["pairsDevTest.txt"] == before["pairsDevTest.txt"]      # inode, mtime, bytes
    assert "/pairs/pairsDevTest.txt" not in site.files.asked
    assert f"{target / 'pairsDevTest.txt'}: present, checksum matches; kept" in capfd.readouterr().err
    assert installed(target) == FULL


def test_a_mismatching_existing_pairs_file_is_left_untouched(site, tmp_path, capfd):
    target = tmp_path / "d"
    target.mkdir()
    (target / "pairs.txt").write_bytes(b"my own edited pairs.txt\n")
    before = snapshot(target)
    assert download(site, target) == 2
    line = error_line(capfd.readouterr().err)
    assert line == (f"error: {target / 'pairs.txt'} (SHA-256 not the published one): already there and left "
                    f"untouched; to download it afresh, move it away (e.g. rename to *.old) and run again")
    assert snapshot(target) == before and site.files.asked == []     # found before anything was downloaded
    os.rename(target / "pairs.txt", target / "pairs.txt.old")          # what the message says to do
    assert download(site, target) == 0 and installed(target) == FULL | {"pairs.txt.old"}


def test_a_mismatching_existing_pairs_file_in_a_real_process(site, tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "pairsDevTrain.txt").write_bytes(b"not the published file\n")
    before = snapshot(target)
    status, err = download_in_a_process(site, target)
    assert status == 2 and err.splitlines() == [error_line(err)]
    assert f"{target / 'pairsDevTrain.txt'} (SHA-256 not the published one): already there" in err
    assert snapshot(target) == before and site.files.asked == []


@pytest.mark.parametrize("path, damage, message", [
    ("/pairs/pairsDevTest.txt", lambda d: d.replace(b"Bob", b"Bib"), "pairsDevTest.txt: SHA-256 .* does not match"),
    ("/lfwa.tar.gz", lambda d: make_tar([(f"lfw2/{n}", b"x" + v, "file") for n, v in IMAGES.items()]),
     "the 3 extracted images do not match the LFW-a checksums"),
    ("/lfwa.tar.gz", lambda d: b"<html>mirror moved</html>", "not a readable tar archive"),
])
def test_a_corrupted_download_installs_nothing(site, tmp_path, capfd, path, damage, message):
    target = tmp_path / "d"
    good = site.files[path]
    site.files[path] = damage(good)
    assert download(site, target) == 2
    line = error_line(capfd.readouterr().err)
    bad = os.path.basename(path) + ".bad"
    assert re.search(message, line) and line.endswith(
        f"; nothing installed, the download is moved aside to {target / bad}")
    assert bad in installed(target) and os.path.basename(path) not in installed(target)
    assert not any(p.startswith("lfw2/") for p in installed(target))
    assert [n for n in os.listdir(target) if n.startswith(".extract")] == []
    site.files[path] = good                                         # the mirror is fixed: a run again gets it
    assert download(site, target) == 0 and installed(target) == FULL | {bad}


def test_a_corrupted_download_in_a_real_process(site, tmp_path):
    """The real checksums: the fake pairs file served is not the published one."""
    status, err = download_in_a_process(site, tmp_path / "d")
    line = error_line(err)
    assert status == 2 and "/pairs/pairsDevTrain.txt: SHA-256" in line and "nothing installed" in line
    assert installed(tmp_path / "d") == {"pairsDevTrain.txt.bad"}


@pytest.mark.parametrize("change", ["missing image", "changed image", "lfw2 is a file"])
def test_an_incomplete_existing_lfw2_is_not_trusted(site, tmp_path, capfd, change):
    target = tmp_path / "d"
    for n, d in IMAGES.items():
        (target / "lfw2" / n).parent.mkdir(parents=True, exist_ok=True)
        (target / "lfw2" / n).write_bytes(d)
    count = {"missing image": 2, "changed image": 3, "lfw2 is a file": 0}[change]
    if change == "missing image":
        os.remove(target / "lfw2" / "Ann" / "Ann_0002.jpg")
    elif change == "changed image":
        (target / "lfw2" / "Ann" / "Ann_0002.jpg").write_bytes(b"edited")
    else:
        shutil.rmtree(target / "lfw2")
        (target / "lfw2").write_bytes(b"a file")
    before = snapshot(target)
    assert download(site, target) == 2
    line = error_line(capfd.readouterr().err)
    assert f"{target / 'lfw2'}/ ({count} images, not LFW-a's: incomplete or changed): already there and left " \
           f"untouched" in line
    assert snapshot(target) == before and site.files.asked == []


def test_a_complete_existing_lfw2_is_kept_and_the_archive_not_fetched(site, tmp_path):
    target = tmp_path / "d"
    for n, d in IMAGES.items():
        (target / "lfw2" / n).parent.mkdir(parents=True, exist_ok=True)
        (target / "lfw2" / n).write_bytes(d)
    before = snapshot(target)
    assert download(site, target) == 0
    assert "/lfwa.tar.gz" not in site.files.asked
    assert {k: v for k, v in snapshot(target).items() if k.startswith("lfw2")} == before


def test_a_data_dir_that_is_a_file_is_one_line(site, tmp_path, capfd):
    (tmp_path / "f").write_bytes(b"mine")
    assert download(site, tmp_path / "f") == 2
    assert error_line(capfd.readouterr().err) == (f"error: {tmp_path / 'f'}: cannot be the data folder (a file "
                                                  f"of that name is there); give --data-dir a folder")
    assert download(site, tmp_path / "f" / "below") == 2
    assert "cannot be the data folder (Not a directory)" in error_line(capfd.readouterr().err)
    status, err = download_in_a_process(site, tmp_path / "f")
    assert status == 2 and err == f"error: {tmp_path / 'f'}: cannot be the data folder (a file of that name is " \
                                  f"there); give --data-dir a folder\n"
    assert (tmp_path / "f").read_bytes() == b"mine" and site.files.asked == []
