"""segmif_core.atomic: every writer leaves the new file or, on any failure, the old file and no
temporary file."""
import json
import os
import stat

import cv2
import numpy as np
import pytest
import torch

from segmif_core import atomic


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writers_write_what_the_plain_writers_write(tmp_path):
    atomic.write_text(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\n".encode("utf-8")
    atomic.write_bytes(tmp_path / "b.bin", bytes(range(256)))
    assert (tmp_path / "b.bin").read_bytes() == bytes(range(256))
    atomic.write_json(tmp_path / "sub" / "dir" / "c.json", {"x": [1, 2.5, None]})  # makes dirs
    assert json.loads((tmp_path / "sub" / "dir" / "c.json").read_text()) == {"x": [1, 2.5, None]}
    tensor = torch.arange(6.0).reshape(2, 3)
    atomic.torch_save({"t": tensor}, tmp_path / "d.pt")
    assert torch.equal(torch.load(tmp_path / "d.pt")["t"], tensor)
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    atomic.write_image(tmp_path / "e.png", img)
    assert np.array_equal(cv2.imread(str(tmp_path / "e.png"), cv2.IMREAD_UNCHANGED), img)
    deep = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000)
    atomic.write_image(tmp_path / "f.tiff", deep)  # format from the extension: 16-bit TIFF
    assert np.array_equal(cv2.imread(str(tmp_path / "f.tiff"), cv2.IMREAD_UNCHANGED), deep)
    with atomic.atomic_open(tmp_path / "g.csv", "w", newline="") as f:
        f.write("a,b\r\n1,2\r\n")
    assert (tmp_path / "g.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    assert _hidden(tmp_path) == []


def test_save_figure_and_replace_an_existing_file(tmp_path):
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = tmp_path / "plot.png"
    path.write_text("old")
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    atomic.save_figure(fig, path, dpi=50)
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _hidden(tmp_path) == []


def test_new_file_has_the_permissions_open_gives(tmp_path):
    plain = tmp_path / "plain"
    with open(plain, "w"):
        pass
    atomic.write_text(tmp_path / "atomic", "x")
    atomic.torch_save([1], tmp_path / "atomic.pt")
    assert _mode(tmp_path / "atomic") == _mode(plain) == _mode(tmp_path / "atomic.pt")


class _Boom(Exception):
    pass


def _unpicklable():
    return lambda: 0


def _fail_atomic_open(path):
    with atomic.atomic_open(path, "wb") as f:
        f.write(b"half of the new")
        raise _Boom


def _fail_atomic_path(path):
    with atomic.atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise _Boom


def _fail_interrupt(path):
    with atomic.atomic_open(path, "w") as f:
        f.write("partial")
        raise KeyboardInterrupt


FAILURES = {
    "atomic_open": (_fail_atomic_open, _Boom),
    "atomic_path": (_fail_atomic_path, _Boom),
    "interrupt": (_fail_interrupt, KeyboardInterrupt),
    # pickling fails after torch.save has written part of the file
    "torch": (lambda p: atomic.torch_save({"a": torch.zeros(1000), "f": _unpicklable()}, p),
              (AttributeError, TypeError, __import__("pickle").PicklingError)),
    # a 2-channel image cannot be written as PNG
    "image": (lambda p: atomic.write_image(p, np.zeros((4, 4, 2), np.uint8)), (OSError, cv2.error)),
    "json": (lambda p: atomic.write_json(p, {"x": float("nan")}, allow_nan=False), ValueError),
}


@pytest.mark.parametrize("fail", sorted(FAILURES))
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, fail):
    write, expected = FAILURES[fail]
    path = tmp_path / ("old.png" if fail == "image" else "old.dat")
    path.write_bytes(b"old contents")
    with pytest.raises(expected):
        write(path)
    assert path.read_bytes() == b"old contents"
    assert _hidden(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_the_temporary_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic.write_bytes(tmp_path / "x.bin", b"data")
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["fsync", "replace"] and events[0][1] == events[1][1]  # same temp file
    assert os.path.dirname(events[0][1]) == str(tmp_path)  # beside the destination
    assert events[-1] == ("fsync", str(tmp_path))  # then the folder


def test_atomic_open_refuses_append_and_exclusive_modes(tmp_path):
    for mode in ("a", "x", "r+"):
        with pytest.raises(ValueError, match="mode"):
            with atomic.atomic_open(tmp_path / "y", mode):
                pass
    assert _hidden(tmp_path) == [] and not (tmp_path / "y").exists()
