"""The web UI: python app_gradio.py [--model PATH] [--data DIR] [--host 127.0.0.1] [--port 7860]

A thin Gradio layer over ldm: every tab calls the library's sampling, walk, media and explore functions.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import uuid
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import torch
import yaml
from PIL import Image

from ldm.cli import Parser, quiet_libraries, run
from ldm.data.images import MAX_PIXELS, BadImage, load_image, to_tensor
from ldm.errors import LdmError
from ldm.explore import PROJECTIONS, DatasetView, anomaly_percentile, channel_images, reconstruct
from ldm.media import save_png, write_animation
from ldm.sampling.interpolate import slerp
from ldm.sampling.requests import DEFAULT_MODEL, DEFAULT_SCHEDULER, DEFAULT_STEPS, MORPH_MODES, ImageSpec, Settings
from ldm.sampling.sampler import SamplingModel, load_sampling_model
from ldm.sampling.schedulers import SCHEDULERS
from ldm.sampling.walks import render_walk

MAX_SEED = 2**32 - 1
NO_LORA = "none"
MAP_CSS = ".ldm-map .pt .thumb{display:none;pointer-events:none} .ldm-map .pt:hover .thumb{display:inline} " \
          ".ldm-map .pt{cursor:pointer}"
# Clicks anywhere on the map bubble up to the component; the point's data-i says which one was picked.
MAP_JS = ("element.addEventListener('click', (e) => { const p = e.target.closest('[data-i]'); "
          "if (p) trigger('click', {index: parseInt(p.dataset.i)}); });")


@dataclass(frozen=True)
class Limits:
    """Bounds on every input, so one request cannot monopolise the machine."""

    steps: int = 100
    frames: int = 48
    images: int = 16
    prompt_chars: int = 500
    keyframes: int = 8
    size_factor: int = 4  # largest side: this many times the model's training size
    map_points: int = 1500
    upload_mb: int = 8


def _fail(message: str):
    raise gr.Error(message, print_exception=False)


class Backend:
    """The UI's handlers: each checks its inputs, calls ldm, and writes its files to its own folder."""

    def __init__(self, model: SamplingModel, view: DatasetView | None, out_dir: Path, limits: Limits = Limits(),
                 loras: dict[str, str] | None = None):
        self.model, self.view, self.out_dir, self.limits = model, view, out_dir, limits
        self.loras = loras or {}  # name shown in the picker -> file

    # ---- checks -------------------------------------------------------------------------------------
    def _settings(self, steps, guidance, scheduler, width=None, height=None, negative_prompt="") -> Settings:
        lim = self.limits
        if scheduler not in SCHEDULERS:
            _fail(f"unknown scheduler {scheduler!r}")
        if steps is None or not 1 <= int(steps) <= lim.steps:
            _fail(f"steps must be between 1 and {lim.steps}")
        if guidance is None or not 0 <= float(guidance) <= 30:
            _fail("guidance must be between 0 and 30")
        biggest = self.model.default_size * lim.size_factor
        for side, value in (("width", width), ("height", height)):
            if value is not None and not self.model.factor <= int(value) <= biggest:
                _fail(f"{side} must be between {self.model.factor} and {biggest}")
        self._prompt(negative_prompt or "", "negative prompt")
        try:
            return self.model.resolve(Settings(
                steps=int(steps), guidance_scale=float(guidance), scheduler=scheduler,
                width=None if width is None else int(width), height=None if height is None else int(height),
                negative_prompt=negative_prompt or ""))
        except LdmError as exc:
            _fail(str(exc))

    def _prompt(self, prompt: str, what: str = "prompt") -> str:
        if prompt is None:
            _fail(f"{what} is missing")
        if len(prompt) > self.limits.prompt_chars:
            _fail(f"{what} is longer than {self.limits.prompt_chars} characters")
        return prompt

    def _seed(self, seed) -> int:
        if seed is None or int(seed) < 0:
            return random.randrange(MAX_SEED)
        if int(seed) > MAX_SEED:
            _fail(f"seed must be between 0 and {MAX_SEED} (or -1 for random)")
        return int(seed)

    def _seeds(self, text: str) -> list[int]:
        try:
            seeds = [int(s) for s in str(text).replace(",", " ").split()]
        except ValueError:
            _fail("seeds must be whole numbers separated by commas or spaces")
        if not 2 <= len(seeds) <= self.limits.keyframes:
            _fail(f"give between 2 and {self.limits.keyframes} seeds")
        for s in seeds:
            self._seed(s)
        return seeds

    def _frames(self, frames) -> int:
        if frames is None or not 2 <= int(frames) <= self.limits.frames:
            _fail(f"frames must be between 2 and {self.limits.frames}")
        return int(frames)

    def _folder(self, kind: str) -> Path:
        folder = self.out_dir / f"{kind}-{uuid.uuid4().hex[:10]}"
        folder.mkdir(parents=True)
        return folder

    @staticmethod
    def _progress(progress: gr.Progress):
        return lambda done, total: progress((done, total), unit="steps")

    # ---- generate -----------------------------------------------------------------------------------
    def generate(self, prompt: str, negative_prompt: str = "", seed: int = -1, steps: int = DEFAULT_STEPS,
                 guidance: float | None = None, scheduler: str = DEFAULT_SCHEDULER, width: int | None = None,
                 height: int | None = None, num_images: int = 1, lora: str = NO_LORA, lora_scale: float = 1.0,
                 progress=gr.Progress()):
        """Text to image: (gallery of (png, caption), parameters of each image, the PNG files)."""
        prompt = self._prompt(prompt)
        guidance = self.model.default_guidance if guidance is None else guidance
        s = self._settings(steps, guidance, scheduler, width, height, negative_prompt)
        if lora not in (None, NO_LORA):
            if lora not in self.loras:
                _fail(f"unknown LoRA {lora!r}")
            if lora_scale is None or not -2 <= float(lora_scale) <= 2:
                _fail("LoRA scale must be between -2 and 2")
            s = replace(s, lora=self.loras[lora], lora_scale=float(lora_scale))
        if num_images is None or not 1 <= int(num_images) <= self.limits.images:
            _fail(f"number of images must be between 1 and {self.limits.images}")
        seed = self._seed(seed)
        specs = [ImageSpec(prompt, seed + k) for k in range(int(num_images))]
        images = self.model.generate(specs, s, progress=self._progress(progress))
        folder = self._folder("generate")
        texts = [self.model.parameters_text(sp, s) for sp in specs]
        paths = [str(save_png(img, folder / f"{k:02d}-{sp.seed}.png", text))
                 for k, (img, sp, text) in enumerate(zip(images, specs, texts, strict=True))]
        gallery = [(p, f"seed {sp.seed}") for p, sp in zip(paths, specs, strict=True)]
        return gallery, "\n\n".join(texts), paths

    # ---- animations ---------------------------------------------------------------------------------
    def _animate(self, kind, prompts, seeds, frames, settings, progress, **walk) -> tuple:
        try:
            specs, images = render_walk(self.model, prompts, seeds, frames, settings,
                                        progress=self._progress(progress), **walk)
        except LdmError as exc:
            _fail(str(exc))
        paths = write_animation(self._folder(kind), images, [self.model.parameters_text(sp, settings) for sp in specs])
        frame_paths = [str(p) for p in paths if p.name.startswith("frame-")]
        gif = next(str(p) for p in paths if p.suffix == ".gif")
        mp4 = next(str(p) for p in paths if p.suffix == ".mp4")
        return gif, mp4, frame_paths

    def interpolate_seeds(self, prompt: str, seeds: str = "1, 2", frames: int = 16, loop: bool = False,
                          steps: int = DEFAULT_STEPS, guidance: float | None = None,
                          scheduler: str = DEFAULT_SCHEDULER, progress=gr.Progress()):
        """Seed walk: (GIF, MP4, frame PNGs)."""
        prompt = self._prompt(prompt)
        guidance = self.model.default_guidance if guidance is None else guidance
        s = self._settings(steps, guidance, scheduler)
        return self._animate("walk", [prompt], self._seeds(seeds), self._frames(frames), s, progress, loop=bool(loop))

    def morph(self, prompts: str, seed: int = 0, frames: int = 16, mode: str = "slerp",
              steps: int = DEFAULT_STEPS, guidance: float | None = None, scheduler: str = DEFAULT_SCHEDULER,
              progress=gr.Progress()):
        """Prompt morph through the prompts, one per line: (GIF, MP4, frame PNGs)."""
        keyframes = [self._prompt(p.strip()) for p in str(prompts or "").splitlines() if p.strip()]
        if not 2 <= len(keyframes) <= self.limits.keyframes:
            _fail(f"give between 2 and {self.limits.keyframes} prompts, one per line")
        if mode not in MORPH_MODES:
            _fail(f"interpolation must be one of {', '.join(MORPH_MODES)}")
        guidance = self.model.default_guidance if guidance is None else guidance
        s = self._settings(steps, guidance, scheduler)
        return self._animate("morph", keyframes, [self._seed(seed)], self._frames(frames), s, progress,
                             morph_mode=mode)

    # ---- autoencoder --------------------------------------------------------------------------------
    def reconstruct(self, image: str):
        """VAE round trip of an uploaded image: (reconstruction, report, latent channels)."""
        if not image:
            _fail("upload an image first")
        try:
            pil = load_image(image, self.model.default_size)
        except BadImage as exc:
            _fail(f"cannot use that image: {exc}")
        r = reconstruct(self.model.pipe.vae, to_tensor(pil) / 2 + 0.5)
        folder = self._folder("reconstruct")
        recon_path = str(save_png(r.reconstruction, folder / "reconstruction.png"))
        report = [f"**PSNR** {r.psnr_db:.2f} dB  ·  **compression** {r.compression:.1f}x "
                  f"({r.image.numel():,} pixel bytes vs {r.latent.numel() * 2:,} latent bytes at fp16)"]
        if self.view is not None:
            pct = anomaly_percentile(r.error, self.view.errors)
            report.append(f"**anomaly score** {pct:.0f}th percentile of the training set's reconstruction error")
        channels = []
        for k, img in enumerate(channel_images(r.latent)):
            path = folder / f"channel-{k}.png"
            img.save(path)
            channels.append((str(path), f"channel {k}"))
        return recon_path, "\n\n".join(report), channels

    # ---- latent space -------------------------------------------------------------------------------
    def _need_view(self) -> DatasetView:
        if self.view is None:
            _fail("no dataset: start the app with --data DIR to explore the latent space")
        return self.view

    def draw_map(self, space: str, method: str, points: int, picks: list, progress=gr.Progress()):
        """The 2-D map as SVG, and the indices drawn on it."""
        view = self._need_view()
        if method not in PROJECTIONS:
            _fail(f"projection must be one of {', '.join(PROJECTIONS)}")
        if points is None or not 3 <= int(points) <= self.limits.map_points:
            _fail(f"points must be between 3 and {self.limits.map_points}")
        progress(0, desc="encoding the dataset (first time only)")
        indices = view.subset(int(points))
        try:
            svg, _ = view.map_svg(space, method, indices, picks or [])
        except LdmError as exc:
            _fail(str(exc))
        return svg, indices

    def pick(self, space: str, indices: list, picks: list, evt: gr.EventData):
        """A click on the map: show that point (decoded or generated) and remember it as pick A or B."""
        view = self._need_view()
        k = getattr(evt, "index", None)
        if not isinstance(k, int) or not indices or not 0 <= k < len(indices):
            _fail("click on a point of the map")
        i = indices[k]
        picks = ([*(picks or []), i])[-2:]
        if space == "latents":
            image = self.model.decode(view.latents[i:i + 1] * self.model.pipe.vae.config.scaling_factor)[0]
        else:
            image = self.model.generate([ImageSpec(view.captions[i], 0)], Settings())[0]
        path = str(save_png(image, self._folder("pick") / "pick.png"))
        labels = " → ".join(f"“{view.captions[p]}”" for p in picks)
        return path, picks, f"picked: {labels}"

    def interpolate_picks(self, space: str, picks: list, frames: int, progress=gr.Progress()):
        """Frames between the two picked points: a prompt morph (captions) or a latent slerp (latents)."""
        view = self._need_view()
        if not picks or len(picks) < 2:
            _fail("pick two points on the map first")
        frames = self._frames(frames)
        a, b = picks[-2:]
        if space == "captions":
            return self._animate("pick-morph", [view.captions[a], view.captions[b]], [0], frames, Settings(),
                                 progress)[0]
        za, zb = view.latents[a:a + 1], view.latents[b:b + 1]
        scale = self.model.pipe.vae.config.scaling_factor
        images = torch.cat([self.model.decode(slerp(za, zb, k / (frames - 1)) * scale) for k in range(frames)])
        paths = write_animation(self._folder("pick-slerp"), images, [""] * frames)
        return next(str(p) for p in paths if p.suffix == ".gif")

    def traverse(self, picks: list, *amounts: float):
        """The last picked image moved along the latent space's top principal directions."""
        view = self._need_view()
        if not picks:
            _fail("pick a point on the map first")
        i = picks[-1]
        latent = view.directions.traverse(view.latents[i], [float(a) for a in amounts])
        image = self.model.decode(latent[None] * self.model.pipe.vae.config.scaling_factor)[0]
        return str(save_png(image, self._folder("traverse") / "traverse.png"))


