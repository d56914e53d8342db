"""Scan a folder of images and captions (Hugging Face "imagefolder" layout) into checked entries.

Captions come from `metadata.jsonl` (`file_name` plus a caption column) when the folder has one,
otherwise from same-name `.txt` files, otherwise they are empty. Every image is decoded once up
front, so that a bad file costs one warning now rather than a crash in the middle of training.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import posixpath
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from ldm.data.images import BadImage, clean_caption, decode_caption, decode_text, load_image
from ldm.errors import LdmError

log = logging.getLogger("ldm.data")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
METADATA_NAME = "metadata.jsonl"
HELDOUT_NAME = "heldout.txt"


@dataclass(frozen=True)
class Entry:
    """One usable image: its file, its caption, its path relative to the folder (POSIX), and every caption it
    may be trained under when the folder gives several (the first is `caption`)."""

    path: Path
    caption: str
    rel: str
    captions: tuple[str, ...] = ()

    def all_captions(self) -> tuple[str, ...]:
        """Every caption of the image, `caption` first."""
        return self.captions or (self.caption,)


@dataclass
class FolderScan:
    """The result of scanning a folder: the two splits and what was left out, with reasons."""

    train: list[Entry] = field(default_factory=list)
    heldout: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def _hidden(name: str) -> bool:
    # dot-files include macOS "._x.jpg" resource forks, which carry an image extension but no image
    return name.startswith(".") or name == "__MACOSX"


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """(image paths, metadata.jsonl paths) under root, relative and POSIX, sorted; hidden ones left out."""
    images, metadata = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        base = Path(dirpath).relative_to(root)
        for name in filenames:
            if _hidden(name):
                continue
            rel = (base / name).as_posix()
            if name == METADATA_NAME:
                metadata.append(rel)
            elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                images.append(rel)
    return sorted(images), sorted(metadata)


def _text_lines(raw: bytes) -> list[str]:
    """Lines of a text file; in byte-oriented encodings each line is decoded on its own."""
    wide = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
    if raw.startswith(wide) or (b"\0" in raw[:200] and not raw.startswith(codecs.BOM_UTF8)):
        # UTF-16/32: '\n' is not a byte of its own, so split after decoding
        return decode_text(raw).split("\n")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    # per line, so that one cp1252 line does not turn a whole UTF-8 file into mojibake
    return [decode_text(line) for line in raw.split(b"\n")]


def caption_values(value: object) -> tuple[str, ...]:
    """The captions a metadata value holds: a list gives several (empty and repeated ones dropped), else one."""
    if value is None:
        return ("",)
    if isinstance(value, list):
        cleaned = [clean_caption(v if isinstance(v, str) else str(v)) for v in value if v is not None]
        return tuple(dict.fromkeys(c for c in cleaned if c)) or ("",)
    return (clean_caption(value if isinstance(value, str) else str(value)),)


def _resolve_name(file_name: str, base: str) -> str | None:
    """file_name relative to the metadata file's folder -> path relative to root, or None if it escapes."""
    name = file_name.replace("\\", "/")
    if name.startswith("/") or PureWindowsPath(file_name).drive:
        return None
    rel = posixpath.normpath(posixpath.join(base, name))
    if rel in (".", "..") or rel.startswith("../"):
        return None
    return rel


