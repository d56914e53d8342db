"""What each control of the web UI does, as plain Python: check the inputs, call ldm, write files.

Nothing here imports Gradio: a handler raises LdmError with one line for the user, takes progress as a
plain (done, total) callable, and returns paths and text, so it can be tested without a server
(app/ui.py turns these into Gradio events).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PIL import ImageChops

from app.jobs import StopFlags
from ldm.data.images import BadImage, decode_image, load_image, to_tensor
from ldm.errors import LdmError, quoted
from ldm.explore import (
    PROJECTIONS,
    SPACES,
    DatasetView,
    anomaly_percentile,
    available_projections,
    channel_images,
    reconstruct,
)
from ldm.media import save_png, write_animation
from ldm.outputs import NumberedFolder
from ldm.render import render_xyz
from ldm.sampling.batching import MicroBatcher
from ldm.sampling.init_image import InitImage, init_image_from_pil
from ldm.sampling.inpaint import Mask, mask_from_pil
from ldm.sampling.limits import BOUNDS, SIZE_FACTOR, WORK_BUDGET, check, check_work
from ldm.sampling.parameters import parse_parameters, read_png_parameters, spec_from_parameters
from ldm.sampling.prompt_syntax import escape
from ldm.sampling.requests import ImageSpec, Progress, Settings, concept_mix, image_specs
from ldm.sampling.sampler import SamplingModel
from ldm.sampling.schema import FIELD, MORPH_MODES
from ldm.sampling.walks import render_walk, spec_at
from ldm.sampling.xyz import parse_axes, plot_cells

MAX_SEED = int(BOUNDS["seed"].server_high)
# Live images take at most this many of a few-step student's steps: the shipped student renders one in 60 ms at
# 2 steps against 95 ms at its default 4 (2 cores), with the same top-1 fidelity (0.835; generalisation
# 0.53 against 0.61). The full render stays one click away.
LIVE_STEPS = 2
KEEP_S = 900  # Gradio serves copies of a request's files, so ours are needed only until it has answered
NO_LORA = "none"
LOCAL = "local"  # the client a library caller's live calls count as (the web UI passes each session's own)


def prune(folder: Path, max_age_s: float) -> None:
    """Remove the request folders in `folder` last changed more than max_age_s ago."""
    if not folder.is_dir():
        return
    now = time.time()
    for old in folder.iterdir():
        with contextlib.suppress(OSError):  # another request may be removing it too
            if old.is_dir() and now - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old)


def _server(name: str, value) -> int | float:
    return check(name, value, server=True)


def _keyframe_count(keyframes: list, what: str) -> None:
    bound = BOUNDS["keyframes"]
    if not bound.low <= len(keyframes) <= bound.server_high:
        raise LdmError(f"give between {bound.low} and {bound.server_high} {what}")


def _choice(what: str, value) -> str:
    # a value sent by an API client rather than picked from the UI's list
    if not isinstance(value, str):
        raise LdmError(f"{what} must be one of the listed names, got {value!r}")
    return value


def _one_of(what: str, value, allowed) -> str:
    # a value sent back by the page (or made up by an API caller) that must be one of `allowed`
    if _choice(what, value) not in allowed:
        raise LdmError(f"{what} must be one of {', '.join(allowed)}, got {quoted(value)}")
    return value


def _upload_path(upload) -> tuple[str | None, str]:
    # a plain path (library callers, tests) or Gradio's file data, moved into its cache and checked to be there
    if isinstance(upload, dict):
        path = upload.get("path")
        return path, Path(upload.get("orig_name") or path or "upload").name
    return upload, Path(upload).name if upload else ""


def _whole(value):
    # Gradio's sliders send 64.0 for 64; resolve_settings then refuses a fraction such as 64.5 in one line.
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Handlers:
    """The UI's handlers over one loaded model, an optional dataset view, and a folder for their files."""

    def __init__(self, model: SamplingModel, view: DatasetView | None, out_dir: Path,
                 loras: dict[str, str] | None = None, work_budget: float = WORK_BUDGET, max_batch: int = 16,
                 batcher_thread: bool = True, live: SamplingModel | None = None, max_live: int = 32):
        self.model, self.view, self.out_dir = model, view, out_dir
        # what the live controls render with: a few-step student when there is one, else the model itself
        self.live = live or model
        # what Generate may render with, by name: the model (full quality) and a live student (fast)
        self.models = {model.name: model}
        if self.live is not model:
            self.models[self.live.name if self.live.name != model.name else f"{model.name} (student)"] = self.live
        self.loras = loras or {}  # name shown in the picker -> file
        self.work_budget = work_budget
        # all model work runs on the batcher's thread, and users' small requests with equal settings run
        # together; without a thread of its own, the caller runs self.batcher.serve_forever()
        self.batcher = MicroBatcher(model, max_batch, own_thread=batcher_thread, max_live=max_live)
        self.stops = StopFlags()  # each session's Stop button (app/events.py checks them between steps)

    @property
    def largest_side(self) -> int:
        """The widest or tallest image a request may ask for, in pixels (a multiple of the size step)."""
        step = self.model.size_step
        return self.model.default_size * SIZE_FACTOR // step * step

    # ---- checks -------------------------------------------------------------------------------------
    def pick_model(self, name: str | None) -> SamplingModel:
        """The loaded model of that name (None: the main one), or a one-line refusal."""
        if name is None:
            return self.model
        if _choice("model", name) not in self.models:
            raise LdmError(f"unknown model {name!r}: this server has {', '.join(map(repr, self.models))}")
        return self.models[name]

    def settings(self, steps, guidance, scheduler, width=None, height=None, negative_prompt="",
                 model: SamplingModel | None = None) -> Settings:
        """Checked sampling settings for `model` (default: the main one); None means the model's default."""
        model = model or self.model
        defaults = model.defaults
        guidance = defaults.guidance if guidance is None else guidance
        steps = defaults.steps if steps is None else steps
        scheduler = defaults.scheduler if scheduler is None else scheduler
        steps, guidance = _server("steps", steps), _server("guidance", guidance)
        _choice("scheduler", scheduler)
        step, biggest = model.size_step, self.largest_side
        for side, value in (("width", width), ("height", height)):
            if value is not None and (isinstance(value, bool) or not step <= value <= biggest):
                raise LdmError(f"{side} must be between {step} and {biggest}, got {value!r}")
        self.prompt(negative_prompt or "", "negative prompt")
        return model.resolve(Settings(
            steps=steps, guidance_scale=guidance, scheduler=scheduler, width=_whole(width), height=_whole(height),
            negative_prompt=negative_prompt or ""))

    @staticmethod
    def prompt(prompt: str | None, what: str = "prompt") -> str:
        """The prompt, refused when missing, not text, or longer than the server allows."""
        if prompt is None:
            raise LdmError(f"{what} is missing")
        if not isinstance(prompt, str):
            raise LdmError(f"{what} must be text")
        longest = int(BOUNDS["prompt_chars"].server_high)
        if len(prompt) > longest:
            raise LdmError(f"{what} is longer than {longest} characters")
        return prompt

    def prompt_lines(self, text: str | None) -> list[str]:
        """Keyframe prompts, one per non-empty line, each checked, between 2 and the server's most."""
        keyframes = [self.prompt(p.strip()) for p in str(text or "").splitlines() if p.strip()]
        _keyframe_count(keyframes, "prompts, one per line")
        return keyframes

    @staticmethod
    def seed(seed) -> int:
        """A checked seed; None or a negative number draws a random one."""
        if seed is None or (not isinstance(seed, bool) and isinstance(seed, int | float) and seed < 0):
            return random.randrange(MAX_SEED)
        return _server("seed", seed)

    @staticmethod
    def seeds(text: str) -> list[int]:
        """Keyframe seeds from text like '1, 2, 3'."""
        try:
            seeds = [int(s) for s in str(text).replace(",", " ").split()]
        except ValueError:
            raise LdmError("seeds must be whole numbers separated by commas or spaces") from None
        _keyframe_count(seeds, "seeds")
        return [_server("seed", s) for s in seeds]

    def folder(self, kind: str) -> Path:
        """A new folder of its own for one request's files; folders older than KEEP_S go, so use stays bounded."""
        prune(self.out_dir, KEEP_S)
        folder = self.out_dir / f"{kind}-{uuid.uuid4().hex[:10]}"
        folder.mkdir(parents=True)
        return folder

    # ---- generate -----------------------------------------------------------------------------------
    def generate(self, prompt: str, negative_prompt: str = "", seed: int = -1, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, width: int | None = None,
                 height: int | None = None, num_images: int = 1, lora: str = NO_LORA, lora_scale: float = 1.0,
                 model: str | None = None, progress: Progress | None = None):
        """Text to image: (gallery of (png, caption), parameters of each image, the PNG files).

        model: a name from self.models, e.g. the few-step student for a fast render (default: the main model)."""
        prompt = self.prompt(prompt)
        m = self.pick_model(model)
        s = self.settings(steps, guidance, scheduler, width, height, negative_prompt, m)
        if lora not in (None, NO_LORA):
            if m is not self.model:
                raise LdmError(f"the LoRAs here are for {self.model.name}; pick that model to use one")
            if _choice("LoRA", lora) not in self.loras:
                raise LdmError(f"unknown LoRA {lora!r}")
            s = replace(s, lora=self.loras[lora], lora_scale=_server("lora_scale", lora_scale))
        num_images = _server("images", num_images)
        check_work(num_images, s.steps, s.width, s.height, m.default_size, self.work_budget)
        seed = self.seed(seed)
        specs = image_specs([prompt], num_images, seed)
        images = self.batcher.generate(specs, s, progress, model=m)
        return self.publish("generate", specs, images, [m.parameters_text(sp, s) for sp in specs])

    def publish(self, kind: str, specs: list[ImageSpec], images, texts: list[str]) -> tuple:
        """One request's images as PNGs with their parameters in a new folder: (gallery of (png, 'seed N'),
        the parameters summary, the PNG files)."""
        folder = self.folder(kind)
        paths = [str(save_png(img, folder / f"{k:02d}-{sp.seed}.png", text))
                 for k, (img, sp, text) in enumerate(zip(images, specs, texts, strict=True))]
        gallery = [(p, f"seed {sp.seed}") for p, sp in zip(paths, specs, strict=True)]
        return gallery, parameters_summary(texts[0], [sp.seed for sp in specs]), paths

    # ---- X/Y/Z plot ---------------------------------------------------------------------------------
    def xyz_plot(self, prompt: str, negative_prompt: str = "", seed: int = -1, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, width: int | None = None,
                 height: int | None = None, x_axis: str = "", y_axis: str = "", z_axis: str = "",
                 model: str | None = None, progress: Progress | None = None):
        """An X/Y/Z plot of the prompt: (the labelled grid, the cells' PNG files). Each axis is `name=v1,v2`;
        model: a name from self.models (default: the main model)."""
        prompt = self.prompt(prompt)
        m = self.pick_model(model)
        s = self.settings(steps, guidance, scheduler, width, height, negative_prompt, m)
        texts = []
        for what, text in (("X", x_axis), ("Y", y_axis), ("Z", z_axis)):
            if text is not None and not isinstance(text, str):
                raise LdmError(f"the {what} axis must be text like steps=4,8,14")
            if text and text.strip():
                texts.append(text.strip())
        if not texts:
            raise LdmError("give at least one axis, e.g. X: steps=4,8,14")
        seed = self.seed(seed)
        axes = parse_axes(texts)
        cells = plot_cells(axes, ImageSpec(prompt, seed), s)
        for cell in cells:  # each cell's values within the server's bounds, as a single request's are
            self.settings(cell.settings.steps, cell.settings.guidance_scale, cell.settings.scheduler, s.width,
                          s.height, cell.settings.negative_prompt, m)
            _server("seed", cell.spec.seed)
            _server("eta", cell.settings.eta)
        check_work(1, sum(m.resolve(c.settings).steps for c in cells), s.width, s.height,
                   m.default_size, self.work_budget)
        out = NumberedFolder(self.folder("xyz"))
        paths = self.batcher.run(render_xyz, m, axes, ImageSpec(prompt, seed), s, out, len(cells), progress)
        return str(paths[-1]), [str(p) for p in paths[:-1]]

    # ---- image to image and inpainting ---------------------------------------------------------------
    def image_to_image(self, editor, prompt: str, negative_prompt: str = "", seed: int = -1,
                       steps: int | None = None, guidance: float | None = None, scheduler: str | None = None,
                       strength: float = FIELD["strength"].ui_value, num_images: int = 1,
                       mask_blur: int = FIELD["mask_blur"].default,
                       masked_content: str = FIELD["masked_content"].default,
                       inpaint_area: str = FIELD["inpaint_area"].default,
                       inpaint_padding: int = FIELD["inpaint_padding"].default,
                       progress: Progress | None = None):
        """Image to image from the editor's picture, inpainting where strokes were painted over it:
        (gallery of (png, caption), parameters of each image, the PNG files)."""
        prompt = self.prompt(prompt)
        s = self.settings(steps, guidance, scheduler, None, None, negative_prompt)
        s = self.model.resolve(replace(
            s, strength=_server("strength", strength), mask_blur=_server("mask_blur", _whole(mask_blur)),
            masked_content=_choice("masked content", masked_content),
            inpaint_area=_choice("inpaint area", inpaint_area),
            inpaint_padding=_server("inpaint_padding", _whole(inpaint_padding))))
        init, mask = self.editor_input(editor, s.width, s.height)
        num_images = _server("images", num_images)
        check_work(num_images, s.steps, s.width, s.height, self.model.default_size, self.work_budget)
        seed = self.seed(seed)
        specs = image_specs([prompt], num_images, seed)
        images = self.batcher.run(self.model.generate, specs, s, len(specs), progress, None, init, mask)
        return self.publish("img2img", specs, images, [self.model.parameters_text(sp, s, init, mask) for sp in specs])

    def editor_input(self, editor, width: int, height: int) -> tuple[InitImage, Mask | None]:
        """The picture under an image editor's strokes (fitted to width x height) and the strokes as the mask
        (None when nothing was painted). `editor`: Gradio's {"background", "layers"} of file data or paths."""
        if not isinstance(editor, dict) or not editor.get("background"):
            raise LdmError("upload an image to start from")
        path, name = _upload_path(editor["background"])
        try:
            picture = decode_image(path, max(width, height))
        except BadImage as exc:  # its reason never names the server's copy of the file
            raise LdmError(f"cannot use {name}: {exc}") from None
        init = init_image_from_pil(picture, width, height)
        strokes = None
        for layer in editor.get("layers") or []:
            layer_path, layer_name = _upload_path(layer)
            try:
                alpha = decode_image(layer_path, max(width, height)).convert("RGBA").getchannel("A")
            except BadImage as exc:
                raise LdmError(f"cannot use the mask layer {layer_name}: {exc}") from None
            if alpha.size != picture.size:
                raise LdmError(f"the mask layer is {alpha.size[0]}x{alpha.size[1]} but the image is "
                               f"{picture.size[0]}x{picture.size[1]}")
            strokes = alpha if strokes is None else ImageChops.lighter(strokes, alpha)
        if strokes is None or strokes.getextrema()[1] == 0:
            return init, None
        return init, mask_from_pil(strokes, width, height)

    # ---- PNG info -----------------------------------------------------------------------------------
    @staticmethod
    def png_info(upload) -> tuple[str, list[list[str]]]:
        """The generation parameters a PNG carries: (the text, a table of its fields)."""
        path, name = _upload_path(upload)
        if not path:
            raise LdmError("drop a PNG made by ldm or AUTOMATIC1111")
        try:
            text = read_png_parameters(path)
        except LdmError as exc:  # its message names the server's copy of the file: name the user's
            raise LdmError(str(exc).replace(str(path), name)) from None
        prompt, negative, fields = parse_parameters(text)
        rows = [["Prompt", prompt], *([["Negative prompt", negative]] if negative else [])]
        return text, rows + [[key, value] for key, value in fields.items()]

    def model_that_made(self, fields: dict[str, str]) -> str:
        """The name of this server's model that a PNG's fields name (by its hash, else its name), else the main one."""
        for name, model in self.models.items():
            if fields.get("Model hash") == model.model_hash:
                return name
        return fields["Model"] if fields.get("Model") in self.models else self.model.name

    def png_fields(self, text: str) -> tuple:
        """A PNG's parameters as Generate's (prompt, negative, seed, steps, guidance, scheduler, width, height,
        model name), each checked as typed input is; what the text does not say takes the model's default."""
        if not text:
            raise LdmError("drop a PNG with parameters first")
        spec, settings, fields = spec_from_parameters(text)
        name = self.model_that_made(fields)
        try:  # a PNG is input like any other: a value no control can hold would wedge the page
            prompt, seed = self.prompt(spec.prompt), _server("seed", spec.seed)
            s = self.settings(settings.steps, settings.guidance_scale, settings.scheduler, settings.width,
                              settings.height, settings.negative_prompt, self.models[name])
        except LdmError as exc:
            raise LdmError(f"PNG parameters: {exc}") from None
        return prompt, s.negative_prompt, seed, s.steps, s.guidance_scale, s.scheduler, s.width, s.height, name

    # ---- animations ---------------------------------------------------------------------------------
    def animate(self, kind: str, prompts: list[str], seeds: list[int], frames, settings: Settings,
                progress: Progress | None = None, **walk) -> tuple[str, str, list[str]]:
        """A walk or morph rendered into its own folder: (GIF, MP4, frame PNGs)."""
        frames = _server("frames", frames)
        check_work(frames, settings.steps, settings.width, settings.height, self.model.default_size,
                   self.work_budget, "frames")
        specs, images = self.batcher.run(render_walk, self.model, prompts, seeds, frames, settings, progress=progress,
                                         **walk)
        paths = write_animation(self.folder(kind), images, [self.model.parameters_text(sp, settings) for sp in specs])
        frame_paths = [str(p) for p in paths if p.name.startswith("frame-")]
        gif = next(str(p) for p in paths if p.suffix == ".gif")
        mp4 = next(str(p) for p in paths if p.suffix == ".mp4")
        return gif, mp4, frame_paths

    def interpolate_seeds(self, prompt: str, seeds: str = "1, 2", frames: int = 16, loop: bool = False,
                          steps: int | None = None, guidance: float | None = None,
                          scheduler: str | None = None, progress: Progress | None = None):
        """Seed walk: (GIF, MP4, frame PNGs)."""
        prompt = self.prompt(prompt)
        s = self.settings(steps, guidance, scheduler)
        return self.animate("walk", [prompt], self.seeds(seeds), frames, s, progress, loop=bool(loop))

    def morph(self, prompts: str, seed: int = 0, frames: int = 16, mode: str = "slerp",
              steps: int | None = None, guidance: float | None = None, scheduler: str | None = None,
              progress: Progress | None = None):
        """Prompt morph through the prompts, one per line: (GIF, MP4, frame PNGs)."""
        keyframes = self.prompt_lines(prompts)
        if _choice("interpolation", mode) not in MORPH_MODES:
            raise LdmError(f"interpolation must be one of {', '.join(MORPH_MODES)}")
        s = self.settings(steps, guidance, scheduler)
        return self.animate("morph", keyframes, [self.seed(seed)], frames, s, progress, morph_mode=mode)

    # ---- autoencoder --------------------------------------------------------------------------------
    def reconstruct(self, image: str | dict | None, progress: Progress | None = None):
        """VAE round trip of an uploaded image: (reconstruction, report, latent channels)."""
        path, name = _upload_path(image)
        if not path:
            raise LdmError("upload an image first")
        try:
            pil = load_image(path, self.model.default_size)
        except BadImage as exc:  # its reason never names the server's copy of the file
            raise LdmError(f"cannot use {name}: {exc}") from None
        r = self.batcher.run(reconstruct, self.model.vae, to_tensor(pil) / 2 + 0.5)
        folder = self.folder("reconstruct")
        recon_path = str(save_png(r.reconstruction, folder / "reconstruction.png"))
        report = [f"**PSNR** {r.psnr_db:.2f} dB  ·  **compression** {r.compression:.1f}x "
                  f"({r.image.numel():,} pixel bytes vs {r.latent.numel() * 2:,} latent bytes at fp16)"]
        if self.view is not None:
            self.wait_for_view(progress)
            pct = anomaly_percentile(r.error, self.view.errors)
            report.append(f"**anomaly score** {ordinal(round(pct))} percentile of the training set's reconstruction "
                          "error")
        channels = []
        for k, img in enumerate(channel_images(r.latent)):
            path = folder / f"channel-{k}.png"
            img.save(path)
            channels.append((str(path), f"channel {k}"))
        return recon_path, "\n\n".join(report), channels

    # ---- latent space -------------------------------------------------------------------------------
    def wait_for_view(self, progress: Progress | None) -> None:
        """Wait until the dataset is encoded (at start-up, in the background), showing how far it is."""
        self.view.wait(None if progress is None else
                       lambda done, total: progress(done, total, "encoding the dataset (first time only)"))

    def need_view(self) -> DatasetView:
        """The dataset view, or the one-line reason there is none."""
        if self.view is None:
            raise LdmError("no dataset: start the app with --data DIR to explore the latent space")
        return self.view

    def drawn_map(self, drawn) -> tuple[str, str, list[int]]:
        """What a map shows, as the page (or an API caller) sends it back, checked: (space, method, indices)."""
        self.need_view()
        if not drawn or not isinstance(drawn, dict) or not drawn.get("indices"):
            raise LdmError("draw the map first")
        space, method, indices = drawn.get("space"), drawn.get("method"), drawn.get("indices")
        _one_of("map space", space, SPACES)
        _one_of("projection", method, PROJECTIONS)
        bound = BOUNDS["map_points"]
        if not isinstance(indices, list) or not bound.low <= len(indices) <= bound.server_high:
            raise LdmError(f"a map holds {bound.low} to {bound.server_high} points")
        self.picks(indices, "map points")
        if len(set(indices)) != len(indices):
            raise LdmError("a map's points must differ")
        return space, method, indices

    def picks(self, picks, what: str = "picks") -> list[int]:
        """Picked points as the page sends them back: indices of the dataset's images."""
        view = self.need_view()
        if not isinstance(picks, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(view) for i in picks):
            raise LdmError(f"{what} must be indices of the dataset's {len(view)} images")
        return picks

    def draw_map(self, space: str, method: str, points: int, picks: list, progress: Progress | None = None):
        """The 2-D map as SVG (picks marked), and what was drawn: {space, method, indices}."""
        view = self.need_view()
        _one_of("map space", space, SPACES)
        if _choice("projection", method) not in available_projections():  # UMAP only where umap-learn imports
            raise LdmError(f"projection must be one of {', '.join(available_projections())}")
        points, picks = _server("map_points", points), self.picks(picks or [])
        self.wait_for_view(progress)
        indices = view.subset(points)
        svg, _ = view.map_svg(space, method, indices, picks)
        return svg, {"space": space, "method": method, "indices": indices}

    def pick(self, drawn: dict | None, picks: list, k) -> tuple[str, list, str, str]:
        """Point k of the drawn map: its image (decoded or generated), the picks with it last, their captions,
        and the map redrawn with the picks marked."""
        view = self.need_view()
        space, method, indices = self.drawn_map(drawn)
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(indices):
            raise LdmError("click on a point of the map")
        i = indices[k]
        picks = ([*self.picks(picks or []), i])[-2:]
        if space == "latents":
            image = self.batcher.run(view.decoded, i)
        else:
            image = self.batcher.generate([ImageSpec(escape(view.captions[i]), 0)], Settings())[0]
        path = str(save_png(image, self.folder("pick") / "pick.png"))
        labels = " → ".join(f"“{view.captions[p]}”" for p in picks)
        svg, _ = view.map_svg(space, method, indices, picks)
        return path, picks, f"picked: {labels}", svg

    def interpolate_picks(self, drawn: dict | None, picks: list, frames: int, progress: Progress | None = None) -> str:
        """A GIF between the two picked points: a prompt morph (caption map) or a latent slerp (latent map)."""
        view = self.need_view()
        if not picks or len(picks) < 2 or not drawn:
            raise LdmError("pick two points on the map first")
        space, _, _ = self.drawn_map(drawn)
        frames = _server("frames", frames)
        a, b = self.picks(picks)[-2:]
        if space == "captions":
            return self.animate("pick-morph", [view.captions[a], view.captions[b]], [0], frames,
                                self.model.resolve(Settings()), progress)[0]
        images = self.batcher.run(view.slerp_images, a, b, frames)
        paths = write_animation(self.folder("pick-slerp"), images, [""] * frames)
        return next(str(p) for p in paths if p.suffix == ".gif")

    def traverse(self, picks: list, *amounts: float) -> str:
        """The last picked image moved along the latent space's top principal directions."""
        view = self.need_view()
        if not picks:
            raise LdmError("pick a point on the map first")
        picks, amounts = self.picks(picks), [_server("direction", a) for a in amounts]
        image = self.batcher.run(view.traversed, picks[-1], amounts)
        return str(save_png(image, self.folder("traverse") / "traverse.png"))

    # ---- live: one image at a time, as controls move ---------------------------------------------------
    @property
    def live_steps(self) -> int:
        """Steps of a live image: a student's default up to LIVE_STEPS; another model's own default."""
        steps = self.live.defaults.steps
        return min(steps, LIVE_STEPS) if self.live.is_student else steps

    def live_image(self, spec: ImageSpec | Callable[[], ImageSpec], guidance: float | None = None,
                   client: str = LOCAL) -> str:
        """One image from the live model (a student: a few steps, no CFG pass; at most LIVE_STEPS), as a PNG.

        spec: the image, or what works it out on the model's thread; client: who asks (its newer call replaces
        its waiting one, see MicroBatcher.run_live)."""
        model = self.live
        if guidance is not None:
            guidance = _server("guidance", guidance)
        s = model.resolve(Settings(guidance_scale=guidance, steps=self.live_steps))

        def render() -> str:
            image_spec = spec() if callable(spec) else spec
            image = model.generate([image_spec], s)[0]
            return str(save_png(image, self.folder("live") / f"live-{image_spec.seed}.png",
                                model.parameters_text(image_spec, s)))

        return self.batcher.run_live(client, render)

    def live_generate(self, prompt: str, seed: int = 0, guidance: float | None = None, variation_seed: int = 1,
                      variation_strength: float = 0.0, concept_from: str = "", concept_to: str = "",
                      concept_strength: float = 0.0, client: str = LOCAL) -> str:
        """The image for the controls as they are now: seed, variation, and a concept direction's strength."""
        prompt = self.prompt(prompt)
        strength = _server("variation_strength", variation_strength)
        concept = _server("mix", concept_strength)
        concept_from, concept_to = self.prompt(concept_from or "", "concept start"), \
            self.prompt(concept_to or "", "concept end")
        if concept and not (concept_from.strip() and concept_to.strip()):
            raise LdmError("a concept slider needs both of its prompts (e.g. smiling face -> crying face)")
        spec = ImageSpec(prompt, _server("seed", seed), _server("seed", variation_seed) if strength else None,
                         strength, mix=concept_mix(concept_from, concept_to, concept))
        return self.live_image(spec, guidance, client)

    def walk_frame(self, prompt: str, seeds: str = "1, 2", position: float = 0.0, client: str = LOCAL) -> str:
        """The seed walk's frame at a position in [0, 1] along all its keyframes."""
        prompt, seeds = self.prompt(prompt), self.seeds(seeds)
        u = _server("position", position) * (len(seeds) - 1)
        return self.live_image(spec_at(u, [prompt], seeds), client=client)

    def morph_frame(self, prompts: str, seed: int = 0, position: float = 0.0, client: str = LOCAL) -> str:
        """The prompt morph's frame at a position in [0, 1] along all its prompts (one per line)."""
        keyframes = self.prompt_lines(prompts)
        u = _server("position", position) * (len(keyframes) - 1)
        return self.live_image(spec_at(u, keyframes, [_server("seed", seed)]), client=client)

    def map_point(self, drawn: dict | None, x: float, y: float, client: str = LOCAL) -> str:
        """The image at a position of the drawn map (SVG units): the latent map decodes the latent there
        (inverse PCA; t-SNE/UMAP blend the nearest points), the caption map generates from the nearest
        captions' embeddings blended."""
        view = self.need_view()
        space, method, indices = self.drawn_map(drawn)
        for value in (x, y):
            if isinstance(value, bool) or not isinstance(value, int | float) or not -1e4 < value < 1e4:
                raise LdmError(f"map position must be a number, got {quoted(value)}")
        if method != "pca" and not view.has_projection(space, method, indices):
            # t-SNE and UMAP take seconds to fit: a live call only reads a map that Draw map made
            raise LdmError("this map is no longer the one drawn on the server: press Draw map again")
        if space == "latents":
            return self.batcher.run_live(
                client, lambda: str(save_png(view.image_at(method, indices, x, y), self.folder("live") / "map.png")))

        def blend() -> ImageSpec:
            first, mix = view.captions_at(method, indices, x, y)
            return ImageSpec(first, 0, mix=mix)

        return self.live_image(blend, client=client)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def parameters_summary(first: str, seeds: list[int]) -> str:
    """The first image's parameters, and the other images' seeds (all they differ in) once, not a line each."""
    if len(seeds) < 2:
        return first
    return f"{first}\n\nThe other images differ only in Seed: {', '.join(str(s) for s in seeds[1:])}"


