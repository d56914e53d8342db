"""Files written whole or not at all, and the one line an error shows a user (no torch: scripts use it first)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def one_line(exc: BaseException) -> str:
    """An exception's first non-empty line of text, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary name beside path to write to; it becomes path only when the block succeeds.

    The temporary name keeps path's suffix (image and video writers pick their format by it) and is
    removed whatever happens. With overwrite=False an existing file is never replaced: FileExistsError,
    even when another process made it a moment ago.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        _publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)  # left only by a failed or interrupted write, or after a hard link


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and refused when path exists, even if another process just made it
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str, durable: bool = False) -> Path:
    """Write a UTF-8 text file whole or not at all; durable also flushes it to disk before it takes the name."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def replace_folder(tmp: Path, final: Path) -> None:
    """Put a completely written folder in final's place; an old final is moved aside first and removed last."""
    old = None
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside path to fill; it replaces path (replace_folder) only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        replace_folder(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
