"""Shared output folders: AUTOMATIC1111 numbering, never overwriting, whole batches kept on Ctrl-C."""

import os
import signal

import pytest
import torch
from PIL import Image

import ldm.outputs
from ldm.errors import LdmError
from ldm.media import save_image_atomic
from ldm.outputs import NumberedFolder, finish_before_ctrl_c, next_number, prepare_folder


def test_next_number_follows_the_largest_leading_number(tmp_path):
    assert next_number(tmp_path) == 0 and next_number(tmp_path, "grid-") == 0
    for name in ("00003-12.png", "grid-0007.png", "notes.txt", ".00042-1.123.tmp.png", "99abc.png", "²-1.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "00010-walk").mkdir()
    assert next_number(tmp_path) == 11  # the walk's folder counts; grids, hidden and odd names do not
    assert next_number(tmp_path, "grid-") == 8


def test_a_name_taken_meanwhile_is_skipped_not_replaced(tmp_path, monkeypatch):
    (tmp_path / "00000-5.png").write_bytes(b"another run's image")
    real, reads = ldm.outputs.next_number, []

    def stale_first(folder, prefix=""):  # the first read is stale: another run wrote 00000-5.png just after it
        reads.append(prefix)
        return 0 if len(reads) == 1 else real(folder, prefix)

    monkeypatch.setattr(ldm.outputs, "next_number", stale_first)
    out = NumberedFolder(tmp_path)
    path = out.image(torch.zeros(3, 8, 8), 5, "a prompt\nSteps: 1, Seed: 5")
    assert path.name == "00001-5.png" and out.written == [path] and len(reads) == 2
    assert (tmp_path / "00000-5.png").read_bytes() == b"another run's image"
    assert Image.open(path).info["parameters"].startswith("a prompt")


def test_grids_and_subfolders_take_their_own_numbers(tmp_path):
    out = NumberedFolder(tmp_path)
    out.image(torch.zeros(3, 8, 8), 1, "x")
    assert out.grid(torch.zeros(2, 3, 8, 8)).name == "grid-0000.png"
    assert out.grid(torch.zeros(2, 3, 8, 8)).name == "grid-0001.png"
    walk = out.subfolder("walk")
    assert walk.name == "00001-walk" and walk.is_dir() and not any(walk.iterdir())
    assert out.subfolder("morph").name == "00002-morph"
    assert [p.name for p in out.written] == ["00000-1.png", "grid-0000.png", "grid-0001.png"]


def test_save_without_overwrite_refuses_an_existing_file(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        save_image_atomic(Image.new("RGB", (4, 4)), path, overwrite=False)
    assert path.read_bytes() == b"keep me" and [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_ctrl_c_waits_for_the_block_then_interrupts():
    done = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the test runner was started in the background
    with pytest.raises(KeyboardInterrupt):
        with finish_before_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the batch")
    assert done == ["the rest of the batch"]
    assert signal.getsignal(signal.SIGINT) is before
    with finish_before_ctrl_c():
        done.append("no Ctrl-C: nothing raised")
    assert len(done) == 2


def test_prepare_folder_creates_it_or_says_why_not(tmp_path):
    assert prepare_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(LdmError, match="--out .*file exists and is not a folder"):
        prepare_folder(tmp_path / "file")
    with pytest.raises(LdmError, match="cannot create it"):
        prepare_folder(tmp_path / "file" / "sub")


def test_a_failed_run_removes_only_the_empty_folder_it_made(tmp_path):
    from ldm.outputs import run_folder

    for name, existed, wrote, kept in (("new", False, False, False), ("old", True, False, True),
                                       ("written", False, True, True)):
        folder = tmp_path / name
        if existed:
            folder.mkdir()
        with pytest.raises(LdmError), run_folder(folder):
            (folder / "logs").mkdir()
            if wrote:
                (folder / "logs" / "events").write_text("x")
            raise LdmError("refused")
        assert folder.exists() == kept, name
    with run_folder(tmp_path / "fine") as folder:
        pass
    assert folder.is_dir()
