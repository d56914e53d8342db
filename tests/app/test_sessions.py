"""Gradio keeps each session's copy of the page's configuration; the app bounds how many (--max-sessions), since
every API call made without a session opens a new one."""

from __future__ import annotations

from app.handlers.shared import Shared
from app.server import launch, parse_args
from app.ui import build_ui
from benchmarks.ui import _free_port, generate_once


def test_api_calls_without_a_session_keep_at_most_max_sessions(tiny_model, tmp_path):
    shared = Shared(tiny_model, None, tmp_path / "requests")  # the model served on a thread of its own
    demo = build_ui(shared)
    demo.queue(default_concurrency_limit=1, max_size=8)
    port = _free_port()
    launch(demo, parse_args(["--port", str(port), "--max-sessions", "3"]), None)
    try:
        images = [generate_once(f"http://127.0.0.1:{port}/", "a red square", k, 1) for k in range(8)]
        assert all(image.startswith(b"\x89PNG") for image in images)
        # eight sessions came and went; Gradio's default kept all (up to 10,000, about 0.7 MB each here)
        assert len(demo.state_holder.session_data) == 3
    finally:
        demo.close()
