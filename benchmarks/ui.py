"""The web UI under load: requests/s and latency at 1, 4 and 16 concurrent clients, each asking for one
image at a time through /generate, with micro-batching off (--max-batch 1: one request at a time, as
the app served before) and on, each server started fresh in its own process on 127.0.0.1. With a few-step
student, the batched server is loaded again with requests for the student (Generate's Model picker).

Memory: the server's RSS after a warm-up, and again once the load has ended (it should come back).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ldm.sampling.requests import folder_defaults

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("grinning face", "cat face", "red apple", "a red square", "sun", "blue heart", "rocket", "frog")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """A process's resident set size in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Server:
    """app_gradio.py with `app_args` in a subprocess on a free port, its output in a log file; stopped with SIGTERM."""

    def __init__(self, app_args: list[str], log: Path, timeout_s: float = 300):
        self.url = f"http://127.0.0.1:{_free_port()}/"
        port = self.url.rsplit(":", 1)[1].strip("/")
        self.log = open(log, "w")  # noqa: SIM115 (open while the server runs)
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([sys.executable, "app_gradio.py", *app_args, "--port", port], cwd=ROOT,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited: {Path(log).read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"the app did not start within {timeout_s:.0f} s") from None
                time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM, then wait (kill after 20 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def generate_once(url: str, prompt: str, seed: int, steps: int, model: str | None = None,
                  scheduler: str | None = None) -> bytes:
    """One /generate request of one image through Gradio's HTTP API, as a page makes it (queue, then the result's
    event stream), and the image fetched as a page shows it; returns the PNG's bytes.

    Plain HTTP rather than gradio_client: that client spent about as much CPU a request as the server did, and
    on a few cores a load generator's CPU is taken from the server it measures."""
    # the Generate event's inputs in order: prompt, negative prompt, seed, steps, guidance, scheduler, width,
    # height, images, LoRA, LoRA scale, model, decoder (None: the model's default)
    data = [prompt, "", seed, steps, None, scheduler, None, None, 1, "none", 1.0, model, None]
    request = urllib.request.Request(f"{url}gradio_api/call/generate", json.dumps({"data": data}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        event = json.load(answer)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/generate/{event}", timeout=600) as stream:
        kind = None
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                result = json.loads(line.split(":", 1)[1])
                break
        else:
            raise RuntimeError("the event stream ended without a result")
    if kind == "error":
        raise RuntimeError(f"/generate failed: {result}")
    with urllib.request.urlopen(result[0][0]["image"]["url"], timeout=60) as image:
        return image.read()


def _p95(values: list[float]) -> float:
    # of values sorted ascending
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


def run_load(url: str, clients: int, requests_each: int, steps: int, model: str | None = None,
             scheduler: str | None = None) -> dict:
    """`clients` threads each sending `requests_each` one-image requests in turn (model: a name in Generate's
    Model picker, default the main model; scheduler None: the model's default)."""

    def one_client(k: int) -> list[float]:
        latencies = []
        for r in range(requests_each):
            t0 = time.perf_counter()
            generate_once(url, PROMPTS[(k + r) % len(PROMPTS)], 1000 * k + r, steps, model, scheduler)
            latencies.append(time.perf_counter() - t0)
        return latencies

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(x for one in pool.map(one_client, range(clients)) for x in one)
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(latencies), "requests_per_s": len(latencies) / wall,
            "p50_s": statistics.median(latencies),
            "p95_s": _p95(latencies), "latencies_s": latencies}


def bench_ui(model: str | Path, clients: tuple[int, ...] = (1, 4, 16), requests_each: int = 5, steps: int = 14,
             batches: tuple[int, ...] = (1, 16), student: str | Path | None = None) -> list[dict]:
    """One row per (--max-batch, model, clients): requests/s, p50 and p95 latency, and the server's RSS.

    With `student`, the server with the most batching is also loaded with requests for it (its own steps and
    scheduler, which an API caller names: the UI's Model picker sets them)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ldm-bench-ui-") as tmp:
        for max_batch in batches:
            app_args = ["--model", str(model), "--max-batch", str(max_batch), "--queue-size", str(max(clients) * 2),
                        "--live-model", str(student or "none")]
            server = Server(app_args, log=Path(tmp) / f"app-{max_batch}.log")
            loads = [(Path(model).name, steps, None, None)]
            if student is not None and max_batch == max(batches):
                own = folder_defaults(Path(student))[1]
                loads.append((Path(student).name, own.steps, Path(student).name, own.scheduler))
            try:
                for _, *load in loads:  # warm-up: first calls allocate and compile
                    run_load(server.url, 2, 1, *load)
                warm = rss_mb(server.proc.pid)
                mine = []
                for label, *load in loads:
                    for n in clients:
                        mine.append({"max_batch": max_batch, "model": label, "steps": load[0],
                                     **run_load(server.url, n, requests_each, *load)})
                time.sleep(2)  # let the last responses go out
                after = rss_mb(server.proc.pid)
                rows += [{**row, "rss_warm_mb": warm, "rss_after_mb": after} for row in mine]
            finally:
                server.stop()
    return rows


def format_ui_report(rows: list[dict], model: str) -> str:
    """A table of the rows, and the ratios at the most clients: batched over one-at-a-time."""
    from benchmarks.machine import machine_info

    cpu = machine_info()
    lines = [f"web UI under load: {model}, one 1-image /generate request at a time per client; "
             f"{cpu['cpu']}, {cpu['cpu_count']} CPUs, AVX-512 BF16 {'yes' if cpu['avx512_bf16'] else 'no'}", "",
             "| --max-batch | model | steps | clients | requests | req/s | p50 s | p95 s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['max_batch']} | {r['model']} | {r['steps']} | {r['clients']} | {r['requests']} | "
                     f"{r['requests_per_s']:.2f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} |")
    lines.append("")
    for batch in dict.fromkeys(r["max_batch"] for r in rows):
        r = next(r for r in rows if r["max_batch"] == batch)
        change = (r["rss_after_mb"] - r["rss_warm_mb"]) / r["rss_warm_mb"] * 100
        lines.append(f"--max-batch {batch}: RSS {r['rss_warm_mb']:.0f} MiB after warm-up, "
                     f"{r['rss_after_mb']:.0f} MiB after the load ({change:+.1f}%)")
    most = max(r["clients"] for r in rows)
    main = rows[0]["model"]
    at_most = {r["max_batch"]: r for r in rows if r["clients"] == most and r["model"] == main}
    if len(at_most) > 1:
        low, high = at_most[min(at_most)], at_most[max(at_most)]
        lines.append(f"at {most} clients: {high['requests_per_s'] / low['requests_per_s']:.2f}x the requests/s "
                     f"with --max-batch {max(at_most)} over {min(at_most)}; p95 {high['p95_s']:.2f} s "
                     f"vs {low['p95_s']:.2f} s")
    for r in rows:
        if r["clients"] == most and r["model"] != main:
            ours = at_most[r["max_batch"]]
            speed = r["requests_per_s"] / ours["requests_per_s"]
            lines.append(f"at {most} clients, --max-batch {r['max_batch']}: p95 {r['p95_s']:.2f} s with {r['model']} "
                         f"against {ours['p95_s']:.2f} s with {main}; {speed:.2f}x the requests/s")
    return "\n".join(lines)


def page_event(url: str, elem_id: str) -> int:
    """The id (fn_index) of the page's event outside the queue that draws into the component `elem_id`."""
    with urllib.request.urlopen(f"{url}config", timeout=60) as answer:
        config = json.load(answer)
    target = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return next(d["id"] for d in config["dependencies"] if d["outputs"] == [target] and d.get("queue") is False)


def live_move(url: str, fn_index: int, session: str, position: float) -> str:
    """One live move as a page sends it (a plain POST outside the queue, with its session): 'ok' or 'refused'."""
    # the Seed walk's live inputs: prompt, seeds, position, loop
    body = {"data": ["grinning face", "1, 2, 3", position, False], "fn_index": fn_index, "session_hash": session}
    request = urllib.request.Request(f"{url}gradio_api/run/predict", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        update = json.load(answer)["data"][0]
    return "ok" if update.get("value") else "refused"


def bench_live_flood(model: str | Path, student: str | Path, clients: int = 32, requests: int = 10,
                     steps: int = 14, pause_s: float = 0.04) -> dict:
    """/generate latency (one image, sequential requests) on an idle server and while `clients` pages drag the
    Seed walk's live position non-stop (each: a move, its answer, `pause_s` as a page's throttle, the next move)."""
    import threading

    with tempfile.TemporaryDirectory(prefix="ldm-bench-flood-") as tmp:
        server = Server(["--model", str(model), "--live-model", str(student)], log=Path(tmp) / "app.log")
        try:
            fn_index = page_event(server.url, "walk-live")
            live_move(server.url, fn_index, "warm-up", 0.5)
            run_load(server.url, 1, 2, steps)  # warm-up: first calls allocate and compile

            idle = run_load(server.url, 1, requests, steps)["latencies_s"]
            stop, answers, errors = threading.Event(), [], []

            def drag(k: int) -> None:
                position = 0.0
                while not stop.is_set():
                    position = (position + 0.013) % 1
                    try:
                        answers.append(live_move(server.url, fn_index, f"flood-{k}", position))
                    except Exception as exc:  # noqa: BLE001 (counted: the target is none)
                        errors.append(repr(exc))
                    time.sleep(pause_s)

            threads = [threading.Thread(target=drag, args=(k,), daemon=True) for k in range(clients)]
            for thread in threads:
                thread.start()
            time.sleep(2)  # the flood under way
            t0, before = time.perf_counter(), len(answers)
            flooded = run_load(server.url, 1, requests, steps)["latencies_s"]
            live_s = time.perf_counter() - t0
            live_done = len(answers) - before
            stop.set()
            for thread in threads:
                thread.join(60)
        finally:
            server.stop()
        log = (Path(tmp) / "app.log").read_text()
    return {"clients": clients, "requests": requests, "steps": steps, "idle": idle, "flooded": flooded,
            "live_answers": live_done, "live_per_s": live_done / live_s,
            "live_refused": answers.count("refused"), "live_total": len(answers), "errors": errors,
            "tracebacks": log.count("Traceback")}


def format_flood_report(r: dict, model: str, student: str) -> str:
    """The flood's figures, and the target: /generate's p95 under the flood at most twice its idle p95."""
    from benchmarks.machine import machine_info

    cpu = machine_info()
    idle, flooded = _p95(r["idle"]), _p95(r["flooded"])
    return "\n".join([
        f"/generate ({Path(model).name}, 1 image, {r['steps']} steps, {r['requests']} requests one after another) "
        f"while {r['clients']} pages drag the Seed walk's live position ({Path(student).name}); {cpu['cpu']}, "
        f"{cpu['cpu_count']} CPUs",
        f"idle:    p50 {statistics.median(r['idle']):.2f} s, p95 {idle:.2f} s",
        f"flooded: p50 {statistics.median(r['flooded']):.2f} s, p95 {flooded:.2f} s  ->  {flooded / idle:.2f}x idle "
        f"(target <= 2x)",
        f"live frames answered meanwhile: {r['live_answers']} ({r['live_per_s']:.1f}/s); of all {r['live_total']} "
        f"moves {r['live_refused']} refused as busy; errors {len(r['errors'])}, tracebacks in the log "
        f"{r['tracebacks']}"])


def bench_during_teach(model: str | Path, requests: int = 10, steps: int = 14, teach_steps: int = 1000) -> dict:
    """/generate latency (one image, sequential requests) on an idle server and while the Train tab's worker
    teaches a concept (3 images, the default LoRA method), started and stopped through the tab's API."""
    import gradio_client
    from PIL import Image

    from app.handlers.teach_jobs import read_progress

    with tempfile.TemporaryDirectory(prefix="ldm-bench-teach-") as tmp:
        images = []
        for k in range(3):
            images.append(Path(tmp) / f"concept-{k}.png")
            Image.new("RGB", (64, 64), (220, 40 + 60 * k, 40)).save(images[-1])
        server = Server(["--model", str(model), "--live-model", "none", "--teach-dir", str(Path(tmp) / "teach"),
                         "--max-teach-steps", str(teach_steps)], log=Path(tmp) / "app.log")
        try:
            run_load(server.url, 1, 2, steps)  # warm-up: first calls allocate and compile
            idle = run_load(server.url, 1, requests, steps)["latencies_s"]
            client = gradio_client.Client(server.url, verbose=False)
            client.predict([gradio_client.handle_file(str(p)) for p in images], "zorbly", "", "lora", teach_steps,
                           api_name="/train_start")
            deadline = time.time() + 600
            while read_progress(Path(tmp) / "teach" / "zorbly").done == 0:  # until the worker logs a step
                if time.time() > deadline:
                    raise RuntimeError("the teach worker logged no step within 600 s")
                time.sleep(1)
            busy = run_load(server.url, 1, requests, steps)["latencies_s"]
            client.predict(api_name="/train_stop")
        finally:
            server.stop()
        log = (Path(tmp) / "app.log").read_text()
    return {"requests": requests, "steps": steps, "idle": idle, "teaching": busy, "tracebacks": log.count("Traceback")}


def format_teach_load_report(r: dict, model: str) -> str:
    """/generate's latency while a teach job runs, against idle (the issue's ask: measured, not a target)."""
    from benchmarks.machine import machine_info

    cpu = machine_info()
    idle, busy = _p95(r["idle"]), _p95(r["teaching"])
    return "\n".join([
        f"/generate ({Path(model).name}, 1 image, {r['steps']} steps, {r['requests']} requests one after another) "
        f"while the Train tab's worker (nice 10) teaches a concept; {cpu['cpu']}, {cpu['cpu_count']} CPUs",
        f"idle:     p50 {statistics.median(r['idle']):.2f} s, p95 {idle:.2f} s",
        f"teaching: p50 {statistics.median(r['teaching']):.2f} s, p95 {busy:.2f} s  ->  {busy / idle:.2f}x idle",
        f"tracebacks in the log: {r['tracebacks']}"])