def _frame_at(frames: list, k: int):
    return frames[int(k)] if frames and 0 <= int(k) < len(frames) else None


def _scrubber(frames: list):
    return gr.Slider(minimum=0, maximum=max(len(frames) - 1, 1), value=0, step=1, interactive=len(frames) > 1)


def _sampler_controls(schedulers: list[str], lim: Limits, m: SamplingModel) -> tuple:
    return (gr.Dropdown(schedulers, value=DEFAULT_SCHEDULER, label="Scheduler"),
            gr.Slider(1, lim.steps, value=DEFAULT_STEPS, step=1, label="Steps"),
            gr.Slider(0, 15, value=m.default_guidance, step=0.5, label="Guidance"))


def _animation_outputs() -> tuple:
    """GIF, MP4, a frame scrubber and the frame it shows, and the frames' paths (state)."""
    with gr.Column():
        return (gr.Image(label="Animation (GIF)", type="filepath"), gr.Video(label="MP4"),
                gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False),
                gr.Image(label="Frame", type="filepath"), gr.State([]))


def build_ui(backend: Backend) -> gr.Blocks:
    """The Blocks app: five tabs wired to the backend's handlers."""
    m, lim = backend.model, backend.limits
    size = m.default_size
    biggest = size * lim.size_factor
    schedulers = list(SCHEDULERS)
    with gr.Blocks(title="ldm") as demo:
        gr.Markdown(f"# ldm · {m.name}\nLatent diffusion at {size}x{size} px. Every PNG carries its generation "
                    "parameters; drop it on `scripts/sample.py --from-png` to re-create it.")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=2):
                        prompt = gr.Textbox(label="Prompt", value="grinning face", max_length=lim.prompt_chars)
                        negative = gr.Textbox(label="Negative prompt", value="", max_length=lim.prompt_chars)
                        with gr.Row():
                            seed = gr.Number(label="Seed", value=0, precision=0, minimum=-1, maximum=MAX_SEED)
                            dice = gr.Button("🎲 Randomise", scale=0)
                            lock = gr.Checkbox(label="Lock seed", value=True)
                        with gr.Row():
                            steps = gr.Slider(1, lim.steps, value=DEFAULT_STEPS, step=1, label="Steps")
                            guidance = gr.Slider(0, 15, value=m.default_guidance, step=0.5, label="Guidance")
                        with gr.Row():
                            scheduler = gr.Dropdown(schedulers, value=DEFAULT_SCHEDULER, label="Scheduler")
                            width = gr.Slider(m.factor, biggest, value=size, step=m.factor, label="Width")
                            height = gr.Slider(m.factor, biggest, value=size, step=m.factor, label="Height")
                            num_images = gr.Slider(1, lim.images, value=4, step=1, label="Images")
                        with gr.Row(visible=bool(backend.loras)):
                            lora = gr.Dropdown([NO_LORA, *backend.loras], value=NO_LORA, label="LoRA")
                            lora_scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="LoRA scale")
                        go = gr.Button("Generate", variant="primary", elem_id="generate-button")
                    with gr.Column(scale=3):
                        gallery = gr.Gallery(label="Images", columns=4, height="auto", elem_id="generate-gallery")
                        params = gr.Textbox(label="Parameters", lines=4, interactive=False)
                        files = gr.File(label="PNG downloads (with parameters)", file_count="multiple")
                        with gr.Row():
                            to_walk = gr.Button("Walk from this seed")
                            to_morph = gr.Button("Morph from this prompt")
                chosen_seed = gr.State(0)
            with gr.Tab("Seed walk", id="walk"):
                with gr.Row():
                    with gr.Column():
                        w_prompt = gr.Textbox(label="Prompt", value="grinning face", max_length=lim.prompt_chars)
                        w_seeds = gr.Textbox(label="Seeds (2 or more)", value="1, 2, 3")
                        w_frames = gr.Slider(2, lim.frames, value=16, step=1, label="Frames")
                        w_loop = gr.Checkbox(label="Loop back to the first seed")
                        w_sched, w_steps, w_guid = _sampler_controls(schedulers, lim, m)
                        w_go = gr.Button("Walk", variant="primary")
                    w_gif, w_mp4, w_slider, w_frame, w_frames_state = _animation_outputs()
            with gr.Tab("Prompt morph", id="morph"):
                with gr.Row():
                    with gr.Column():
                        p_prompts = gr.Textbox(label="Prompts, one per line", lines=3,
                                               value="grinning face\ncat face")
                        p_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED)
                        p_frames = gr.Slider(2, lim.frames, value=16, step=1, label="Frames")
                        p_mode = gr.Radio(list(MORPH_MODES), value="slerp", label="Interpolation")
                        p_sched, p_steps, p_guid = _sampler_controls(schedulers, lim, m)
                        p_go = gr.Button("Morph", variant="primary")
                    p_gif, p_mp4, p_slider, p_frame, p_frames_state = _animation_outputs()
            with gr.Tab("Latent space", id="latent"):
                if backend.view is None:
                    gr.Markdown("No dataset loaded: start with `--data DIR` (an image folder) to explore.")
                with gr.Row():
                    space = gr.Radio(["captions", "latents"], value="latents", label="Map of")
                    method = gr.Radio(list(PROJECTIONS), value="pca", label="Projection")
                    points = gr.Slider(3, lim.map_points, value=min(600, lim.map_points), step=1, label="Points")
                    draw = gr.Button("Draw map", variant="primary")
                with gr.Row():
                    with gr.Column(scale=3):
                        the_map = gr.HTML("<p>Draw the map, hover for thumbnails, click points to pick them.</p>",
                                          js_on_load=MAP_JS, elem_id="latent-map")
                    with gr.Column(scale=2):
                        picked = gr.Image(label="Picked point", type="filepath")
                        picked_text = gr.Markdown()
                        l_frames = gr.Slider(2, lim.frames, value=12, step=1, label="Frames")
                        between = gr.Button("Interpolate between the last two picks")
                        between_gif = gr.Image(label="Interpolation", type="filepath")
                        gr.Markdown("Principal directions of the latent space, from the last pick (in std units):")
                        amounts = [gr.Slider(-3, 3, value=0, step=0.25, label=f"PC {k + 1}") for k in range(4)]
                        traversed = gr.Image(label="Traversal", type="filepath")
                map_indices, picks = gr.State([]), gr.State([])
            with gr.Tab("Autoencoder", id="autoencoder"):
                with gr.Row():
                    upload = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"])
                    recon = gr.Image(label="Reconstruction", type="filepath")
                report = gr.Markdown()
                channels = gr.Gallery(label="Latent channels", columns=8, height="auto")
                r_go = gr.Button("Reconstruct", variant="primary")

        # wiring: API endpoints carry api_name; UI-only steps are private
        dice.click(lambda: random.randrange(MAX_SEED), None, seed, api_visibility="private")
        go.click(lambda s, locked: s if locked else random.randrange(MAX_SEED), [seed, lock], seed,
                 api_visibility="private").then(
            backend.generate,
            [prompt, negative, seed, steps, guidance, scheduler, width, height, num_images, lora, lora_scale],
            [gallery, params, files], api_name="generate")
        gallery.select(seed_of, None, chosen_seed, api_visibility="private")
        to_walk.click(lambda p, s, c: (p, f"{c}, {c + 1}", gr.Tabs(selected="walk")), [prompt, seed, chosen_seed],
                      [w_prompt, w_seeds, tabs], api_visibility="private")
        to_morph.click(lambda p, c: (f"{p}\n", c, gr.Tabs(selected="morph")), [prompt, chosen_seed],
                       [p_prompts, p_seed, tabs], api_visibility="private")
        w_go.click(backend.interpolate_seeds, [w_prompt, w_seeds, w_frames, w_loop, w_steps, w_guid, w_sched],
                   [w_gif, w_mp4, w_frames_state], api_name="interpolate_seeds").then(
            _scrubber, w_frames_state, w_slider, api_visibility="private")
        w_slider.change(_frame_at, [w_frames_state, w_slider], w_frame, api_visibility="private")
        p_go.click(backend.morph, [p_prompts, p_seed, p_frames, p_mode, p_steps, p_guid, p_sched],
                   [p_gif, p_mp4, p_frames_state], api_name="morph").then(
            _scrubber, p_frames_state, p_slider, api_visibility="private")
        p_slider.change(_frame_at, [p_frames_state, p_slider], p_frame, api_visibility="private")
        draw.click(backend.draw_map, [space, method, points, picks], [the_map, map_indices], api_name="latent_map")
        the_map.click(backend.pick, [space, map_indices, picks], [picked, picks, picked_text],
                      api_visibility="private")
        between.click(backend.interpolate_picks, [space, picks, l_frames], between_gif, api_visibility="private")
        for slider in amounts:
            slider.release(backend.traverse, [picks, *amounts], traversed, api_visibility="private")
        r_go.click(backend.reconstruct, upload, [recon, report, channels], api_name="reconstruct")
    return demo


