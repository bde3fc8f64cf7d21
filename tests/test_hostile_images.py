"""Images Pillow refuses or misreads: a decompression bomb, 16-bit gray, a named
pipe named like an image, an image too small to hold a face.  Each is a file
made here, read through data.load_image and through the commands that open
images (verify, identify, train): one DataError line naming the file, exit
status 2, never a traceback or a hang."""
import os
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

import cli
from fixtures import make_dataset, tiny_config
from minisiamese import ModelConfig, SiameseNet, save_model
from minisiamese.data import MIN_FACE_SIDE, DataError, load_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def deadline():
    """Every test here is bounded: a read that hangs (the named pipe) fails it after 30 s."""
    def expire(*_):
        raise TimeoutError("hung for 30 s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def png_header_only(path, width, height):
    """A PNG that declares width x height 8-bit gray pixels and holds none: what a
    decompression bomb looks like to Image.open (which reads only the header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def gray(path, width=64, height=64, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8), "L").save(path)
    return path


# What each hostile file is, and the words its one error line must hold.
HOSTILE = {
    "bomb": (lambda p: png_header_only(p, 20000, 20000), "refused as a possible decompression bomb"),
    "fifo": (os.mkfifo, "not a regular file (a named pipe)"),
    "folder": (os.mkdir, "not a regular file (a folder)"),
    "tiny": (lambda p: gray(p, 40, 12), "40x12 pixels is too small to hold a face"),
}


def hostile(kind, path):
    HOSTILE[kind][0](str(path))
    return str(path)


@pytest.fixture
def model_file(tmp_path):
    path = str(tmp_path / "model.npz")
    save_model(path, SiameseNet(ModelConfig(input_size=20, conv_filters=(3, 4), conv_kernels=(3, 3),
                                            dense_units=5), seed=2))
    return path


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- the library function
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_load_image_refuses_hostile_files_naming_them(tmp_path, kind):
    path = hostile(kind, tmp_path / "face.jpg")
    with pytest.raises(DataError) as info:
        load_image(path)
    assert str(info.value).startswith(f"{path}: ") and HOSTILE[kind][1] in str(info.value)


def test_pillows_bomb_warning_is_refused_too(tmp_path, monkeypatch):
    """Between MAX_IMAGE_PIXELS and twice that Pillow only warns; that is refused as well."""
    path = gray(str(tmp_path / "big.png"), 100, 100)
    assert load_image(path, 24).shape == (24, 24)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)           # 10,000 pixels: a warning, not an error
    with pytest.raises(DataError, match=r"big.png: refused as a possible decompression bomb \(Image size \(10000"):
        load_image(path, 24)


def test_the_minimum_face_side_applies_after_the_crop(tmp_path):
    path = gray(str(tmp_path / "f.png"), 2 * MIN_FACE_SIDE, 2 * MIN_FACE_SIDE)
    assert load_image(path, 24, crop=0.5).shape == (24, 24)            # exactly MIN_FACE_SIDE left: accepted
    with pytest.raises(DataError, match=rf"f.png: 40x40 pixels is too small to hold a face \(short side "
                                        rf"{MIN_FACE_SIDE - 1} after the crop 0.48"):
        load_image(path, 24, crop=0.48)
    assert load_image(gray(str(tmp_path / "g.png"), MIN_FACE_SIDE, 50), 24).shape == (24, 24)


def gradients(tmp_path):
    """(8-bit path, 16-bit PNG path, 16-bit PGM path, the 8-bit pixels): the same
    left-to-right gradient, the 16-bit ones with noise in their low byte."""
    g8 = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    low = np.random.default_rng(0).integers(0, 256, g8.shape)
    g16 = (g8.astype(np.uint16) << 8) | low.astype(np.uint16)
    p8, png, pgm = str(tmp_path / "g8.png"), str(tmp_path / "g16.png"), str(tmp_path / "g16.pgm")
    Image.fromarray(g8, "L").save(p8)
    Image.fromarray(g16).save(png)
    Image.fromarray(g16).save(pgm)
    assert Image.open(png).mode == "I;16" and Image.open(pgm).mode == "I"    # what Pillow makes of them
    return p8, png, pgm, g8


def test_16_bit_gray_is_scaled_to_8_bits_not_clipped(tmp_path):
    p8, png, pgm, g8 = gradients(tmp_path)
    np.testing.assert_array_equal(load_image(png, 256), g8)
    np.testing.assert_array_equal(load_image(pgm, 256), g8)
    np.testing.assert_array_equal(load_image(png, 105, crop=0.5), load_image(p8, 105, crop=0.5))
    wide = str(tmp_path / "wide.tif")
    Image.fromarray(np.full((32, 32), 70000, np.int32)).save(wide)
    with pytest.raises(DataError, match=r"wide.tif: 32-bit image with values 70000..70000, beyond 16 bits"):
        load_image(wide)


# ----------------------------------------------------------------------------- the commands
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_verify_gives_one_line_naming_the_file(tmp_path, kind, model_file, capsys):
    bad, good = hostile(kind, tmp_path / "face.jpg"), gray(str(tmp_path / "good.jpg"))
    assert cli.main(["verify", good, bad, "--checkpoint", model_file, "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert f"{bad}: " in line and HOSTILE[kind][1] in line


def test_verify_scores_16_bit_gray_as_its_8_bit_version(tmp_path, model_file, capsys):
    p8, png, _, _ = gradients(tmp_path)
    other = gray(str(tmp_path / "other.png"))
    assert cli.main(["verify", p8, other, "--checkpoint", model_file, "--device", "cpu"]) == 0
    eight = capsys.readouterr().out
    assert cli.main(["verify", png, other, "--checkpoint", model_file, "--device", "cpu"]) == 0
    assert capsys.readouterr().out == eight


@pytest.mark.parametrize("kind", ["bomb", "fifo"])
def test_identify_gives_one_line_naming_the_gallery_file(tmp_path, kind, model_file, capsys):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    gray(str(gallery / "Ann.jpg"))
    bad = hostile(kind, gallery / "Eve.jpg")
    query = gray(str(tmp_path / "q.jpg"), seed=1)
    assert cli.main(["identify", query, "--gallery", str(gallery), "--checkpoint", model_file, "--device", "cpu",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    line = one_error_line(capsys)
    assert f"{bad}: " in line and HOSTILE[kind][1] in line


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_train_gives_one_line_naming_the_file_and_pairs_line(tmp_path, kind, capsys):
    root = str(tmp_path / "data")
    make_dataset(root, people=8, per_person=4, pairs_per_class=10)
    name, num = open(os.path.join(root, "pairsDevTrain.txt")).read().splitlines()[1].split()[:2]
    path = os.path.join(root, "lfw2", name, f"{name}_{int(num):04d}.jpg")
    os.remove(path)
    hostile(kind, path)
    assert cli.main(["train", "--config", tiny_config(str(tmp_path / "c.json"), epochs=1), "--data-dir", root,
                     "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
                     "--quiet"]) == 2
    line = one_error_line(capsys)
    assert f"{path}: " in line and HOSTILE[kind][1] in line and "pairsDevTrain.txt:2" in line
    assert not os.path.exists(tmp_path / "run" / "checkpoint.npz")


def test_verify_on_a_named_pipe_in_a_real_process(tmp_path, model_file):
    bad, good = hostile("fifo", tmp_path / "face.jpg"), gray(str(tmp_path / "good.jpg"))
    proc = subprocess.run([sys.executable, "cli.py", "verify", bad, good, "--checkpoint", model_file,
                           "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: {bad}: not a regular file (a named pipe); refusing to read it\n"