# ---- hand-offs between tabs ---------------------------------------------------------------------------
def picture_handoff(path, prompt: str | None = None) -> tuple[str, str | None]:
    """An image shown in another tab (a file, or Gradio's file data) and the first line of its prompt (None
    when there is none), for Image to image."""
    if isinstance(path, dict):
        path = path.get("path")
    if not path:
        raise LdmError("there is no image to send yet")
    lines = prompt.strip().splitlines() if isinstance(prompt, str) else []
    return path, lines[0] if lines else None


def gallery_image(chosen: str | None, gallery) -> str | None:
    """The clicked gallery image's file, else the gallery's first."""
    if chosen:
        return chosen
    for item in gallery or []:
        image = item.get("image") if isinstance(item, dict) else item[0]
        return image.get("path") if isinstance(image, dict) else image
    raise LdmError("generate an image first")



def gallery_seeds(gallery) -> list[int]:
    """The seeds in a gallery's captions ('seed 42'), in order; Gradio gives (image, caption) pairs or dicts."""
    seeds = []
    for item in gallery or []:
        caption = item.get("caption") if isinstance(item, dict) else item[1] if len(item) > 1 else None
        words = str(caption or "").split()
        if len(words) == 2 and words[0] == "seed" and words[1].isdigit():
            seeds.append(int(words[1]))
    return seeds


def run_seed(seed, chosen: int | None, gallery) -> int:
    """The seed a hand-off starts from: the clicked image's, else the run's first, else the seed box's."""
    if chosen is not None:
        return int(chosen)
    seeds = gallery_seeds(gallery)
    if seeds:
        return seeds[0]
    return int(seed) if isinstance(seed, int | float) and not isinstance(seed, bool) and seed >= 0 else 0


def walk_handoff(seed, chosen: int | None, gallery) -> str:
    """Keyframe seeds for the Seed walk tab: the clicked image's and the next, else every seed of the run."""
    seeds = gallery_seeds(gallery)
    if chosen is None and len(seeds) >= 2:
        return ", ".join(str(s) for s in seeds[:int(BOUNDS["keyframes"].server_high)])
    first = run_seed(seed, chosen, gallery)
    return f"{first}, {first + 1}"


def morph_handoff(prompt: str, morph_prompts: str) -> str:
    """The Morph tab's prompts: this prompt first, then the Morph tab's own last line (or this prompt) to edit."""
    lines = [line.strip() for line in str(morph_prompts or "").splitlines() if line.strip()]
    second = lines[-1] if lines and lines[-1] != prompt.strip() else prompt.strip()
    return f"{prompt.strip()}\n{second}"