def seed_of(evt: gr.SelectData) -> int:
    """The seed in a gallery caption like 'seed 42'."""
    try:
        return int(str(evt.value.get("caption", "")).split()[-1])
    except (AttributeError, ValueError, IndexError):
        return 0


def _dataset_view(model: SamplingModel, data: str | None, limit: int) -> DatasetView | None:
    from ldm.config import DataConfig
    from ldm.data.dataset import build_dataset

    if data is None and model.folder is not None and (model.folder / "ldm_config.yaml").is_file():
        configured = (yaml.safe_load((model.folder / "ldm_config.yaml").read_text()) or {}).get("data", {})
        if configured.get("source") == "imagefolder" and configured.get("path") and Path(configured["path"]).is_dir():
            data = configured["path"]
    if data is None:
        return None
    cfg = DataConfig(source="imagefolder", path=data, resolution=model.default_size)
    return DatasetView.from_dataset(build_dataset(cfg, "train"), model.pipe.vae, model.prompt_features, limit)


def parse_args(argv=None) -> argparse.Namespace:
    """The app's flags."""
    p = Parser(description="ldm web UI: generate, seed walks, prompt morphs, latent space, autoencoder.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--data", help="image folder for the latent-space explorer (default: the model's training data)")
    p.add_argument("--data-limit", type=int, default=4000, help="images of the dataset to load (default 4000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--auth", help="USER:PASSWORD required to use the app")
    p.add_argument("--device", help="cpu, cuda, ... (default: a GPU if there is one)")
    p.add_argument("--lora", action="append", default=[], help="a LoRA file to offer in the picker (repeatable)")
    p.add_argument("--queue-size", type=int, default=16, help="requests waiting at most; more are refused")
    return p.parse_args(argv)


