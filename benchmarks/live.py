"""Live controls in a browser: milliseconds from a user's input to the new image on screen.

The app runs in its own process on 127.0.0.1 (the shipped model; its live controls use the shipped student)
and headless Chromium drives it as a user would: a seed typed, a slider moved with the arrow keys, a
concept strength typed, a walk's position typed, the pointer moved over the latent map. Each sample is timed
inside the page, from the first input event (a key, a pointer move) to the new image loaded, so the
browser driver's own round trips are not counted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.machine import busy_cpus, machine_info
from benchmarks.ui import Server
from ldm.errors import LdmError

TARGET_MS = 150.0
CHROMIUM = Path("/usr/bin/chromium")

# In the page: arm(selector) watches that image; the first input event after it starts the clock, the new
# image's load stops it.
TIMER_JS = """() => {
  const t = window.__ldmTimer = {t0: null, ms: null, observer: null};
  for (const type of ['input', 'keydown', 'pointermove'])
    document.addEventListener(type, e => { if (t.t0 === null) t.t0 = e.timeStamp; }, true);
  t.arm = selector => {
    const root = document.querySelector(selector);
    const before = root.querySelector('img')?.getAttribute('src') ?? null;
    t.t0 = null; t.ms = null;
    if (t.observer) t.observer.disconnect();
    t.observer = new MutationObserver(() => {
      const img = root.querySelector('img');
      if (!img || img.getAttribute('src') === before || t.ms !== null) return;
      const stop = () => { if (t.ms === null) t.ms = performance.now() - t.t0; };
      if (img.complete && img.naturalWidth) stop(); else img.addEventListener('load', stop, {once: true});
    });
    t.observer.observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
  };
}"""


def _timed(page, selector: str, action, timeout_ms: float = 60_000) -> float:
    """Arm the timer on `selector`'s image, act, and wait for the new image: milliseconds as the page saw them."""
    page.evaluate("s => window.__ldmTimer.arm(s)", selector)
    action()
    page.wait_for_function("() => window.__ldmTimer.ms !== null", timeout=timeout_ms)
    return page.evaluate("window.__ldmTimer.ms")


def _typed(page, label: str, value) -> Callable[[], object]:
    """An action that types `value` into the visible number box labelled `label` and presses Enter."""
    box = page.get_by_label(label, exact=True).locator("visible=true").first
    return lambda: (box.fill(str(value)), box.press("Enter"))


def measure(page, samples: int) -> dict[str, list[float]]:
    """Every live control, `samples` times each (a new value each time), after one untimed warm-up each."""
    times: dict[str, list[float]] = {}

    def run(name: str, selector: str, actions: list) -> None:
        _timed(page, selector, actions[0])  # warm-up: the first call of an endpoint allocates
        times[name] = []
        for action in actions[1:]:
            times[name].append(_timed(page, selector, action))
            time.sleep(0.2)

    page.locator("#live-switch input").check()
    page.locator("#live-image img").wait_for(timeout=120_000)
    run("Generate: seed typed", "#live-image", [_typed(page, "Seed", 100 + k) for k in range(samples + 1)])
    slider = page.locator("#variation-strength input[type=range]")
    run("Generate: variation slider (arrow key)", "#live-image",
        [lambda: (slider.focus(), slider.press("ArrowRight")) for _ in range(samples + 1)])
    run("Generate: concept strength typed", "#live-image",
        [_typed(page, "number input for Concept strength", round(0.1 * (k + 1), 2)) for k in range(samples + 1)])
    page.get_by_role("tab", name="Seed walk").click()
    run("Seed walk: position typed", "#walk-live",
        [_typed(page, "number input for Position (live: drag to see any frame)", round((k + 1) / (samples + 2), 3))
         for k in range(samples + 1)])
    page.get_by_role("tab", name="Latent space").click()
    page.get_by_role("button", name="Draw map").click()
    page.locator("#latent-map svg .pt circle").nth(3).wait_for(timeout=300_000)
    area = page.locator("#latent-map svg").bounding_box()
    spots = [(0.2 + 0.6 * ((k * 7) % 11) / 10, 0.2 + 0.6 * ((k * 3) % 7) / 6) for k in range(samples + 1)]
    run("Latent map: pointer moved", "#latent-live",
        [lambda x=x, y=y: page.mouse.move(area["x"] + area["width"] * x, area["y"] + area["height"] * y)
         for x, y in spots])
    return times


def bench_live(model: str, samples: int = 15, app_args: tuple[str, ...] = ()) -> dict:
    """Start the app (`app_args` added to its command line), drive it from Chromium, and return each control's
    latencies (ms) and the machine."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise LdmError("the live benchmark needs Playwright: pip install -e '.[test]'") from None
    if not CHROMIUM.exists():
        raise LdmError(f"the live benchmark needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    busy = busy_cpus()
    with tempfile.TemporaryDirectory(prefix="ldm-bench-live-") as tmp:
        server = Server(["--model", model, *app_args], log=Path(tmp) / "app.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(server.url)
                page.evaluate(TIMER_JS)
                times = measure(page, samples)
                browser.close()
        finally:
            server.stop()
    return {"model": model, "samples": samples, "times_ms": times, "machine": {**machine_info(), "busy": busy}}


def format_live_report(result: dict) -> str:
    """Median, 90th percentile and worst per control, and each median against the target."""
    m = result["machine"]
    lines = [f"Live controls in headless Chromium: {result['model']} (live: its student), "
             f"{result['samples']} samples each, from the input event to the new image loaded",
             f"machine: {m['cpu']}, {m['cpu_count']} CPUs (browser and server share them)", "",
             f"{'control':<40} {'median ms':>9} {'p90 ms':>7} {'max ms':>7}  target {TARGET_MS:g} ms"]
    for name, ms in result["times_ms"].items():
        ordered = sorted(ms)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        median = statistics.median(ordered)
        lines.append(f"{name:<40} {median:>9.0f} {p90:>7.0f} {ordered[-1]:>7.0f}  "
                     f"{'meets' if median < TARGET_MS else 'below'}")
    if (m.get("busy") or 0) > 0.25:
        lines.append(f"warning: other processes kept {m['busy']:.1f} CPUs busy; the times are unreliable")
    return "\n".join(lines)
