"""Whole-or-nothing writes and one-line error text."""

import pytest

from ldm.io import atomic_file, atomic_folder, one_line, replace_folder, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".txt" and tmp != path
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_overwrite_false_never_replaces_and_cleans_up(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError), atomic_file(path, overwrite=False) as tmp:
        tmp.write_bytes(b"second")
    assert path.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with atomic_file(tmp_path / "b.png", overwrite=False) as tmp:
        tmp.write_bytes(b"new")
    assert (tmp_path / "b.png").read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.png",
                                                                                                      "b.png"]


def test_durable_text_and_replaced_folders(tmp_path):
    assert write_text_atomic(tmp_path / "s.json", "{}", durable=True).read_text() == "{}"
    final, tmp = tmp_path / "model", tmp_path / ".model.tmp"
    final.mkdir()
    (final / "stale.bin").write_text("x")
    tmp.mkdir()
    (tmp / "weights.safetensors").write_text("y")
    replace_folder(tmp, final)
    assert [p.name for p in final.iterdir()] == ["weights.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "s.json"]


def test_a_folder_is_filled_aside_and_replaces_the_old_one_only_when_whole(tmp_path):
    final = tmp_path / "sub" / "unet"
    with atomic_folder(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        (tmp / "weights.safetensors").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(final) as tmp:
        (tmp / "weights.safetensors").write_text("half")
        raise RuntimeError("interrupted")
    assert [p.name for p in final.parent.iterdir()] == ["unet"]  # no temporary folder left
    assert (final / "weights.safetensors").read_text() == "old"
    with atomic_folder(final) as tmp:
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in final.iterdir()] == ["config.json"]


def test_one_line():
    assert one_line(ValueError("first\nsecond")) == "first"
    assert one_line(ValueError("\n  spaced  \nnext")) == "spaced"
    assert one_line(KeyError()) == "KeyError"
