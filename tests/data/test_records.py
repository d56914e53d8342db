"""Training data from record files, read where they lie: a datasets (save_to_disk) folder, Parquet files and
WebDataset tar shards, each with a bad row of every kind skipped and counted."""

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import run_script

from ldm.config import DataConfig
from ldm.data.dataset import RecordDataset, build_dataset, clear_scan_cache
from ldm.data.records import records_format, scan_records
from ldm.data.shapes import make_shape

GOOD = 10


def _shapes(count: int = GOOD) -> list[tuple[bytes, str]]:
    out = []
    for i in range(count):
        image, caption = make_shape(i, 32)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        out.append((buf.getvalue(), caption))
    return out


def _image_struct():
    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _table(rows: list[tuple[bytes | None, str | list | None]]) -> pa.Table:
    images = [None if b is None else {"bytes": b, "path": None} for b, _ in rows]
    return pa.table({"image": pa.array(images, _image_struct()), "text": [t for _, t in rows]})


def _rows_with_bad_ones():
    good = _shapes()
    bad = [(b"this is not an image", "a broken file"), (None, "a row without its image"), (good[0][0][:40], "cut")]
    return good[:5] + bad + good[5:], [c for _, c in good]


@pytest.fixture(autouse=True)
def _fresh_scans():
    clear_scan_cache()
    yield
    clear_scan_cache()


@pytest.fixture
def parquet_folder(tmp_path):
    rows, captions = _rows_with_bad_ones()
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(_table(rows[:7]), folder / "part-0.parquet", row_group_size=3)
    pq.write_table(_table(rows[7:]), folder / "part-1.parquet", row_group_size=3)
    return folder, captions


@pytest.fixture
def arrow_folder(tmp_path):
    """The layout datasets' save_to_disk writes: Arrow stream files listed in state.json."""
    rows, captions = _rows_with_bad_ones()
    folder = tmp_path / "ds"
    folder.mkdir()
    table = _table(rows)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=4)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (folder / "dataset_info.json").write_text("{}")
    return folder, captions


@pytest.fixture
def tar_folder(tmp_path):
    good = _shapes()
    folder = tmp_path / "wds"
    folder.mkdir()

    def add(archive, name, data: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))

    with tarfile.open(folder / "shard-000.tar", "w") as archive:
        for i, (png, caption) in enumerate(good[:6]):
            add(archive, f"s/{i:04d}.png", png)
            if i % 2:
                add(archive, f"s/{i:04d}.json", json.dumps({"text": caption}).encode())
            else:
                add(archive, f"s/{i:04d}.txt", caption.encode())
        add(archive, "s/bad.png", b"not a png")
        add(archive, "s/bad.txt", b"a broken image")
        add(archive, "s/lonely.txt", b"a caption without its image")
    with tarfile.open(folder / "shard-001.tar", "w") as archive:
        for i, (png, caption) in enumerate(good[6:], start=6):
            add(archive, f"{i:04d}.png", png)
            add(archive, f"{i:04d}.txt", caption.encode())
    return folder, [c for _, c in good]


@pytest.mark.parametrize("fixture,kind", [("parquet_folder", "parquet"), ("arrow_folder", "arrow"),
                                          ("tar_folder", "webdataset")])
def test_each_format_reads_its_good_rows_and_counts_the_bad(fixture, kind, request):
    folder, captions = request.getfixturevalue(fixture)
    assert records_format(folder) == kind
    scan = scan_records(folder, "text", 32, heldout_fraction=0)
    assert len(scan.train) == GOOD and not scan.heldout
    expected_bad = 2 if kind == "webdataset" else 3  # tar: the broken image and the caption without an image
    assert len(scan.skipped) == expected_bad, scan.skipped
    data = build_dataset(DataConfig(source="files", path=str(folder), resolution=32, heldout_fraction=0))
    assert isinstance(data, RecordDataset) and len(data) == GOOD
    assert sorted(data.captions) == sorted(captions)
    pixels = data.load(3)
    assert pixels.shape == (3, 32, 32) and pixels.min() >= -1 and pixels.max() <= 1
    # the image read back is the image scanned: the same bytes make the same key, wherever they lie
    assert len(set(data.row_keys())) == GOOD


def test_a_single_parquet_file_with_a_list_of_captions(tmp_path):
    good = _shapes(4)
    table = _table([(png, [caption, f"another name {i}"]) for i, (png, caption) in enumerate(good)])
    pq.write_table(table, tmp_path / "one.parquet")
    data = build_dataset(DataConfig(source="files", path=str(tmp_path / "one.parquet"), resolution=32,
                                    heldout_fraction=0))
    assert data.caption_lists[2] == (good[2][1], "another name 2")


def test_a_held_out_share_is_split_by_name(parquet_folder):
    folder, _ = parquet_folder
    scan = scan_records(folder, "text", 32, heldout_fraction=0.3)
    assert scan.heldout and len(scan.train) + len(scan.heldout) == GOOD
    assert not {e.rel for e in scan.train} & {e.rel for e in scan.heldout}


def test_unusable_inputs_are_one_line_errors(tmp_path):
    from ldm.errors import LdmError

    pq.write_table(pa.table({"text": ["no images here"]}), tmp_path / "captions.parquet")
    with pytest.raises(LdmError, match="no image column"):
        scan_records(tmp_path / "captions.parquet")
    (tmp_path / "broken.tar").write_bytes(b"\0" * 10)
    with pytest.raises(LdmError, match="not a readable tar file|no usable image"):
        scan_records(tmp_path / "broken.tar")


def test_training_reads_parquet_through_the_sharded_cache(tiny_run, parquet_folder, tmp_path):
    folder, _ = parquet_folder
    proc = run_script("scripts/train_unet.py", "--config", "configs/tiny.yaml", "--data", str(folder),
                      "--output-dir", str(tmp_path / "run"), "--vae", str(tiny_run / "vae"),
                      "train_unet.max_steps=3", "train_unet.batch_size=4", "train_unet.sample_every=100000",
                      "train_unet.checkpoint_every=100000", "train_unet.validation_prompts=[]", "data.resolution=32")
    out = proc.stderr + proc.stdout
    assert "3 skipped" in out and "10 images" in out
    assert (tmp_path / "run" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
