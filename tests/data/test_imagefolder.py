"""scan_imagefolder on real folders: captions from metadata, sidecars or none; bad entries; splits."""

from __future__ import annotations

import json
import logging

import pytest

from ldm.data.dataset import FolderDataset
from ldm.data.imagefolder import Entry, _hash_unit, scan_imagefolder
from ldm.errors import LdmError

BAD_FILE_KINDS = ["empty", "text", "truncated_png", "truncated_jpeg", "bomb", "huge_bomb"]


def write_metadata(root, rows, raw_lines=(), encoding="utf-8"):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + list(raw_lines)
    (root / "metadata.jsonl").write_bytes(("\n".join(lines) + "\n").encode(encoding))


def rels(entries: list[Entry]) -> list[str]:
    return [e.rel for e in entries]


def everything(scan) -> dict[str, str]:
    return {e.rel: e.caption for e in scan.train + scan.heldout}


def warnings_about(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "ldm.data" and f"skipping {name}:" in r.getMessage()]


def summary(caplog) -> str:
    lines = [r.getMessage() for r in caplog.records if " skipped" in r.getMessage() and "images," in r.getMessage()]
    assert len(lines) == 1, lines
    return lines[0]


def test_metadata_jsonl_captions(tmp_path, write_image):
    for name in ("a.png", "sub/b.jpg", "c.webp", "unlisted.png"):
        write_image(tmp_path / name)
    write_metadata(tmp_path, [
        {"file_name": "a.png", "text": "a red thing"},
        {"file_name": "sub/b.jpg", "text": "line one\nline two"},
        {"file_name": "c.webp", "other": 1},  # no caption column -> empty caption
    ])
    scan = scan_imagefolder(tmp_path, heldout_fraction=0)
    assert rels(scan.train) == ["a.png", "sub/b.jpg", "c.webp"]
    assert everything(scan) == {"a.png": "a red thing", "sub/b.jpg": "line one line two", "c.webp": ""}
    assert scan.heldout == [] and scan.skipped == []
    assert scan.train[0].path == tmp_path / "a.png"


def test_metadata_caption_column_and_missing_column_warning(tmp_path, write_image, caplog):
    write_image(tmp_path / "a.png")
    write_metadata(tmp_path, [{"file_name": "a.png", "caption": "hello", "text": "ignored"}])
    assert everything(scan_imagefolder(tmp_path, caption_column="caption")) == {"a.png": "hello"}
    with caplog.at_level(logging.INFO, logger="ldm.data"):
        assert everything(scan_imagefolder(tmp_path, caption_column="prompt")) == {"a.png": ""}
    assert any("no 'prompt' column" in r.getMessage() and "caption" in r.getMessage() for r in caplog.records)


def test_a_list_of_captions_gives_every_caption_and_the_first_as_primary(tmp_path, write_image):
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name)
    write_metadata(tmp_path, [
        {"file_name": "a.png", "captions": ["red apple", " a fruit\n", "", "red apple", None, 3]},
        {"file_name": "b.png", "captions": []},  # no caption at all
        {"file_name": "c.png", "captions": "just one"},
    ])
    scan = scan_imagefolder(tmp_path, caption_column="captions", heldout_fraction=0)
    assert everything(scan) == {"a.png": "red apple", "b.png": "", "c.png": "just one"}
    assert [e.all_captions() for e in scan.train] == [("red apple", "a fruit", "3"), ("",), ("just one",)]


def test_the_held_out_split_is_by_image_so_no_caption_of_a_held_out_image_trains(tmp_path, write_image):
    rows = []
    for i in range(8):
        write_image(tmp_path / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "captions": [f"name {i}", f"alias {i}", "shared phrase"]})
    write_metadata(tmp_path, rows)
    (tmp_path / "heldout.txt").write_text("2.png\n5.png\n")
    train = FolderDataset(scan_imagefolder(tmp_path, caption_column="captions").train, 16)
    heldout = FolderDataset(scan_imagefolder(tmp_path, caption_column="captions").heldout, 16)
    assert heldout.captions == ["name 2", "name 5"]
    trained = {c for captions in train.caption_lists for c in captions}
    assert len(train) == 6 and not {"name 2", "alias 2", "name 5", "alias 5"} & trained
    assert all(len(captions) == 3 for captions in train.caption_lists)


def test_metadata_with_bom_utf16_and_cp1252_line(tmp_path, write_image):
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name)
    write_metadata(tmp_path, [{"file_name": "a.png", "text": "café"}, {"file_name": "b.png", "text": "naïve"}],
                   encoding="utf-8-sig")
    assert everything(scan_imagefolder(tmp_path)) == {"a.png": "café", "b.png": "naïve"}
    write_metadata(tmp_path, [{"file_name": "a.png", "text": "café"}, {"file_name": "b.png", "text": "naïve"}],
                   encoding="utf-16")
    assert everything(scan_imagefolder(tmp_path)) == {"a.png": "café", "b.png": "naïve"}
    # one line written by a cp1252 tool inside an otherwise UTF-8 file
    (tmp_path / "metadata.jsonl").write_bytes(
        '{"file_name": "a.png", "text": "café – ok"}\n'.encode()
        + '{"file_name": "b.png", "text": "naïve – 1252"}\r\n'.encode("cp1252"))
    assert everything(scan_imagefolder(tmp_path)) == {"a.png": "café – ok", "b.png": "naïve – 1252"}


