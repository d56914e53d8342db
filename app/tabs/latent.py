"""The Latent space tab: a 2-D map of the dataset, picks, interpolation between them, principal directions."""

from __future__ import annotations

import gradio as gr

from app.events import event, image_api, shown_in, stop_button, wire
from app.handlers.latent import LatentHandlers
from app.handlers.shared import Shared
from app.widgets import LIVE_EVENT, MAX_FRAMES, result_image, run_buttons
from ldm.explore import available_projections
from ldm.sampling.limits import BOUNDS

MAP_CSS = ".ldm-map .pt .thumb{display:none;pointer-events:none} .ldm-map .pt:hover .thumb{display:inline} " \
          ".ldm-map .pt{cursor:pointer}"
# Clicks anywhere on the map bubble up to the component; the point's data-i says which one was picked.
# A hovered point moves to the end of the SVG, which draws it (and its thumbnail) above later points.
# The pointer's position in the SVG's own units goes to the server as an 'input' event, at most every 40 ms
# and once more when it rests, so the last position is always rendered.
MAP_JS = ("element.addEventListener('click', (e) => { const p = e.target.closest('[data-i]'); "
          "if (p) trigger('click', {index: parseInt(p.dataset.i)}); }); "
          "element.addEventListener('mouseover', (e) => { const p = e.target.closest('.pt'); "
          "if (p && p.nextElementSibling) p.parentNode.appendChild(p); }); "
          "let last = 0, timer = null, pos = null; "
          "const send = () => { timer = null; last = performance.now(); trigger('input', pos); }; "
          "element.addEventListener('mousemove', (e) => { const svg = element.querySelector('svg.ldm-map'); "
          "if (!svg) return; const pt = svg.createSVGPoint(); pt.x = e.clientX; pt.y = e.clientY; "
          "const q = pt.matrixTransform(svg.getScreenCTM().inverse()); pos = {x: q.x, y: q.y}; "
          "const wait = 40 - (performance.now() - last); if (timer) clearTimeout(timer); "
          "if (wait <= 0) send(); else timer = setTimeout(send, wait); });")
DIRECTIONS = 4


def build(shared: Shared) -> tuple[gr.Image, gr.Button]:
    """Lay out the tab and wire its events; returns the picked point's image and its send-to button."""
    h = LatentHandlers(shared)
    most = int(BOUNDS["map_points"].server_high)
    if shared.view is None:
        gr.Markdown("No dataset loaded: start with `--data DIR` (an image folder) to explore, or give the model "
                    "a map of its training set with `scripts/build_explorer_map.py`.")
    with gr.Row():
        space = gr.Radio(["captions", "latents"], value="latents", label="Map of")
        method = gr.Radio(list(available_projections()), value="pca", label="Projection")  # UMAP if installed
        points = gr.Slider(3, most, value=min(600, most), step=1, label="Points")
        draw = gr.Button("Draw map", variant="primary")
    with gr.Row():
        with gr.Column(scale=3):
            the_map = gr.HTML("<p>Draw the map, hover for thumbnails, click points to pick them.</p>",
                              js_on_load=MAP_JS, elem_id="latent-map", label="Map")
        with gr.Column(scale=2):
            under = result_image("Under the pointer (live)", elem_id="latent-live")
            picked = result_image("Picked point")
            picked_text = gr.Markdown()
            send = gr.Button("Send the pick to Image to image", elem_id="latent-send")
            frames = gr.Slider(2, MAX_FRAMES, value=12, step=1, label="Frames")
            between, stop_slot, stopped = run_buttons("Interpolate between the last two picks")
            between_gif = result_image("Interpolation")
            gr.Markdown("Principal directions of the latent space, from the last pick (in std units):")
            reach = BOUNDS["direction"]
            amounts = [gr.Slider(reach.low, reach.server_high, value=0, step=0.25, label=f"PC {k + 1}")
                       for k in range(DIRECTIONS)]
            traversed = result_image("Traversal", elem_id="latent-traversal")
    drawn, picks = gr.State(None), gr.State([])  # what the map shows ({space, method, indices}); picked indices

    pick, traverse, point = event(h.pick), event(h.traverse), shown_in(under, h.map_point)  # called below

    def on_click(shown: dict | None, chosen: list, pc1: float, pc2: float, pc3: float, pc4: float,
                 evt: gr.EventData):
        # a new pick: the map marks it at once, the traversal follows it, the old interpolation goes
        path, chosen, text, svg = pick(shown, chosen, getattr(evt, "index", None))
        moved = traverse(chosen, pc1, pc2, pc3, pc4) if any((pc1, pc2, pc3, pc4)) else None
        return path, chosen, text, svg, None, moved

    def on_move(shown: dict | None, evt: gr.EventData, request: gr.Request):
        return point(shown, getattr(evt, "x", None), getattr(evt, "y", None), request=request)

    wire(draw.click, h.draw_map, [space, method, points, picks], [the_map, drawn], api_name="latent_map")
    the_map.click(on_click, [drawn, picks, *amounts], [picked, picks, picked_text, the_map, between_gif, traversed],
                  api_visibility="private", preprocess=False)
    the_map.input(on_move, drawn, under, preprocess=False, **LIVE_EVENT)
    gr.api(image_api(h.map_point), api_name="map_point")
    between_job = wire(between.click, h.interpolate_picks, [drawn, picks, frames], between_gif, shared.stops,
                       api_visibility="private")
    with stop_slot:
        stop_button(shared.stops, [between_job], stopped)
    for slider in amounts:  # change, not release: arrow keys and typed numbers move the image too
        wire(slider.change, h.traverse, [picks, *amounts], traversed, api_visibility="private",
             trigger_mode="always_last", show_progress="minimal")
    return picked, send
