"""build_dataset and the two dataset flavours: items, splits, fallbacks and fingerprints."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from ldm.config import DataConfig
from ldm.data import dataset as dataset_module
from ldm.data.dataset import (
    FolderDataset,
    ImageCaptionDataset,
    ShapesDataset,
    build_dataset,
    shapes_heldout_count,
)
from ldm.data.imagefolder import Entry, scan_imagefolder
from ldm.data.shapes import make_shape
from ldm.errors import LdmError


@pytest.fixture
def folder(tmp_path, write_image):
    """Ten captioned images with a metadata.jsonl; two held out by heldout.txt."""
    rows = []
    for i in range(10):
        write_image(tmp_path / f"{i}.png", color=(25 * i, 0, 0), size=(20, 12))
        rows.append({"file_name": f"{i}.png", "text": f"image {i}"})
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "heldout.txt").write_text("3.png\n7.png\n")
    return tmp_path


def folder_cfg(path, **kw) -> DataConfig:
    return DataConfig(source="files", path=str(path), resolution=16, **kw)


def test_shapes_train_and_heldout():
    cfg = DataConfig(source="shapes", shapes_count=100, resolution=32)
    train, held = build_dataset(cfg, "train", seed=2), build_dataset(cfg, "heldout", seed=2)
    assert isinstance(train, ImageCaptionDataset) and isinstance(held, ShapesDataset)
    assert len(train) == 100 and len(held) == shapes_heldout_count(100) == 8
    assert shapes_heldout_count(1000) == 50
    assert not set(train.indices) & set(held.indices)
    item = train[5]
    assert set(item) == {"pixel_values", "caption", "index"}
    assert item["pixel_values"].shape == (3, 32, 32) and item["pixel_values"].dtype == torch.float32
    img, caption = make_shape(5, 32, seed=2)
    assert item["caption"] == caption == train.captions[5] and item["index"] == 5
    assert torch.equal(item["pixel_values"], train.load(5))
    assert item["pixel_values"].min() >= -1 and item["pixel_values"].max() <= 1
    with pytest.raises(IndexError):
        train[100]


def test_shapes_fingerprint_follows_count_size_seed():
    base = DataConfig(source="shapes", shapes_count=50, resolution=32)
    fp = build_dataset(base, seed=0).fingerprint()
    assert fp == build_dataset(base, seed=0).fingerprint() and len(fp) == 64
    assert fp != build_dataset(DataConfig(source="shapes", shapes_count=51, resolution=32)).fingerprint()
    assert fp != build_dataset(DataConfig(source="shapes", shapes_count=50, resolution=64)).fingerprint()
    assert fp != build_dataset(base, seed=1).fingerprint()
    assert fp != build_dataset(base, "heldout").fingerprint()


def test_imagefolder_splits_and_items(folder):
    train = build_dataset(folder_cfg(folder), "train")
    held = build_dataset(folder_cfg(folder), "heldout")
    assert isinstance(train, FolderDataset)
    assert len(train) == 8 and held.captions == ["image 3", "image 7"]
    item = held[1]
    assert item["caption"] == "image 7" and item["index"] == 1
    assert item["pixel_values"].shape == (3, 16, 16)
    assert item["pixel_values"][0].mean().item() == pytest.approx(175 / 127.5 - 1, abs=1e-3)


def test_imagefolder_scan_is_shared_between_splits(folder, monkeypatch):
    calls = []
    real = dataset_module.scan_imagefolder
    monkeypatch.setattr(dataset_module, "scan_imagefolder", lambda *a, **k: calls.append(a) or real(*a, **k))
    build_dataset(folder_cfg(folder), "train")
    build_dataset(folder_cfg(folder), "heldout")
    assert len(calls) == 1
    build_dataset(folder_cfg(folder, caption_column="other"), "train")
    assert len(calls) == 2


def test_dataloader_batches(folder):
    ds = build_dataset(folder_cfg(folder), "train")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["pixel_values"].shape == (4, 3, 16, 16) and len(batch["caption"]) == 4
    assert batch["index"].tolist() == [0, 1, 2, 3]


def test_file_broken_after_scan_becomes_white_with_one_warning(folder, caplog):
    ds = build_dataset(folder_cfg(folder), "train")
    ds.entries[0].path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ldm.data"):
        first, second = ds.load(0), ds.load(0)
    assert torch.all(first == 1.0) and torch.all(second == 1.0)
    assert len([r for r in caplog.records if "no longer loads" in r.getMessage()]) == 1


def test_folder_fingerprint_changes(folder):
    scan = scan_imagefolder(folder)
    entries = scan.train
    fp = FolderDataset(entries, 16).fingerprint()
    assert fp == FolderDataset(list(entries), 16).fingerprint()

    # caption, order, resolution
    changed = [Entry(entries[0].path, "another caption", entries[0].rel), *entries[1:]]
    assert FolderDataset(changed, 16).fingerprint() != fp
    assert FolderDataset(entries[::-1], 16).fingerprint() != fp
    assert FolderDataset(entries, 32).fingerprint() != fp

    # content with the same size and mtime
    path = entries[2].path
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-13] ^= 0xFF  # one byte: the fingerprint reads bytes, it does not decode
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    fp_content = FolderDataset(entries, 16).fingerprint()
    assert fp_content != fp

    # mtime alone
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert FolderDataset(entries, 16).fingerprint() != fp_content

    # source
    assert FolderDataset(entries, 16).fingerprint() != ShapesDataset(range(len(entries)), 16).fingerprint()


def test_caption_edit_reaches_build_dataset_fingerprint(folder):
    fp = build_dataset(folder_cfg(folder)).fingerprint()
    meta = folder / "metadata.jsonl"
    meta.write_text(meta.read_text().replace('"image 0"', '"image zero"'))
    os.utime(meta, ns=(0, meta.stat().st_mtime_ns + 1_000_000_000))  # coarse clocks
    ds = build_dataset(folder_cfg(folder))
    assert ds.captions[0] == "image zero" and ds.fingerprint() != fp


def test_bad_split_and_source():
    with pytest.raises(ValueError):
        build_dataset(DataConfig(), "validation")
    with pytest.raises(LdmError):
        build_dataset(DataConfig(source="files", path=None))
    with pytest.raises(LdmError, match="not found"):
        build_dataset(DataConfig(source="files", path="/no/such/folder"))
    # a missing Parquet file is not called an image folder
    with pytest.raises(LdmError, match=r"^data not found: /no/such\.parquet \(data takes an image folder, .*Parquet"):
        build_dataset(DataConfig(source="files", path="/no/such.parquet"))
