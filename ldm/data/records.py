"""Training images that live inside record files, read where they lie: a Hugging Face `datasets` folder written by
`save_to_disk` (Arrow files, memory-mapped), Parquet files with an image and a caption column, and
WebDataset-style `.tar` shards (`key.png` beside `key.txt` or `key.json`).

Each format yields records (a name for messages and the held-out split, a locator to read the image bytes again,
the bytes and the caption value) as a stream, so nothing is copied or unpacked first. As for image folders,
every image is decoded once while scanning; bad rows are skipped, logged and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ldm.data.imagefolder import IMAGE_EXTENSIONS, caption_values, split_entries
from ldm.data.images import BadImage, load_image_bytes
from ldm.errors import LdmError

log = logging.getLogger("ldm.data")

FORMATS = ("arrow", "parquet", "webdataset")
_IMAGE_SUFFIXES = {e.lstrip(".") for e in IMAGE_EXTENSIONS}
_CHECK_CHUNK = 256  # records decode-checked together (threads), so a scan's memory stays bounded


@dataclass(frozen=True)
class RecordEntry:
    """One usable image in a record file: its name, where its bytes are, its captions and their hash."""

    rel: str
    locator: tuple
    captions: tuple[str, ...]
    digest: str

    @property
    def caption(self) -> str:
        """The primary caption."""
        return self.captions[0]

    def all_captions(self) -> tuple[str, ...]:
        """Every caption of the image, the primary first."""
        return self.captions


def records_format(path: str | Path) -> str | None:
    """Which record format a --data path holds, or None for a plain image folder (or nothing known)."""
    path = Path(path)
    if path.is_file():
        return {".parquet": "parquet", ".tar": "webdataset", ".arrow": "arrow"}.get(path.suffix.lower())
    if not path.is_dir():
        return None
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return "arrow"
    if any(path.rglob("*.parquet")):
        return "parquet"
    if any(path.rglob("*.tar")):
        return "webdataset"
    return None


def _files(path: Path, suffix: str) -> list[Path]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob(f"*{suffix}") if not p.name.startswith("."))
    if not files:
        raise LdmError(f"no {suffix} file in {path}")
    return files


def _cell_bytes(value) -> bytes | None:
    """Image bytes from a cell: raw bytes, or datasets' Image struct {"bytes", "path"}."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
        return bytes(value["bytes"])
    return None


def _image_column(schema, wanted: str | None = "image") -> str | None:
    """The column holding images: `image` when there is one, else the first binary or {bytes, ...} column."""
    import pyarrow as pa

    if wanted and wanted in schema.names:
        return wanted
    for field in schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            return field.name
        if pa.types.is_struct(field.type) and any(f.name == "bytes" for f in field.type):
            return field.name
    return None


def _columns(file: Path, schema, caption_column: str) -> tuple[str, str | None]:
    """(image column, caption column or None) of a file's schema; no image column is a one-line error."""
    image = _image_column(schema)
    if image is None:
        raise LdmError(f"{file}: no image column (columns: {', '.join(schema.names)})")
    return image, caption_column if caption_column in schema.names else None


def _cells(part, image: str, captions: str | None) -> list[tuple[bytes | None, object]]:
    """(image bytes, caption value) of each row of an Arrow table or record batch."""
    cells = part.column(image).to_pylist()
    texts = part.column(captions).to_pylist() if captions else [None] * len(cells)
    return [(_cell_bytes(cell), text) for cell, text in zip(cells, texts, strict=True)]


# ---- Arrow (datasets' save_to_disk) ---------------------------------------------------------------------------

def _arrow_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "dataset_dict.json").is_file():  # a DatasetDict: its train split
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if "train" not in splits:
            raise LdmError(f"{path} is a DatasetDict without a 'train' split (splits: {', '.join(splits)})")
        path = path / "train"
    state = json.loads((path / "state.json").read_text())
    return [path / f["filename"] for f in state.get("_data_files", [])]


@lru_cache(maxsize=16)
def _arrow_table(file: str):
    """A datasets Arrow file (IPC stream) as a memory-mapped table: rows are not read until used."""
    import pyarrow as pa

    with pa.memory_map(file) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all()


def _scan_arrow(path: Path, caption_column: str) -> Iterator[tuple[str, tuple, bytes | None, object]]:
    for file in _arrow_files(path):
        table = _arrow_table(str(file))
        image, captions = _columns(file, table.schema, caption_column)
        row = 0
        for batch in table.to_batches(max_chunksize=_CHECK_CHUNK):
            for data, text in _cells(batch, image, captions):
                yield f"{file.name}:{row}", ("arrow", str(file), image, row), data, text
                row += 1


# ---- Parquet --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _parquet_file(file: str):
    import pyarrow.parquet as pq

    return pq.ParquetFile(file)


@lru_cache(maxsize=2)
def _row_group(file: str, group: int, column: str):
    """One row group's image column: training reads rows in a random order, a group at a time stays cheap."""
    return _parquet_file(file).read_row_group(group, columns=[column]).column(column)


