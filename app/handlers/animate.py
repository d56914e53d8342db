"""The Seed walk and Prompt morph tabs' handlers: animations through keyframes, and any frame live."""

from __future__ import annotations

from app.handlers import checks
from app.handlers.checks import server
from app.handlers.live import LOCAL, live_image
from app.handlers.shared import Shared, TabHandlers
from ldm.media import write_animation
from ldm.sampling.limits import check_work
from ldm.sampling.requests import Progress, Settings
from ldm.sampling.sampler import SamplingModel
from ldm.sampling.schema import MORPH_MODES
from ldm.sampling.walks import MORPH_MODE, render_walk, spec_at


def render_animation(shared: Shared, kind: str, prompts: list[str], seeds: list[int], frames, settings: Settings,
                     progress: Progress | None = None, model: SamplingModel | None = None,
                     **walk) -> tuple[str, str, list[str]]:
    """A walk or morph rendered by `model` (default: the main one) into its own folder: (GIF, MP4, frame PNGs)."""
    model = model or shared.model
    frames = server("frames", frames)
    check_work(frames, settings.steps, settings.width, settings.height, model.default_size, shared.work_budget,
               "frames")
    specs, images = shared.batcher.run(render_walk, model, prompts, seeds, frames, settings, progress=progress,
                                       **walk)
    paths = write_animation(shared.folders.new(kind), images, [model.parameters_text(sp, settings) for sp in specs])
    frame_paths = [str(p) for p in paths if p.name.startswith("frame-")]
    gif = next(str(p) for p in paths if p.suffix == ".gif")
    mp4 = next(str(p) for p in paths if p.suffix == ".mp4")
    return gif, mp4, frame_paths


class AnimateHandlers(TabHandlers):
    """What the Seed walk and Prompt morph tabs' controls do."""

    def interpolate_seeds(self, prompt: str, seeds: str = "1, 2", frames: int = 16, loop: bool = False,
                          steps: int | None = None, guidance: float | None = None,
                          scheduler: str | None = None, model: str | None = None, progress: Progress | None = None):
        """Seed walk: (GIF, MP4, frame PNGs). model: a name from the server's models (default: the main model)."""
        prompt = checks.prompt(prompt)
        m = self.shared.models.pick(model)
        s = checks.settings(m, steps, guidance, scheduler)
        return render_animation(self.shared, "walk", [prompt], checks.seeds(seeds), frames, s, progress, m,
                                loop=bool(loop))

    def morph(self, prompts: str, seed: int = 0, frames: int = 16, mode: str = MORPH_MODE,
              steps: int | None = None, guidance: float | None = None, scheduler: str | None = None,
              model: str | None = None, progress: Progress | None = None):
        """Prompt morph through the prompts, one per line: (GIF, MP4, frame PNGs). model: a name from the server's
        models (default: the main model; a few-step student's morph blends gradually, a full model's may snap)."""
        keyframes = checks.prompt_lines(prompts)
        checks.one_of("interpolation", mode, MORPH_MODES)
        m = self.shared.models.pick(model)
        s = checks.settings(m, steps, guidance, scheduler)
        return render_animation(self.shared, "morph", keyframes, [checks.seed(seed)], frames, s, progress, m,
                                morph_mode=mode)

    def walk_frame(self, prompt: str, seeds: str = "1, 2", position: float = 0.0, loop: bool = False,
                   client: str = LOCAL) -> str:
        """The seed walk's frame at a position in [0, 1] along all its keyframes (and back to the first, looped)."""
        prompt, seeds = checks.prompt(prompt), checks.seeds(seeds)
        loop = bool(loop)
        u = server("position", position) * (len(seeds) - (0 if loop else 1))
        return live_image(self.shared, spec_at(u, [prompt], seeds, loop=loop), client=client)

    def morph_frame(self, prompts: str, seed: int = 0, position: float = 0.0, mode: str = MORPH_MODE,
                    client: str = LOCAL) -> str:
        """The prompt morph's frame at a position in [0, 1] along all its prompts (one per line), blended as the
        tab's Interpolation says."""
        keyframes = checks.prompt_lines(prompts)
        checks.one_of("interpolation", mode, MORPH_MODES)
        u = server("position", position) * (len(keyframes) - 1)
        return live_image(self.shared, spec_at(u, keyframes, [server("seed", seed)], morph_mode=mode),
                          client=client)