def test_sidecar_txt_captions_in_every_encoding(tmp_path, write_image):
    encodings = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252"]
    for i, enc in enumerate(encodings):
        write_image(tmp_path / f"img{i}.png")
        raw = "café – naïve".encode(enc)
        if enc in ("utf-16-le", "utf-16-be"):
            raw = ("\ufeff" + "café – naïve").encode(enc)  # with BOM
        (tmp_path / f"img{i}.txt").write_bytes(raw)
    write_image(tmp_path / "blank.png")
    (tmp_path / "blank.txt").write_bytes(b"  \n")
    write_image(tmp_path / "nocaption.png")
    caps = everything(scan_imagefolder(tmp_path, heldout_fraction=0))
    assert caps == {**{f"img{i}.png": "café – naïve" for i in range(len(encodings))},
                    "blank.png": "", "nocaption.png": ""}


def test_uncaptioned_recursive_folder_skips_hidden_files(tmp_path, write_image):
    for name in ("z.png", "a/b/c.JPG", "a/d.bmp", "e.gif", "f.tif", "g.TIFF", "h.jpeg"):
        write_image(tmp_path / name)
    write_image(tmp_path / ".hidden" / "x.png")
    write_image(tmp_path / "._z.png")  # macOS resource-fork litter
    (tmp_path / "notes.md").write_text("not an image")
    scan = scan_imagefolder(tmp_path, heldout_fraction=0)
    assert rels(scan.train) == ["a/b/c.JPG", "a/d.bmp", "e.gif", "f.tif", "g.TIFF", "h.jpeg", "z.png"]
    assert all(e.caption == "" for e in scan.train) and scan.skipped == []


@pytest.mark.parametrize("kind", BAD_FILE_KINDS)
def test_each_bad_file_skipped_with_one_warning(tmp_path, write_image, write_bad, caplog, kind):
    write_image(tmp_path / "good.png")
    name = "bad.jpg" if kind == "truncated_jpeg" else "bad.png"
    reason = write_bad(tmp_path / name, kind)
    with caplog.at_level(logging.INFO, logger="ldm.data"):
        scan = scan_imagefolder(tmp_path, heldout_fraction=0)
    assert rels(scan.train) == ["good.png"]
    assert len(scan.skipped) == 1 and scan.skipped[0][0] == name and scan.skipped[0][1].startswith(reason)
    assert len(warnings_about(caplog, name)) == 1
    assert "1 images, 1 skipped (1 " in summary(caplog)


def test_every_bad_entry_kind_in_one_metadata_folder(tmp_path, write_image, write_bad, caplog):
    write_image(tmp_path / "good1.png")
    write_image(tmp_path / "good2.png")
    write_image(tmp_path.parent / f"{tmp_path.name}-outside.png")  # exists, but outside the root
    bad = {}
    for kind in BAD_FILE_KINDS:
        name = f"{kind}.jpg" if kind == "truncated_jpeg" else f"{kind}.png"
        bad[name] = write_bad(tmp_path / name, kind)
    rows = [{"file_name": "good1.png", "text": "one"}, {"file_name": "good2.png", "text": "two"}]
    rows += [{"file_name": name, "text": "bad"} for name in bad]
    rows += [
        {"file_name": "missing.png", "text": "gone"},
        {"file_name": f"../{tmp_path.name}-outside.png", "text": "escapes"},
        {"file_name": str(tmp_path / "good1.png"), "text": "absolute"},
        {"text": "no file name"},
        {"file_name": "", "text": "empty file name"},
    ]
    write_metadata(tmp_path, rows, raw_lines=["{not json", "[1, 2]", ""])
    with caplog.at_level(logging.INFO, logger="ldm.data"):
        scan = scan_imagefolder(tmp_path, heldout_fraction=0)
    assert rels(scan.train) == ["good1.png", "good2.png"]
    skipped = dict(scan.skipped)
    for name, reason in bad.items():
        assert skipped[name].startswith(reason)
    assert skipped["missing.png"] == "file not found"
    assert skipped[f"../{tmp_path.name}-outside.png"] == "file_name escapes the folder"
    assert skipped[str(tmp_path / "good1.png")] == "file_name escapes the folder"
    assert sorted(r for n, r in scan.skipped if n.startswith("metadata.jsonl line")) == [
        "metadata line has no file_name", "metadata line has no file_name",
        "metadata line is not JSON", "metadata line is not a JSON object"]
    assert len(scan.skipped) == len(bad) + 3 + 4
    for name, _ in scan.skipped:
        assert len(warnings_about(caplog, name)) == 1, name
    line = summary(caplog)
    assert "2 images, 13 skipped (" in line
    for counted in ("2 truncated or corrupt image", "2 decompression bomb", "2 file_name escapes the folder",
                    "1 not an image", "1 empty file", "1 file not found", "2 metadata line has no file_name",
                    "1 metadata line is not JSON", "1 metadata line is not a JSON object"):
        assert counted in line, line


