"""`cli.py download` against an HTTP server on loopback serving files the test builds."""
import hashlib
import io
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minisiamese import download as dl


def make_tar(members):
    """members: list of (TarInfo-like dict, bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """Serves a dict path -> bytes with Range support; can cut a response short once."""

    def __init__(self, files):
        self.files, self.cut_once = files, set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in outer.cut_once:
                    outer.cut_once.discard(self.path)
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    images = {"lfw2/Ann/Ann_0001.jpg": b"jpeg-1", "lfw2/Ann/Ann_0002.jpg": b"jpeg-2",
              "lfw2/Bob/Bob_0001.jpg": os.urandom(200_000)}
    archive = make_tar([(n, d, "file") for n, d in images.items()])
    pairs = {name: f"1\nAnn\t1\t2\nAnn\t1\tBob\t1\n{name}\n".encode() for name in dl.PAIRS_SHA256}
    files = {"/lfwa.tar.gz": archive}
    files.update({f"/pairs/{k}": v for k, v in pairs.items()})
    server = Server(files)
    lines = sorted(f"{n[len('lfw2/'):]} {hashlib.sha256(d).hexdigest()}" for n, d in images.items())
    tree = hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()
    yield server, {k: hashlib.sha256(v).hexdigest() for k, v in pairs.items()}, tree, archive
    server.close()


def run(server, target, pairs_sha, tree, **kw):
    return dl.download_lfwa(str(target), archive_url=server.url + "/lfwa.tar.gz", pairs_url=server.url + "/pairs",
                            pairs_sha256=pairs_sha, tree_sha256=tree, stream=io.StringIO(), **kw)


def test_download_verifies_and_extracts(served, tmp_path):
    server, pairs_sha, tree, archive = served
    run(server, tmp_path, pairs_sha, tree, archive_sha256=hashlib.sha256(archive).hexdigest())
    assert (tmp_path / "lfw2" / "Ann" / "Ann_0002.jpg").read_bytes() == b"jpeg-2"
    for name in pairs_sha:
        assert (tmp_path / name).exists()
    assert not (tmp_path / "lfwa.tar.gz").exists() and not (tmp_path / ".extract").exists()


def test_interrupted_download_resumes(served, tmp_path):
    server, pairs_sha, tree, _ = served
    server.cut_once.add("/lfwa.tar.gz")
    with pytest.raises(dl.DownloadError, match="run again to resume"):
        run(server, tmp_path, pairs_sha, tree)
    part = tmp_path / "lfwa.tar.gz.part"
    assert 0 < part.stat().st_size
    run(server, tmp_path, pairs_sha, tree)
    assert (tmp_path / "lfw2" / "Bob" / "Bob_0001.jpg").stat().st_size == 200_000


def test_checksum_mismatch_is_reported_and_nothing_installed(served, tmp_path):
    server, pairs_sha, tree, _ = served
    wrong = dict(pairs_sha, **{"pairs.txt": "0" * 64})
    with pytest.raises(dl.DownloadError, match="pairs.txt: SHA-256 .* does not match"):
        run(server, tmp_path, wrong, tree)
    with pytest.raises(dl.DownloadError, match="do not match the LFW-a checksums"):
        run(server, tmp_path, pairs_sha, "f" * 64)
    assert not (tmp_path / "lfw2").exists()
    with pytest.raises(dl.DownloadError, match="does not match the published"):
        run(server, tmp_path / "other", pairs_sha, tree, archive_sha256="0" * 64)


def test_unreachable_host_is_a_clear_error(tmp_path):
    with pytest.raises(dl.DownloadError, match="cannot connect"):
        dl.fetch("http://127.0.0.1:9/nothing", str(tmp_path / "x"), timeout=2, stream=None)


@pytest.mark.parametrize("name, data, kind, message", [
    ("../evil.txt", b"x", "file", "outside"),
    ("/etc/evil.txt", b"x", "file", "outside"),
    ("lfw2/a/../../../evil.txt", b"x", "file", "outside"),
    ("lfw2/link", b"/etc/passwd", "sym", "is a link"),
])
def test_extraction_refuses_escaping_members(tmp_path, name, data, kind, message):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(make_tar([("lfw2/ok.jpg", b"ok", "file"), (name, data, kind)]))
    with pytest.raises(dl.DownloadError, match=message):
        dl.safe_extract(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "lfw2" / "ok.jpg").exists()          # nothing written before the check