def _scan_parquet(path: Path, caption_column: str) -> Iterator[tuple[str, tuple, bytes | None, object]]:
    for file in _files(path, ".parquet"):
        pf = _parquet_file(str(file))
        image, captions = _columns(file, pf.schema_arrow, caption_column)
        for group in range(pf.num_row_groups):
            table = pf.read_row_group(group, columns=[image] + ([captions] if captions else []))
            for row, (data, text) in enumerate(_cells(table, image, captions)):
                yield f"{file.name}:{group}:{row}", ("parquet", str(file), image, group, row), data, text


# ---- WebDataset tar shards ------------------------------------------------------------------------------------

def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's grouping: the key is the path up to the first '.' of the file name, the rest its suffix."""
    folder, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def _scan_tar(path: Path, caption_column: str) -> Iterator[tuple[str, tuple, bytes | None, object]]:
    for file in _files(path, ".tar"):
        try:
            archive = tarfile.open(file, "r:")
        except (tarfile.TarError, OSError) as exc:
            raise LdmError(f"{file}: not a readable tar file ({exc})") from None
        with archive:
            groups: dict[str, dict[str, tarfile.TarInfo]] = {}
            order: list[str] = []
            for member in archive:
                if not member.isfile():
                    continue
                key, suffix = _split_key(member.name)
                if key not in groups:
                    groups[key] = {}
                    order.append(key)
                groups[key][suffix] = member
            for key in order:
                parts = groups[key]
                image = next((s for s in parts if s in _IMAGE_SUFFIXES), None)
                text = None
                if "txt" in parts:
                    text = archive.extractfile(parts["txt"]).read().decode("utf-8", "replace")
                elif "json" in parts:
                    try:
                        meta = json.loads(archive.extractfile(parts["json"]).read())
                    except (ValueError, UnicodeDecodeError):
                        meta = {}
                    text = meta.get(caption_column, meta.get("caption")) if isinstance(meta, dict) else None
                if image is None:
                    yield f"{file.name}:{key}", None, None, text
                    continue
                info = parts[image]
                data = archive.extractfile(info).read()
                yield f"{file.name}:{key}", ("tar", str(file), info.offset_data, info.size), data, text


_SCANNERS = {"arrow": _scan_arrow, "parquet": _scan_parquet, "webdataset": _scan_tar}


def read_image_bytes(locator: tuple) -> bytes:
    """The bytes of the image a RecordEntry points at."""
    kind = locator[0]
    if kind == "tar":
        _, file, offset, size = locator
        with open(file, "rb") as f:
            f.seek(offset)
            return f.read(size)
    if kind == "arrow":
        _, file, column, row = locator
        return _cell_bytes(_arrow_table(file).column(column)[row].as_py()) or b""
    _, file, column, group, row = locator
    return _cell_bytes(_row_group(file, group, column)[row].as_py()) or b""


def _check(item: tuple[str, tuple | None, bytes | None, object], size: int) -> tuple[RecordEntry | None, str | None]:
    name, locator, data, text = item
    if locator is None or data is None:
        return None, "no image in the record"
    try:
        load_image_bytes(data, size)
    except BadImage as exc:
        return None, str(exc)
    captions = caption_values(text)
    return RecordEntry(name, locator, captions, hashlib.sha256(data).hexdigest()), None


@dataclass
class RecordScan:
    """Usable records split for training and held out, and what was skipped (name, reason)."""

    train: list[RecordEntry]
    heldout: list[RecordEntry]
    skipped: list[tuple[str, str]]


def scan_records(path: str | Path, caption_column: str = "text", size: int = 64,
                 heldout_fraction: float = 0.05) -> RecordScan:
    """Stream, decode-check and split the records of a datasets folder, Parquet or tar files."""
    path = Path(path).expanduser()
    kind = records_format(path)
    if kind is None:
        raise LdmError(f"{path} holds no Arrow, Parquet or tar records")
    try:
        import pyarrow  # noqa: F401  (Arrow and Parquet need it; tar shards do not)
    except ImportError:
        if kind != "webdataset":
            raise LdmError(f"reading {kind} data needs pyarrow: pip install pyarrow") from None
    entries: list[RecordEntry] = []
    skipped: list[tuple[str, str]] = []
    stream = _SCANNERS[kind](path, caption_column)
    with ThreadPoolExecutor(max_workers=4) as pool:
        while True:
            chunk = [item for _, item in zip(range(_CHECK_CHUNK), stream, strict=False)]
            if not chunk:
                break
            for item, (entry, problem) in zip(chunk, pool.map(lambda it: _check(it, size), chunk), strict=True):
                if entry is None:
                    skipped.append((item[0], problem))
                else:
                    entries.append(entry)
    for name, reason in skipped[:20]:
        log.warning("skipping %s: %s", name, reason)
    counts = Counter(reason.split(" (")[0] for _, reason in skipped)
    detail = f" ({', '.join(f'{n} {kind}' for kind, n in counts.most_common())})" if skipped else ""
    log.log(logging.WARNING if skipped else logging.INFO, "%s: %d images, %d skipped%s", path, len(entries),
            len(skipped), detail)
    if not entries:
        raise LdmError(f"no usable image in {path} ({len(skipped)} skipped)")
    root = path if path.is_dir() else path.parent
    train, heldout = split_entries(root, entries, heldout_fraction)
    return RecordScan(train, heldout, skipped)