def refuse_decompression_bombs() -> None:
    """Make PIL (which Gradio uses to read uploads) refuse images over ldm's pixel limit outright."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2  # PIL raises above twice this, warns above it
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def main(argv=None) -> None:
    """Load the model, build the UI and serve it."""
    args = parse_args(argv)
    quiet_libraries()
    refuse_decompression_bombs()
    model = load_sampling_model(args.model, args.device)
    view = _dataset_view(model, args.data, args.data_limit)
    out_dir = Path(tempfile.mkdtemp(prefix="ldm-ui-"))
    loras = {}
    for path in args.lora:
        model.resolve(Settings(lora=path))  # one-line error for a missing or pickle file
        name = Path(path).parent.name if Path(path).name == "pytorch_lora_weights.safetensors" else Path(path).stem
        loras[name] = path
    backend = Backend(model, view, out_dir, loras=loras)
    demo = build_ui(backend)
    # one generation at a time (the model is shared); a bounded queue refuses the rest cleanly
    demo.queue(default_concurrency_limit=1, max_size=args.queue_size)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.auth and len(auth) != 2:
        raise LdmError("--auth must be USER:PASSWORD")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline tool
    exposed = args.share or args.host not in ("127.0.0.1", "localhost", "::1")
    if exposed and auth is None:
        print("warning: the app is reachable from other machines and has no --auth; anyone who can reach it "
              "can use this machine's CPU/GPU", file=sys.stderr)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                    max_file_size=f"{backend.limits.upload_mb}mb", allowed_paths=[], show_error=True,
                    css=MAP_CSS, ssr_mode=False)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    run(main)