def test_no_usable_image_and_missing_root(tmp_path, write_bad):
    write_bad(tmp_path / "a.png", "empty")
    write_bad(tmp_path / "b.png", "text")
    with pytest.raises(LdmError, match=r"^no usable image in .* \(2 skipped\)$"):
        scan_imagefolder(tmp_path)
    with pytest.raises(LdmError, match=r"^image folder not found: "):
        scan_imagefolder(tmp_path / "no-such-folder")
    with pytest.raises(LdmError, match=r"^not a folder: "):
        scan_imagefolder(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LdmError, match=r"\(0 skipped\)"):
        scan_imagefolder(tmp_path / "empty")


def test_heldout_txt_is_respected(tmp_path, write_image, caplog):
    for i in range(6):
        write_image(tmp_path / "sub" / f"{i}.png")
    (tmp_path / "heldout.txt").write_text("# held out by hand\nsub/1.png\r\n./sub/4.png\n\nsub/missing.png\n")
    with caplog.at_level(logging.INFO, logger="ldm.data"):
        scan = scan_imagefolder(tmp_path, heldout_fraction=0.5)
    assert rels(scan.heldout) == ["sub/1.png", "sub/4.png"]
    assert rels(scan.train) == ["sub/0.png", "sub/2.png", "sub/3.png", "sub/5.png"]
    assert any("sub/missing.png" in r.getMessage() for r in caplog.records)


def test_heldout_txt_holding_everything_is_an_error(tmp_path, write_image):
    write_image(tmp_path / "a.png")
    (tmp_path / "heldout.txt").write_text("a.png\n")
    with pytest.raises(LdmError, match="none is left for training"):
        scan_imagefolder(tmp_path)


def test_hash_split_is_deterministic_and_stable_per_file(tmp_path, write_image):
    for i in range(40):
        write_image(tmp_path / f"{i:02d}.png", size=(4, 4))
    scan = scan_imagefolder(tmp_path, heldout_fraction=0.25)
    expected = sorted(f"{i:02d}.png" for i in range(40) if _hash_unit(f"{i:02d}.png") < 0.25)
    assert rels(scan.heldout) == expected and 0 < len(expected) < 40
    assert len(scan.train) + len(scan.heldout) == 40
    again = scan_imagefolder(tmp_path, heldout_fraction=0.25)
    assert rels(again.heldout) == rels(scan.heldout) and rels(again.train) == rels(scan.train)
    # adding files never moves existing ones between splits
    for i in range(40, 60):
        write_image(tmp_path / f"{i:02d}.png", size=(4, 4))
    grown = scan_imagefolder(tmp_path, heldout_fraction=0.25)
    assert set(rels(scan.heldout)) <= set(rels(grown.heldout))


def test_hash_split_edge_cases(tmp_path, write_image):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", size=(4, 4))
    assert len(scan_imagefolder(tmp_path, heldout_fraction=0).heldout) == 0
    tiny = scan_imagefolder(tmp_path, heldout_fraction=1e-9)
    assert len(tiny.heldout) == 1 and len(tiny.train) == 2  # at least one held out
    most = scan_imagefolder(tmp_path, heldout_fraction=0.999999)
    assert len(most.train) >= 1
    with pytest.raises(LdmError, match="heldout_fraction"):
        scan_imagefolder(tmp_path, heldout_fraction=1.0)
    (tmp_path / "1.png").unlink()
    (tmp_path / "2.png").unlink()
    single = scan_imagefolder(tmp_path, heldout_fraction=0.5)
    assert rels(single.train) == ["0.png"] and single.heldout == []


def test_sidecar_caption_of_a_file_named_heldout_is_not_the_split_list(tmp_path, write_image):
    write_image(tmp_path / "heldout.png")
    write_image(tmp_path / "other.png")
    (tmp_path / "heldout.txt").write_text("other.png\n")
    scan = scan_imagefolder(tmp_path)
    assert everything(scan) == {"heldout.png": "", "other.png": ""}
    assert rels(scan.heldout) == ["other.png"]


def test_many_images_scan_quickly(tmp_path, write_image):
    import time

    for i in range(400):
        write_image(tmp_path / f"{i:04d}.png", color=(i % 256, 0, 0), size=(64, 64))
    start = time.perf_counter()
    scan = scan_imagefolder(tmp_path)
    assert len(scan.train) + len(scan.heldout) == 400
    assert time.perf_counter() - start < 3.0


def test_metadata_in_a_subfolder_is_relative_to_it(tmp_path, write_image):
    write_image(tmp_path / "top.png")
    write_image(tmp_path / "sub" / "b.png")
    write_metadata(tmp_path, [{"file_name": "top.png", "text": "top"}])
    write_metadata(tmp_path / "sub", [{"file_name": "b.png", "text": "below"}])
    assert everything(scan_imagefolder(tmp_path)) == {"top.png": "top", "sub/b.png": "below"}