def _read_metadata(root: Path, meta_rel: str, caption_column: str,
                   skipped: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], set[str]]:
    """([(rel, captions)], columns seen) from one metadata.jsonl; bad lines are appended to `skipped`."""
    try:
        raw = (root / meta_rel).read_bytes()
    except OSError as exc:
        raise LdmError(f"cannot read {root / meta_rel}: {exc.strerror or exc}") from None
    base = posixpath.dirname(meta_rel)
    rows, columns = [], set()
    for lineno, line in enumerate(_text_lines(raw), start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        where = f"{meta_rel} line {lineno}"
        try:
            obj = json.loads(line)
        except ValueError:
            skipped.append((where, "metadata line is not JSON"))
            continue
        if not isinstance(obj, dict):
            skipped.append((where, "metadata line is not a JSON object"))
            continue
        file_name = obj.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            skipped.append((where, "metadata line has no file_name"))
            continue
        rel = _resolve_name(file_name.strip(), base)
        if rel is None:
            skipped.append((file_name, "file_name escapes the folder"))
            continue
        if not (root / rel).is_file():
            skipped.append((rel, "file not found"))
            continue
        columns.update(obj)
        rows.append((rel, caption_values(obj.get(caption_column))))
    return rows, columns


def _sidecar_caption(root: Path, rel: str) -> str:
    """The caption in `photo.txt` beside `photo.png`, or '' when there is none."""
    txt = (root / rel).with_suffix(".txt")
    if txt == root / HELDOUT_NAME:
        return ""
    try:
        return decode_caption(txt.read_bytes())
    except FileNotFoundError:
        return ""


def _candidates(root: Path, caption_column: str,
                skipped: list[tuple[str, str]]) -> list[tuple[str, tuple[str, ...]]]:
    """[(rel, captions)] before the images are decoded."""
    images, metadata = _walk(root)
    if not metadata:
        rows = []
        for rel in images:
            try:
                rows.append((rel, (_sidecar_caption(root, rel),)))
            except OSError as exc:
                skipped.append((rel, f"caption file unreadable ({exc.strerror or type(exc).__name__})"))
        return rows
    rows, columns = [], set()
    for meta_rel in metadata:
        found, cols = _read_metadata(root, meta_rel, caption_column, skipped)
        rows += found
        columns |= cols
    if rows and caption_column not in columns:
        others = ", ".join(sorted(c for c in columns if c != "file_name")) or "none"
        log.warning("%s: no '%s' column in %s (columns: %s); captions are empty",
                    root, caption_column, METADATA_NAME, others)
    unlisted = len(set(images) - {rel for rel, _ in rows})
    if unlisted:
        log.info("%s: %d image files not listed in %s are ignored", root, unlisted, METADATA_NAME)
    return rows


def _check(path: Path, size: int) -> str | None:
    try:
        load_image(path, size)
    except BadImage as exc:
        return str(exc)
    return None


def _hash_unit(rel: str) -> float:
    """A stable number in [0, 1) for a file name (unlike hash(), the same in every process)."""
    return int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _read_heldout_list(path: Path) -> set[str]:
    names = set()
    for line in _text_lines(path.read_bytes()):
        line = line.strip().lstrip("\ufeff")
        if line and not line.startswith("#"):
            names.add(posixpath.normpath(line.replace("\\", "/")))
    return names


def split_entries(root: Path, entries: list[Entry], heldout_fraction: float) -> tuple[list[Entry], list[Entry]]:
    """(train, heldout): the files listed in root/heldout.txt, else a stable hash split of the names."""
    listed = root / HELDOUT_NAME
    if listed.is_file():
        names = _read_heldout_list(listed)
        heldout = [e for e in entries if e.rel in names]
        train = [e for e in entries if e.rel not in names]
        missing = sorted(names - {e.rel for e in entries})
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            log.warning("%s lists %d files that are not usable images here: %s", listed, len(missing), shown)
        if not train:
            raise LdmError(f"{listed} holds every usable image; none is left for training")
        return train, heldout
    if heldout_fraction <= 0 or len(entries) < 2:
        return list(entries), []
    units = {e.rel: _hash_unit(e.rel) for e in entries}
    chosen = {rel for rel, u in units.items() if u < heldout_fraction}
    if not chosen:
        chosen = {min(units, key=units.get)}
    if len(chosen) == len(entries):
        chosen.discard(max(units, key=units.get))
    return [e for e in entries if e.rel not in chosen], [e for e in entries if e.rel in chosen]


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0]


def scan_imagefolder(root: str | Path, caption_column: str = "text", size: int = 64,
                     heldout_fraction: float = 0.05) -> FolderScan:
    """Find, caption, decode-check and split the images of a folder; bad entries are logged and skipped."""
    # 1. check inputs
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise LdmError(f"image folder not found: {root}")
    if not root.is_dir():
        raise LdmError(f"not a folder: {root}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise LdmError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")

    # 2. list images and captions
    skipped: list[tuple[str, str]] = []
    rows = _candidates(root, caption_column, skipped)

    # 3. decode every distinct file once; PIL releases the GIL while decoding, so threads scale
    paths = sorted({rel for rel, _ in rows})
    workers = min(32, (os.cpu_count() or 1) + 4, max(1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = dict(zip(paths, pool.map(lambda rel: _check(root / rel, size), paths)))
    entries = []
    for rel, captions in rows:
        if problems[rel] is None:
            entries.append(Entry(path=root / rel, caption=captions[0], rel=rel,
                                 captions=captions if len(captions) > 1 else ()))
        else:
            skipped.append((rel, problems[rel]))

    # 4. report
    for name, reason in skipped:
        log.warning("skipping %s: %s", name, reason)
    counts = Counter(_reason_kind(reason) for _, reason in skipped)
    detail = f" ({', '.join(f'{n} {kind}' for kind, n in counts.most_common())})" if skipped else ""
    log.log(logging.WARNING if skipped else logging.INFO, "%s: %d images, %d skipped%s",
            root, len(entries), len(skipped), detail)
    if not entries:
        raise LdmError(f"no usable image in {root} ({len(skipped)} skipped)")

    # 5. split
    train, heldout = split_entries(root, entries, heldout_fraction)
    return FolderScan(train=train, heldout=heldout, skipped=skipped)
