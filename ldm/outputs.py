"""Output folders that many runs share, numbered as AUTOMATIC1111 numbers them: nothing is ever overwritten.

An image takes the next free number and its seed (`00012-1234.png`), a run's contact sheet the next free
grid number (`grid-0003.png`), and a seed walk or prompt morph a numbered folder of its own (`00013-walk/`,
holding its frames, animation and grid). The next free number is one more than the largest leading number
of the names already there (A1111's `get_next_sequence_number`), so runs continue where the folder left
off. A name that another run takes meanwhile is never replaced: the file moves on to the next number.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ldm.errors import LdmError

GRID_PREFIX = "grid-"


def prepare_folder(path: str | Path, flag: str = "--out") -> Path:
    """Create the output folder, or say in one line why it cannot be (before any model is loaded)."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise LdmError(f"{flag} {path} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LdmError(f"{flag} {path}: cannot create it ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LdmError(f"{flag} {path}: not writable")
    return folder


@contextlib.contextmanager
def run_folder(path: str | Path, flag: str = "--output-dir") -> Iterator[Path]:
    """prepare_folder for a run; if the run then fails before writing any file, a folder this made is removed
    again (a refused run leaves nothing behind)."""
    existed = Path(path).expanduser().exists()
    folder = prepare_folder(path, flag)
    try:
        yield folder
    except BaseException:
        if not existed and not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)
        raise


@contextlib.contextmanager
def finish_before_ctrl_c() -> Iterator[None]:
    """Let the block finish when Ctrl-C comes (all of a finished batch gets written), then raise it."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def next_number(folder: str | Path, prefix: str = "") -> int:
    """One more than the largest number that starts a name in folder after prefix (0 in a fresh folder)."""
    largest = -1
    for name in os.listdir(folder):
        if name.startswith(prefix):
            head = os.path.splitext(name[len(prefix):])[0].split("-")[0]
            if head.isascii() and head.isdigit():
                largest = max(largest, int(head))
    return largest + 1


class NumberedFolder:
    """One run's files in a shared output folder, each under the next free number; `written` lists its images
    and grids in order."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.written: list[Path] = []

    def claim(self, name: Callable[[int], str], create: Callable[[Path], object], prefix: str = "") -> Path:
        """Create `name(n)` for the next free n with `create`, which raises FileExistsError if it is taken."""
        number = next_number(self.folder, prefix)
        while True:
            path = self.folder / name(number)
            try:
                create(path)
            except FileExistsError:  # another run took this number since the folder was read
                number = max(number + 1, next_number(self.folder, prefix))
                continue
            return path

    def image(self, image, seed: int, parameters: str) -> Path:
        """`NNNNN-<seed>.png` with its parameters."""
        from ldm.media import save_png

        path = self.claim(lambda n: f"{n:05d}-{seed}.png", lambda p: save_png(image, p, parameters, overwrite=False))
        self.written.append(path)
        return path

    def grid(self, images) -> Path:
        """`grid-NNNN.png`: the contact sheet of this run's images."""
        from ldm.media import make_grid

        return self.sheet(make_grid(images))

    def sheet(self, image, prefix: str = GRID_PREFIX) -> Path:
        """`<prefix>NNNN.png`: a PIL image (a contact sheet, an X/Y/Z plot) under the prefix's next number."""
        from ldm.media import save_image_atomic

        path = self.claim(lambda n: f"{prefix}{n:04d}.png", lambda p: save_image_atomic(image, p, overwrite=False),
                          prefix)
        self.written.append(path)
        return path

    def subfolder(self, kind: str) -> Path:
        """`NNNNN-<kind>/`, new and empty: a walk's or morph's own folder."""
        return self.claim(lambda n: f"{n:05d}-{kind}", lambda p: p.mkdir())
