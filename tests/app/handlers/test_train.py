"""The Train tab's handlers: real teach runs of a few steps on the tiny pipeline in a worker process (start,
progress, loss points, previews, Stop, resume after a restart, a killed worker, the result used by Generate),
and every bad input as one line. No server, no Gradio."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from PIL import Image

from app.handlers.generate import GenerateHandlers
from app.handlers.shared import Shared
from app.handlers.teach_jobs import TeachJobs
from app.handlers.train import TrainHandlers
from ldm.errors import LdmError
from ldm.sampling.parameters import read_png_parameters

# a few small steps of the tiny model: a loss point and a preview every step, a checkpoint every 2
SMALL = ["--set", "train_unet.sample_every=1", "--set", "train_unet.log_every=1", "--set", "teach.views=2",
         "--set", "train_unet.batch_size=2", "--set", "teach.class_images=1", "--set", "train_unet.checkpoint_every=2"]


def _images(folder, count: int = 2) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.new("RGB", (40, 40), (60 * k, 200, 30)).save(folder / f"{k}.png")
    return [str(folder / f"{k}.png") for k in range(count)]


def _teaching(shared: Shared, root, model, max_steps: int = 1000) -> TrainHandlers:
    shared.teach = TeachJobs(root, model, max_steps, SMALL)
    return TrainHandlers(shared)


def _wait(h: TrainHandlers, until, timeout_s: float = 300):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = h.status()
        if until(status) or not status.running:
            return status
        time.sleep(0.3)
    raise AssertionError(f"still waiting: {h.status().line}")


@pytest.fixture
def train(shared, tiny_pipeline, tmp_path):
    h = _teaching(shared, tmp_path / "teach", tiny_pipeline)
    yield h
    h.jobs.shutdown(10)


def test_no_job_yet_says_what_to_do(train):
    status = train.status()
    assert "drop 1-50 images" in status.line and not status.running and status.files == []


@pytest.mark.parametrize("kwargs, message", [
    ({"images": []}, "no images"),
    ({"name": "z" * 1000}, "the name is 1000 characters"),
    ({"name": ""}, "needs a name"),
    ({"name": "my cat"}, "one word"),
    ({"method": "dreambooth"}, "unknown method 'dreambooth'"),
    ({"steps": 0}, "at least 1"),
    ({"steps": 1001}, "over this server's teach budget of 1000"),
])
def test_bad_input_is_one_line_and_starts_nothing(kwargs, message, train, tmp_path):
    args = {"images": _images(tmp_path / "imgs"), "name": "zorbly", **kwargs}
    with pytest.raises(LdmError, match=message) as err:
        train.start(**args)
    assert "\n" not in str(err.value)
    assert train.jobs.current is None and not any(p.name != ".jobs" for p in (tmp_path / "teach").glob("*"))
    assert not any((tmp_path / "teach" / ".jobs").glob("*"))  # the copied images went with the refusal


@pytest.mark.slow  # a real teach run of 3 steps in a worker process
def test_a_run_shows_progress_and_its_lora_appears_in_generate(train, shared, tmp_path):
    status = train.start(_images(tmp_path / "imgs") + [{"path": str(tmp_path / "imgs" / "0.png"),
                                                         "orig_name": "mine.png"}], " zorbly ", "a square", "lora", 3)
    assert status.running and status.name == "zorbly" and status.files == [] and train.jobs.running()
    with pytest.raises(LdmError, match="a teach job is running already .'zorbly'."):
        train.start(_images(tmp_path / "imgs"), "blorp")
    mid = _wait(train, lambda s: s.losses and s.preview)
    assert mid.losses[0][0] >= 1 and mid.losses[0][1] > 0 and mid.preview.endswith(".png")
    # the three images on the dataset's map among its ten shapes, and the preview's images of the name (not the
    # class's) beside them
    assert mid.map.count('class="pt mark diamond"') == 3 and mid.map.count("data-i=") == 10, mid.map[:300]
    assert "mine.png" in mid.map and mid.map.count('class="pt mark ring"') == 4 and "zorbly at step" in mid.map
    done = _wait(train, lambda s: not s.running)
    assert "done after 3 steps" in done.line and "LoRA list" in done.line, done.line
    assert not train.jobs.running()  # the page's poll timer goes off
    assert [os.path.basename(f) for f in done.files] == ["pytorch_lora_weights.safetensors", "README.md",
                                                         "teach.json"]
    assert [s for s, _ in done.losses] == [1, 2, 3]
    # the page gets copies from a folder of their own: the teach folder (uploads, views) is never served
    run = tmp_path / "teach" / "zorbly"
    for offered in [done.preview, *done.files]:
        assert not offered.startswith(str(tmp_path / "teach")), offered
        assert open(offered, "rb").read() == (run / ("samples" if offered == done.preview else "")
                                              / os.path.basename(offered)).read_bytes()
    assert len(os.listdir(tmp_path / "teach" / "zorbly" / "samples")) >= 3
    # the LoRA is in Generate's picker, and renders
    assert shared.models.loras["zorbly"].endswith("zorbly/pytorch_lora_weights.safetensors")
    _, text, paths = GenerateHandlers(shared).generate("zorbly riding a bicycle", seed=1, steps=2, lora="zorbly")
    assert "LoRA: " in read_png_parameters(paths[0]) and "zorbly" in text
    # the name is taken now; a restarted server still offers the LoRA
    with pytest.raises(LdmError, match="taught here already"):
        train.start(_images(tmp_path / "imgs"), "zorbly")
    shared.models.loras.clear()
    again = _teaching(shared, tmp_path / "teach", train.jobs.model)
    assert "done after 3 steps" in again.status().line and "zorbly" in shared.models.loras


@pytest.mark.slow  # a real teach run stopped, the server "restarted", the run resumed to its end
def test_stop_saves_the_step_and_start_resumes_after_a_restart(train, shared, tmp_path):
    train.start(_images(tmp_path / "imgs"), "zorbly", "", "lora", 40)
    _wait(train, lambda s: s.losses)
    stopping = train.stop()
    assert "stopping" in stopping.line and stopping.running
    stopped = _wait(train, lambda s: not s.running)
    assert "stopped after step" in stopped.line and "Start with the same name to resume" in stopped.line
    assert stopped.files == [] and "zorbly" not in shared.models.loras  # nothing half-made is offered
    with pytest.raises(LdmError, match="no teach job is running"):
        train.stop()
    step = stopped.losses[-1][0]
    # a new server over the same folder shows the stopped run and resumes it from its checkpoint
    again = _teaching(shared, tmp_path / "teach", train.jobs.model)
    assert "stopped" not in again.status().line and "resume" in again.status().line
    resumed = again.start([], "zorbly", "", "lora", 40)
    assert resumed.running
    _wait(again, lambda s: s.losses and s.losses[-1][0] > step)  # it went on from the saved step
    again.stop()
    ended = _wait(again, lambda s: not s.running)
    assert "stopped after step" in ended.line and ended.losses[-1][0] > step


@pytest.mark.slow  # a real worker killed mid-run
def test_a_killed_worker_is_one_line_and_offers_nothing(train, shared, tmp_path):
    train.start(_images(tmp_path / "imgs"), "zorbly", "", "ti", 40)
    _wait(train, lambda s: s.losses)
    train.jobs.current.proc.send_signal(signal.SIGKILL)
    ended = _wait(train, lambda s: not s.running)
    assert "the worker was killed (signal 9)" in ended.line and ended.files == []
    assert not (tmp_path / "teach" / "zorbly" / "learned_embeds.safetensors").exists()


@pytest.mark.slow  # teaching an embedding: its word then works in Generate's prompts
def test_a_taught_embedding_works_in_any_prompt(train, shared, tmp_path):
    train.start(_images(tmp_path / "imgs"), "Blorp", "", "ti", 2)
    done = _wait(train, lambda s: not s.running)
    assert "write blorp in any prompt" in done.line.lower(), done.line
    assert "blorp" in shared.model.pipe.tokenizer.get_added_vocab()
    _, _, paths = GenerateHandlers(shared).generate("a blorp on a red square", seed=1, steps=2)
    assert read_png_parameters(paths[0]).startswith("a blorp on a red square")


@pytest.mark.slow  # the worker loads torch before it reads the images
def test_a_non_image_is_one_line_naming_the_users_file_and_the_name_stays_free(train, tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    train.start(_images(tmp_path / "imgs") + [{"path": str(tmp_path / "notes.png"), "orig_name": "notes.png"}],
                "zorbly", "", "lora", 2)
    ended = _wait(train, lambda s: not s.running)
    assert "notes.png: not an image" in ended.line and "\n" not in ended.line and ended.files == []
    assert "no checkpoint was saved yet" in ended.line
    assert train.start(_images(tmp_path / "imgs"), "zorbly", "", "lora", 2).running  # nothing half-made kept it


def test_the_map_places_a_jobs_images_and_its_newest_previews_of_the_name(shared, tmp_path):
    from app.handlers.teach_jobs import Job
    from app.handlers.teach_map import TeachMap
    from ldm.media import make_grid

    folder, out = tmp_path / "job", tmp_path / "run"
    _images(folder / "images", 3)
    job = Job("zorbly", out, folder, "lora", "a square", 300)
    placed = TeachMap(shared)
    assert "once the dataset is encoded" in placed.svg(job, None)  # a poll does not wait: it asks for the encoding
    shared.view.wait()
    first = placed.svg(job, None)
    assert first.count('class="pt mark diamond"') == 3 and "mark ring" not in first
    assert first.count("data-i=") == 10 and "your images" in first and "1.png" in first
    assert placed.svg(job, None) is first  # a poll with nothing new draws nothing
    # a preview grid: the name's 4 tiles are placed, the class's 2 are not
    (out / "samples").mkdir(parents=True)
    make_grid(torch.rand(6, 3, 32, 32)).save(out / "samples" / "unet-0000050.png")
    later = placed.svg(job, out / "samples" / "unet-0000050.png")
    assert later.count('class="pt mark ring"') == 4 and "zorbly at step 50" in later
    # an image that is none: one line naming the user's file, not the server's copy
    (folder / "images" / "notes.png").write_text("not a picture")
    broken = placed.svg(job, None)
    assert broken.startswith("<p>No map: notes.png") and str(folder) not in broken, broken
    # no dataset: a line saying why there is no map
    shared.view = None
    assert "no dataset" in placed.svg(job, None)
