"""Atomic file writes: readers (and a crash or Ctrl-C mid-write) see the old file or the new one,
never a half-written file.

Every writer writes a temporary file in the destination's folder (``.NAME.<random>.tmp``, or
``.NAME.<random>.tmp.EXT`` where the writer picks the format from the extension: OpenCV,
Matplotlib), flushes it to disk (``os.fsync``), renames it over the destination
(``os.replace``, atomic on one file system) and syncs the folder. On any error (exception,
KeyboardInterrupt) the temporary file is removed and the old destination, if any, is unchanged.
The new file gets the permissions ``open()`` would give it (0666 minus the umask). Parent
folders are created.

    write_text(path, text)            write_bytes(path, data)        write_json(path, obj)
    torch_save(obj, path)             write_image(path, image)       save_figure(fig, path)
    with atomic_open(path, "w") as f: ...        (a file object)
    with atomic_path(path) as tmp: ...           (a path for writers that take one: ONNX, ...)

Imports no torch, OpenCV or Matplotlib until a writer needs it.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_open", "write_bytes", "write_text", "write_json",
           "torch_save", "write_image", "save_figure"]


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # folders cannot be opened on some systems (Windows): best effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` (an empty file, created with the permissions ``open()``
    gives); when the ``with`` block ends without error it is synced and renamed to ``path``.

    ``keep_suffix``: end the temporary name with ``path``'s extension (``.x.png.1f2e.tmp.png``)
    for writers that choose the format by extension (``cv2.imwrite``, ``savefig``).
    Raises what the block raises (after removing the temporary file; ``path`` is untouched) and
    OSError from creating, syncing or renaming.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:  # O_EXCL: never another writer's temporary file; mode 0666 & ~umask as open()
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_path(path.parent, directory=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """``open(tmp, mode, **kwargs)`` of a temporary file that replaces ``path`` when the block
    ends without error (see :func:`atomic_path`). ``mode``: 'w' or 'wb' ('x'/'a' make no sense
    here and raise ValueError)."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes a whole new file: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8",
               newline: str | None = None) -> None:
    """Write ``text`` to ``path`` atomically (``open``'s ``encoding`` and ``newline``)."""
    with atomic_open(path, "w", encoding=encoding, newline=newline) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj, indent: int | None = 2, **kwargs) -> None:
    """``json.dumps(obj, indent=indent, **kwargs)`` to ``path`` atomically. The text is built
    before the file is touched, so an object JSON cannot encode (TypeError, ValueError for NaN
    with ``allow_nan=False``) leaves no trace."""
    write_text(path, json.dumps(obj, indent=indent, **kwargs))


def torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, ...)`` to ``path`` atomically (a pickling error leaves the old file)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def write_image(path: str | os.PathLike, image, params: list[int] | None = None) -> None:
    """``cv2.imwrite`` of ``image`` (OpenCV's channel order: BGR) to ``path`` atomically, in
    the format of ``path``'s extension.

    Raises:
        OSError: OpenCV could not encode or write the image (``cv2.imwrite`` returned False).
        cv2.error: OpenCV refused the array (dtype, channels, extension).
    """
    import cv2

    with atomic_path(path, keep_suffix=True) as tmp:
        if not cv2.imwrite(str(tmp), image, params or []):
            raise OSError(f"cannot write {path}")


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig(..., **kwargs)`` (Matplotlib) to ``path`` atomically; the format is
    ``kwargs['format']`` or ``path``'s extension."""
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, **kwargs)
