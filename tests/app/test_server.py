"""The web UI served for real (app_gradio.py): every API endpoint through gradio_client, bad input, a full queue, path
traversal probes, and a headless Chromium session (Debian's chromium driven by Playwright)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from support import ROOT, run_script, shapes_folder

from ldm.data.shapes import make_shape
from ldm.sampling.parameters import read_png_parameters

gradio_client = pytest.importorskip("gradio_client")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
APP_LOG: list[Path] = []  # the running app's output, for the log checks


@pytest.mark.parametrize("flags, message", [
    (["--auth", "nocolon"], "error: --auth must be USER:PASSWORD"),
    (["--max-work", "0"], "--max-work must be above 0, got 0.0"),
    (["--max-sessions", "0"], "--max-sessions must be at least 1, got 0"),
    (["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
    (["--live-model", "no/such/folder"], "model folder not found: no/such/folder"),
    (["--max-teach-steps", "-1"], "--max-teach-steps must be 0 or more, got -1"),
])
def test_bad_flags_are_refused_at_once_before_the_model_loads(flags, message, tmp_path):
    proc = run_script("app_gradio.py", *flags, check=False, env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(message), proc.stderr
    assert not list(tmp_path.iterdir())  # no folder made for a run that never starts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_pipeline, tiny_student, tmp_path_factory):
    """The app on a free port with the tiny pipeline (a tiny student for the live controls), a small shapes
    dataset and a 2-request queue."""
    base = tmp_path_factory.mktemp("app")
    data = shapes_folder(base / "shapes")
    lora = base / "mylora"
    run_script("scripts/train_unet.py", "--config", "configs/finetune_lora.yaml", "--init-from", str(tiny_pipeline),
               "--data", str(data), "--output-dir", str(lora), "--max-steps", "3", "--mixed-precision", "no",
               "data.resolution=32", "train_unet.batch_size=4", "train_unet.sample_every=1000",
               "train_unet.learning_rate=0.05")
    port = _free_port()
    tmp = base / "tmp"  # the app's temporary files, to see that it removes them
    tmp.mkdir()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp)}
    log = open(base / "app.log", "w")  # noqa: SIM115 (open while the app runs)
    proc = subprocess.Popen([sys.executable, "app_gradio.py", "--model", str(tiny_pipeline), "--data", str(data),
                             "--port", str(port), "--queue-size", "2", "--max-batch", "2", "--max-work", "100000",
                             "--lora", str(lora / "pytorch_lora_weights.safetensors"),
                             "--live-model", str(tiny_student.folder), "--teach-dir", str(base / "teach")],
                            cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    APP_LOG.append(base / "app.log")
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app exited early:\n{(base / 'app.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        raise AssertionError("app did not start within 180 s")
    yield url
    proc.terminate()  # SIGTERM, as a service manager stops it
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    assert not list(tmp.iterdir()), "the app left its output folder behind"


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


def test_api_lists_the_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/interpolate_seeds", "/morph", "/reconstruct", "/live_generate", "/walk_frame",
            "/morph_frame", "/map_point"} <= set(endpoints)
    params = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert params[0] == "prompt"
    assert {"steps", "width", "height", "num_images", "seed", "guidance", "scheduler", "negative_prompt"} <= set(params)
    returns = {name: [r["label"] for r in ep["returns"]] for name, ep in endpoints.items()}
    assert returns["/latent_map"] == ["Map"] and returns["/reconstruct"] == ["Reconstruction", "Report",
                                                                           "Latent channels"]
    assert not {name: labels for name, labels in returns.items() if any(label.startswith("value_") for label in labels)}


def test_the_start_up_line_names_the_apps_own_flag(app_url):
    log = APP_LOG[-1].read_text()
    assert f"ldm web UI: {app_url}  (--share for a public link)" in log
    assert "share=True" not in log  # Gradio's own hint names launch()'s argument, not the app's flag


def test_generate_returns_pngs_with_parameters(client):
    gallery, text, files = client.predict(prompt="a red square", steps=3, num_images=2, seed=11, width=32,
                                          height=32, guidance=3.0, scheduler="euler-a", negative_prompt="",
                                          api_name="/generate")
    assert [g["caption"] for g in gallery] == ["seed 11", "seed 12"]
    assert "Seed: 12" in text and "Sampler: Euler a" in text
    info = Image.open(files[0]).info["parameters"]
    assert info.startswith("a red square\nSteps: 3, Sampler: Euler a") and "Seed: 11" in info


def test_generate_renders_with_the_picked_model(client, tiny_student):
    # the few-step student by name, with its steps and scheduler (the UI's picker sets them; an API caller names
    # them); an unknown name is refused in one line
    _, text, files = client.predict(prompt="a red square", num_images=1, seed=2, model=tiny_student.folder.name,
                                    steps=2, scheduler="lcm", api_name="/generate")
    assert "Sampler: LCM" in text and "Steps: 2," in text and f"Model: {tiny_student.folder.name}" in text
    with pytest.raises(Exception, match="unknown model 'nope'"):
        client.predict(prompt="x", model="nope", api_name="/generate")


def test_generate_applies_the_picked_lora(client):
    _, _, plain = client.predict(prompt="a red square", steps=3, num_images=1, seed=4, api_name="/generate")
    _, text, tuned = client.predict(prompt="a red square", steps=3, num_images=1, seed=4, lora="mylora",
                                    lora_scale=0.8, api_name="/generate")
    assert 'LoRA: "pytorch_lora_weights.safetensors:0.8"' in text
    assert Image.open(plain[0]).tobytes() != Image.open(tuned[0]).tobytes()
    with pytest.raises(Exception, match="missing"):
        client.predict(prompt="x", lora="missing", api_name="/generate")


def test_seed_walk_and_morph_return_gif_and_mp4(client):
    gif, mp4 = client.predict(prompt="a red square", seeds="1, 2", frames=3, loop=False, steps=2,
                              api_name="/interpolate_seeds")
    assert Image.open(gif).n_frames == 3 and Path(mp4).read_bytes()[4:8] == b"ftyp"
    gif, mp4 = client.predict(prompts="red\na blue circle", seed=3, frames=4, mode="lerp", steps=2,
                              api_name="/morph")
    assert Image.open(gif).n_frames == 4


def test_walk_and_morph_render_with_the_picked_model(client, tiny_student):
    name = tiny_student.folder.name
    gif, _ = client.predict(prompts="red\na blue circle", seed=3, frames=3, model=name, api_name="/morph")
    assert Image.open(gif).n_frames == 3  # the frames' parameters: tests/app/handlers/test_animate.py
    with pytest.raises(Exception, match="unknown model"):
        client.predict(prompt="x", seeds="1, 2", frames=2, model="nope", api_name="/interpolate_seeds")


def test_reconstruct_reports_psnr_compression_and_anomaly(client, tmp_path):
    image, _ = make_shape(3, 32)
    image.save(tmp_path / "in.png")
    recon, report, channels = client.predict(image=gradio_client.handle_file(str(tmp_path / "in.png")),
                                             api_name="/reconstruct")
    assert Image.open(recon).size == (32, 32)
    assert "PSNR" in report and "compression** 6.0x" in report and "percentile" in report
    assert len(channels) == 4


def test_latent_map_draws_clickable_points(client):
    svg = client.predict(space="latents", method="pca", points=10, api_name="/latent_map")
    assert svg.count('class="pt" data-i=') == 10 and "data:image/png;base64," in svg


@pytest.mark.parametrize("endpoint, kwargs, message", [
    ("/generate", {"prompt": "x" * 501}, "longer than 500"),
    ("/generate", {"prompt": "x", "num_images": 99}, "number of images must be a whole number between 1 and 16"),
    ("/generate", {"prompt": "x", "steps": 2.5}, "steps must be a whole number between 1 and 100, got 2.5"),
    ("/generate", {"prompt": "x", "steps": True}, "got True"),
    ("/generate", {"prompt": "x", "seed": 1.5}, "seed must be a whole number"),
    ("/generate", {"prompt": "x", "width": 12}, "multiple of 8"),
    ("/generate", {"prompt": "x", "model": 3}, "model must be one of the listed names"),
    ("/interpolate_seeds", {"prompt": "x", "seeds": "1, banana"}, "whole numbers"),
    ("/interpolate_seeds", {"prompt": "x", "seeds": "1, 2", "frames": 1}, "frames must be a whole number between 2"),
    ("/morph", {"prompts": "only one"}, "between 2 and"),
])
def test_bad_input_is_refused_and_the_app_keeps_serving(client, endpoint, kwargs, message):
    with pytest.raises(Exception, match=message):
        client.predict(**kwargs, api_name=endpoint)
    gallery, _, _ = client.predict(prompt="ok", steps=1, num_images=1, seed=1, api_name="/generate")
    assert len(gallery) == 1


def test_bad_uploads_are_refused(client, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 Mpx: over ldm's decompression-bomb limit, tiny on disk
    for path, message in ((tmp_path / "notes.png", "cannot use notes.png: not an image"),
                          (bomb, "cannot use bomb.png: decompression bomb")):
        with pytest.raises(Exception, match=message) as caught:
            client.predict(image=gradio_client.handle_file(str(path)), api_name="/reconstruct")
        assert "/tmp" not in str(caught.value) and "\n" not in str(caught.value)  # no server paths, one line


def test_any_input_gradio_refuses_is_one_line_naming_the_users_file(app_url, client, tmp_path):
    # Gradio's own checks ran before the handlers: its text named the server's copy of an upload, PIL's text a bomb
    Image.new("1", (40000, 40000)).save(tmp_path / "huge.png")
    with pytest.raises(Exception, match="cannot read huge.png: decompression bomb") as caught:
        client.predict(gradio_client.handle_file(str(tmp_path / "huge.png")), api_name="/png_info")
    assert "/tmp" not in str(caught.value)
    for data, message in (([{"path": "/etc/passwd", "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}],
                           "cannot use x.png: not a file this server was sent (upload it again)"),
                          ([12345], "an input is not a value this control takes")):
        kind, answer = _call(app_url, "reconstruct", data)
        assert kind == "error" and answer["error"] == message, answer


def test_a_full_queue_refuses_cleanly_and_nothing_crashes(app_url, client):
    def one(k):
        c = gradio_client.Client(app_url, verbose=False)
        try:
            c.predict(prompt=f"p{k}", steps=40, num_images=4, seed=k, api_name="/generate")
            return "ok"
        except Exception as exc:  # the client raises on a refused job
            return f"refused: {exc}"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert results.count("ok") >= 1
    refused = [r for r in results if r != "ok"]
    assert refused and all("queue" in r.lower() or "full" in r.lower() for r in refused), results
    gallery, _, _ = client.predict(prompt="still here", steps=1, num_images=1, seed=1, api_name="/generate")
    assert len(gallery) == 1


@pytest.mark.parametrize("probe", [
    "file=../../etc/passwd", "file=/etc/passwd", "gradio_api/file=/etc/passwd", "gradio_api/file=../../etc/passwd",
    "gradio_api/file=%2e%2e%2f%2e%2e%2fetc%2fpasswd", "gradio_api/file=%2Fetc%2Fpasswd",
    "gradio_api/file=..%2F..%2F..%2Fetc%2Fpasswd", "file=%2Fetc%2Fpasswd", "gradio_api/file/etc/passwd",
])
def test_path_traversal_probes_are_refused(app_url, probe):
    try:
        with urllib.request.urlopen(app_url + probe, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    assert status in (403, 404) or b"root:" not in body
    assert status != 200 or b"root:x:" not in body
    assert status in (400, 403, 404, 405), status


def test_the_teach_folder_is_not_served(app_url):
    # a run folder holds the user's training views (and .jobs/ their uploads): the page gets copies of the results
    # from a folder of their own, so no route reaches these
    view = APP_LOG[-1].parent / "teach" / "probe" / "teach-images" / "00.png"
    view.parent.mkdir(parents=True, exist_ok=True)
    view.write_bytes(b"a user's picture")
    for route in (f"gradio_api/file={view}", f"file={view}", f"gradio_api/file={urllib.parse.quote(str(view))}"):
        try:
            with urllib.request.urlopen(app_url + route, timeout=10) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        assert status in (403, 404) and b"a user's picture" not in body, (route, status)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_session_through_every_tab(app_url):
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)

        def number(label: str, value) -> None:  # a slider's number box, as a user types into it
            box = page.get_by_label(f"number input for {label}").locator("visible=true")
            box.fill(str(value))
            box.press("Enter")

        # Generate: four images of seeds 0-3; the size sliders move in the model's size step
        width = page.get_by_label("number input for Width")
        assert width.get_attribute("step") == "8" and width.get_attribute("min") == "8"
        page.get_by_label("Prompt", exact=True).first.fill("a green circle")
        page.locator("#generate-button").click()
        page.locator("#generate-gallery img").nth(3).wait_for(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "tab-generate.png"), full_page=True)
        # picking the student sets its own steps and scheduler, and the render says it used them
        page.locator("#generate-model").get_by_label("student").check()
        page.wait_for_function("document.querySelector('input[aria-label=\"number input for Steps\"]').value == '2'",
                               timeout=30_000)
        page.locator("#generate-button").click()
        page.wait_for_function("[...document.querySelectorAll('textarea')].some(t => t.value.includes('Sampler: LCM'))",
                               timeout=120_000)
        page.locator("#generate-model").get_by_label("tiny").check()
        page.wait_for_function("document.querySelector('input[aria-label=\"number input for Steps\"]').value != '2'",
                               timeout=30_000)
        # hand-offs carry the run: all its seeds to the walk, two prompt lines to the morph
        page.get_by_role("button", name="Walk from this seed").click()
        assert page.get_by_label("Seeds (2 or more)").input_value() == "0, 1, 2, 3"
        page.get_by_role("tab", name="Generate").click()
        page.get_by_role("button", name="Morph from this prompt").click()
        assert page.get_by_label("Prompts, one per line").input_value().splitlines() == ["a green circle", "cat face"]

        # a walk shows its first frame at once, without moving the scrubber
        page.get_by_role("tab", name="Seed walk").click()
        number("Frames", 3)
        number("Steps", 2)
        page.get_by_role("button", name="Walk", exact=True).click()
        page.locator("#walk-frame img").wait_for(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "tab-seed-walk.png"), full_page=True)
        # the frame shown goes to Image to image with the walk's prompt
        page.locator("#walk-send").click()
        page.locator("#img2img-editor canvas").first.wait_for(timeout=30_000)
        assert page.get_by_label("Prompt", exact=True).locator("visible=true").input_value() == "a green circle"
        page.get_by_role("tab", name="Seed walk").click()

        # an error toast goes when the next run starts
        page.get_by_role("tab", name="Prompt morph").click()
        page.get_by_label("Prompts, one per line").fill("only one")
        page.get_by_role("button", name="Morph", exact=True).click()
        page.locator(".toast-body").first.wait_for(timeout=30_000)
        page.get_by_label("Prompts, one per line").fill("red\nblue")
        number("Frames", 2)
        number("Steps", 1)
        page.get_by_role("button", name="Morph", exact=True).click()
        page.wait_for_timeout(1500)
        assert page.locator(".toast-body:visible").count() == 0

        # Stop ends a long request between steps, and a small one then runs at once
        page.get_by_role("tab", name="Generate").click()
        for label, value in (("Steps", 100), ("Images", 16), ("Width", 128), ("Height", 128)):
            number(label, value)  # 25,600 image-steps: minutes on this CPU
        page.locator("#generate-button").click()
        page.wait_for_timeout(3000)
        page.locator("button:visible", has_text="Stop").click()
        # the page says what the Stop ended (Gradio's cancel hides the request's own message)
        note = page.locator(".prose.ldm-stop-note:visible", has_text="a stopped request keeps nothing")
        note.wait_for(timeout=30_000)
        started = time.time()
        for label, value in (("Steps", 2), ("Images", 1), ("Width", 32), ("Height", 32)):
            number(label, value)
        page.locator("#generate-button").click()
        page.locator("#generate-gallery img").first.wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('#generate-gallery img').length === 1", timeout=60_000)
        assert time.time() - started < 60

        for name in ("Autoencoder", "Latent space"):
            page.get_by_role("tab", name=name).click()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / f"tab-{name.lower().replace(' ', '-')}.png"), full_page=True)
        # the explorer: draw the map, pick a point (marked at once), move it with a typed amount
        page.get_by_role("button", name="Draw map").click()
        point = page.locator("#latent-map svg .pt circle").nth(3)
        point.wait_for(timeout=60_000)
        point.hover()
        page.screenshot(path=str(ARTIFACTS / "tab-latent-space-map.png"), full_page=True)
        point.click()
        page.get_by_text("picked:").wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('#latent-map circle[r=\"7\"]').length === 1",
                               timeout=30_000)
        number("PC 1", 2)
        page.locator("#latent-traversal img").wait_for(timeout=60_000)
        browser.close()
    assert (ARTIFACTS / "tab-generate.png").stat().st_size > 10_000


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_inpainting_png_info_and_send_to(app_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    picture = tmp_path / "picture.png"
    Image.new("RGB", (32, 32), (30, 140, 60)).save(picture)
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url)
        # Image to image: upload, paint strokes with the (white) brush, generate: an inpainted image
        page.get_by_role("tab", name="Image to image").click()
        editor = page.locator("#img2img-editor")
        editor.locator("input[type=file]").first.set_input_files(str(picture))
        page.wait_for_timeout(1000)
        editor.get_by_role("button", name="Brush").first.click()
        box = editor.locator("canvas").first.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x - 20, y)
        page.mouse.down()
        for k in range(10):
            page.mouse.move(x - 20 + 4 * k, y + (k % 3) * 3)
        page.mouse.up()
        page.get_by_label("number input for Steps").locator("visible=true").fill("2")
        page.locator("#img2img-button").click()
        page.locator("#img2img-gallery img").first.wait_for(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "tab-image-to-image.png"), full_page=True)
        text = page.get_by_label("Parameters").locator("visible=true").input_value()
        assert "Denoising strength: 0.75" in text and "Mask hash: " in text
        # a result becomes the picture to edit further: the canvas shows it, no error
        page.get_by_role("button", name="Use this image as the picture").click()
        page.wait_for_timeout(1500)
        assert page.locator(".toast-body:visible").count() == 0
        # a result clicked in one run is forgotten by the next: Send to Train takes the new run's first
        srcs = "[...document.querySelectorAll('#img2img-gallery img')].map(e => e.src)"
        before = page.evaluate(srcs)
        page.locator("#img2img-gallery img").nth(1).click()
        page.locator("#img2img-button").click()
        page.wait_for_function(f"{srcs}.length > 0 && !{srcs}.some(s => {before!r}.includes(s))", timeout=120_000)
        page.get_by_role("button", name="Send to Train").locator("visible=true").click()
        page.locator("#train-images a").first.wait_for(timeout=30_000)
        sent = page.locator("#train-images a").first.get_attribute("href")
        assert sent not in before and sent in page.evaluate(srcs), (sent, before)
        page.get_by_role("tab", name="Image to image").click()
        # PNG Info reads a PNG's parameters and sends them to Generate
        made = page.locator("#img2img-gallery img").first.get_attribute("src")
        page.get_by_role("tab", name="PNG Info").click()
        png = tmp_path / "made.png"
        png.write_bytes(urllib.request.urlopen(made if made.startswith("http") else app_url + made.lstrip("/")).read())
        page.locator("#png-info-upload input[type=file]").set_input_files(str(png))
        page.wait_for_function("document.querySelector('#png-info-text textarea').value.includes('Steps: 2')",
                               timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "tab-png-info.png"), full_page=True)
        page.get_by_role("button", name="Send to Generate").click()
        page.wait_for_timeout(1000)
        assert page.get_by_label("number input for Steps").locator("visible=true").input_value() == "2"
        # a Generate image goes to Image to image with its prompt and seed
        page.get_by_label("Prompt", exact=True).first.fill("a (red:1.2) square")
        page.locator("#generate-button").click()
        page.locator("#generate-gallery img").first.wait_for(timeout=120_000)
        page.get_by_role("button", name="Send to Image to image").click()
        page.wait_for_timeout(1000)
        assert page.get_by_label("Prompt", exact=True).locator("visible=true").input_value() == "a (red:1.2) square"
        # an X/Y/Z plot from Generate's accordion
        page.get_by_role("tab", name="Generate").click()
        page.get_by_text("X/Y/Z plot").first.click()
        page.locator("#xyz-x textarea, #xyz-x input").first.fill("seed=1,2")
        page.locator("#xyz-y textarea, #xyz-y input").first.fill("prompt=red,blue")
        page.locator("#xyz-button").click()
        page.locator("#xyz-grid img").wait_for(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "xyz-plot.png"), full_page=True)
        browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_train_tab_teaches_stops_and_generates_with_the_result(app_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    images = []
    for k in range(3):
        images.append(tmp_path / f"mine-{k}.png")
        Image.new("RGB", (40, 40), (70 * k, 200, 30)).save(images[-1])
    status = "document.querySelector('#train-status').innerText"
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url)
        # a generated image sent to Train opens the tab with that image in its list
        page.get_by_label("number input for Images").locator("visible=true").fill("1")
        page.get_by_label("number input for Steps").locator("visible=true").fill("2")
        page.locator("#generate-button").click()
        page.locator("#generate-gallery img").first.wait_for(timeout=120_000)
        made = page.locator("#generate-gallery img").first.get_attribute("src").rsplit("/", 1)[-1]
        page.get_by_role("button", name="Send to Train").locator("visible=true").click()
        page.locator(f'#train-images td[aria-label="{made}"]').wait_for(timeout=30_000)
        assert page.get_by_role("tab", name="Train").get_attribute("aria-selected") == "true"
        page.wait_for_function(f"{status}.includes('No teach job yet')", timeout=30_000)  # the page has loaded

        def start(name: str, steps: int) -> None:  # drop the images (after those sent), name the concept, Start
            page.locator("#train-images input[type=file]").set_input_files([str(p) for p in images])
            page.locator('#train-images td[aria-label="mine-2.png"]').wait_for(timeout=30_000)
            page.locator("#train-name textarea").fill(name)
            page.locator("#train-steps input").fill(str(steps))
            page.locator("#train-start").click()

        start("zorbly", 300)
        assert page.locator("#train-images td.filename").count() == 4
        # while it runs: steps with an ETA, then a loss point and a preview grid (every 50 steps)
        page.wait_for_function(f"{status}.includes('ETA')", timeout=180_000)
        page.locator("#train-preview img").wait_for(timeout=180_000)
        # the loss plot has number axes (ticks like 0.120, not one per point), every label inside the plot
        page.wait_for_function("[...document.querySelectorAll('#train-loss svg text')].some(t => "
                               "/^[0-9]+[.][0-9]{3}$/.test(t.textContent))", timeout=60_000)
        cut = page.evaluate("() => { const box = document.querySelector('#train-loss svg').getBoundingClientRect();"
                            " return [...document.querySelectorAll('#train-loss svg text')].filter(t => {"
                            " const r = t.getBoundingClientRect(); return r.left < box.left - 1 ||"
                            " r.right > box.right + 1 || r.bottom > box.bottom + 1; }).map(t => t.textContent); }")
        assert cut == [], cut
        steps = page.evaluate("() => [...document.querySelectorAll('#train-loss svg text')].map(t => t.textContent)"
                              ".filter(t => /[.]0000/.test(t))")
        assert steps == [], steps  # steps read as whole numbers, even with one point
        # the four images on the dataset's latent map among its points, and the newest preview of the name with them
        page.wait_for_function("document.querySelectorAll('#train-map svg .mark.diamond').length == 4 && "
                               "document.querySelectorAll('#train-map svg .mark.ring').length > 0", timeout=60_000)
        assert page.locator("#train-map svg [data-i]").count() > 0  # among the training set's points
        assert "zorbly at step" in page.locator("#train-map svg").text_content()
        page.screenshot(path=str(ARTIFACTS / "tab-train.png"), full_page=True)
        page.locator("#train-stop").click()
        page.wait_for_function(f"{status}.includes('stopped after step')", timeout=120_000)
        assert "Start with the same name to resume" in page.locator("#train-status").inner_text()
        job, = (f.parent for f in (APP_LOG[-1].parent / "teach" / ".jobs").glob("*/job.json")
                if json.loads(f.read_text())["name"] == "zorbly")
        taught = sorted(p.name for p in (job / "images").iterdir())
        assert taught == sorted([made, *(p.name for p in images)])  # the sent image is taught with the dropped ones
        assert page.locator("#train-files td.filename").count() == 0  # nothing half-made offered
        # a reloaded page shows the job; a short run under a new name ends with its files, the LoRA in Generate
        page.reload()
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function(f"{status}.includes('zorbly: stopped')", timeout=30_000)
        start("blorpy", 2)
        page.wait_for_function(f"{status}.includes('done after')", timeout=300_000)
        page.locator('#train-files td[aria-label="pytorch_lora_weights.safetensors"]').wait_for(timeout=30_000)
        page.get_by_role("tab", name="Generate").click()
        page.get_by_label("LoRA", exact=True).click()
        page.get_by_role("option", name="blorpy").click()
        page.get_by_label("Prompt", exact=True).first.fill("blorpy riding a bicycle")
        page.locator("#generate-button").click()
        page.wait_for_function("[...document.querySelectorAll('textarea')].some(t => "
                               "t.value.startsWith('blorpy riding') && t.value.includes('LoRA:'))",
                               timeout=120_000)
        browser.close()


def _call(app_url: str, endpoint: str, data: list):
    """An endpoint through Gradio's plain HTTP API (queue join, then the event stream): (event kind, data)."""
    request = urllib.request.Request(f"{app_url}gradio_api/call/{endpoint}", json.dumps({"data": data}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        event = json.load(answer)["event_id"]
    kind = None
    with urllib.request.urlopen(f"{app_url}gradio_api/call/{endpoint}/{event}", timeout=120) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                return kind, json.loads(line.split(":", 1)[1])
    raise AssertionError("the event stream ended without a result")


def test_live_endpoints_answer_with_one_image(client, app_url, tmp_path):
    path = client.predict("a red square", 4, None, 1, 0.0, "", "", 0.0, api_name="/live_generate")
    assert "Sampler: LCM" in read_png_parameters(path)
    frame = client.predict("a red square", "1, 2", 0.5, api_name="/walk_frame")
    assert "Variation seed: 2" in read_png_parameters(frame)
    with pytest.raises(Exception, match="position must be"):
        client.predict("a red square", "1, 2", 2.0, api_name="/walk_frame")
    # an image a caller on another machine can fetch, not a path of the server's own folder (403)
    kind, (answer,) = _call(app_url, "morph_frame", ["a red square\na blue circle", 3, 0.5, "slerp"])
    assert kind == "complete" and answer["url"].startswith(app_url), answer
    with urllib.request.urlopen(answer["url"], timeout=30) as image:
        (tmp_path / "frame.png").write_bytes(image.read())
    assert "Morph to: a blue circle" in read_png_parameters(tmp_path / "frame.png")
    assert "Morph mode: slerp" in read_png_parameters(tmp_path / "frame.png")
    # a raw call that leaves a value out is told so in one line (Gradio's text lists both value lists)
    kind, answer = _call(app_url, "morph_frame", ["a red square\na blue circle", 3, 0.5])
    assert kind == "error" and answer["error"] == "this endpoint takes 4 values, 3 were sent", answer


def test_no_route_runs_a_queued_endpoint_outside_the_queue(app_url):
    # POST /gradio_api/run/<name> skipped the queue and its limits (a flood there starved /generate)
    for name in ("generate", "live_generate", "map_point"):
        request = urllib.request.Request(f"{app_url}gradio_api/run/{name}", json.dumps({"data": ["x"]}).encode(),
                                         {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        assert caught.value.code == 404 and b"join the queue" in caught.value.read()


@pytest.mark.parametrize("drawn, message", [
    ({"space": "latents", "method": "tsne", "indices": list(range(3599))}, "a map holds 3 to 1500 points"),
    ({"space": "latents", "method": "pca", "indices": [0, 1, 10**9]}, "map points must be indices"),
    ({"space": "latents", "method": "pca", "indices": [0, 1, "x"]}, "map points must be indices"),
    ({"space": {"a": 1}, "method": "pca", "indices": [0, 1, 2]}, "map space must be one of the listed names"),
    ({"space": "latents", "method": [], "indices": [0, 1, 2]}, "projection must be one of the listed names"),
    ("latents", "draw the map first"),
])
def test_map_point_refuses_a_made_up_map_in_one_line(app_url, drawn, message):
    kind, answer = _call(app_url, "map_point", [drawn, 10, 10])
    assert kind == "error" and message in json.dumps(answer), answer


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_live_controls_follow_the_hand_without_a_click(app_url):
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url)

        def src(selector: str) -> str | None:
            image = page.locator(f"{selector} img")
            return image.first.get_attribute("src") if image.count() else None

        # `what` names the step for a reader; latency is measured by `scripts/benchmark.py live`, in the page
        def changes(selector: str, action, what: str) -> None:
            before = src(selector)
            action()
            page.wait_for_function(f"(() => {{ const i = document.querySelector('{selector} img'); "
                                   f"return i && i.getAttribute('src') !== {json.dumps(before)} && i.complete; }})()",
                                   timeout=60_000)

        def number(label: str, value):
            box = page.get_by_label(f"number input for {label}").locator("visible=true")
            return lambda: (box.fill(str(value)), box.press("Enter"))

        # Generate: the switch renders at once; seed and concept strength re-render with no click
        changes("#live-image", lambda: page.locator("#live-switch input").check(), "switch on")
        seed = page.get_by_label("Seed", exact=True).first
        changes("#live-image", lambda: (seed.fill("7"), seed.press("Enter")), "seed typed")
        changes("#live-image", number("Concept strength", 1), "concept strength")
        slider = page.locator("#variation-strength input[type=range]")
        box = slider.bounding_box()
        changes("#live-image", lambda: (page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2),
                                        page.mouse.down(),
                                        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2,
                                                        steps=8),
                                        page.mouse.up()), "variation dragged")
        page.screenshot(path=str(ARTIFACTS / "live-generate.png"), full_page=True)

        # a walk's in-between frame as its position moves
        page.get_by_role("tab", name="Seed walk").click()
        changes("#walk-live", number("Position (live: drag to see any frame)", 0.5), "walk position")

        # the latent map: the image under the pointer follows it
        page.get_by_role("tab", name="Latent space").click()
        page.get_by_role("button", name="Draw map").click()
        page.locator("#latent-map svg .pt circle").nth(3).wait_for(timeout=60_000)
        area = page.locator("#latent-map svg").bounding_box()
        changes("#latent-live", lambda: page.mouse.move(area["x"] + area["width"] * 0.3,
                                                        area["y"] + area["height"] * 0.4), "map hover")
        changes("#latent-live", lambda: page.mouse.move(area["x"] + area["width"] * 0.7,
                                                        area["y"] + area["height"] * 0.6, steps=5), "map move")
        page.screenshot(path=str(ARTIFACTS / "live-latent-map.png"), full_page=True)

        # a refused live move says why on the image, and the stale image goes
        page.get_by_role("tab", name="Prompt morph").click()
        page.locator("#morph-live").wait_for()
        prompts = page.get_by_label("Prompts, one per line")
        prompts.fill("only one prompt")
        number("Position (live: drag to see any frame)", 0.3)()
        page.locator("#morph-live", has_text="give between 2 and 8 prompts").wait_for(timeout=60_000)
        assert src("#morph-live") is None
        browser.close()


def test_user_mistakes_log_one_line_not_a_traceback(client, tmp_path):
    # last in this module: the log then holds every refusal the tests above provoked
    (tmp_path / "notes.png").write_text("not an image")
    for kwargs, endpoint in (({"prompt": "x", "steps": 0}, "/generate"), ({"prompt": "x", "steps": 1.5}, "/generate"),
                             ({"image": gradio_client.handle_file(str(tmp_path / "notes.png"))}, "/reconstruct")):
        with pytest.raises(Exception):  # noqa: B017 (the client raises its own AppError)
            client.predict(**kwargs, api_name=endpoint)
    log = APP_LOG[-1].read_text()
    assert "Traceback" not in log, log[-3000:]
