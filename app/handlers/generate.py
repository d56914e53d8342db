"""The Generate tab's handlers: text to image, X/Y/Z plots, and the live image that follows the controls."""

from __future__ import annotations

from dataclasses import replace

from app.handlers import checks
from app.handlers.checks import server
from app.handlers.live import LOCAL, live_image
from app.handlers.models import NO_LORA
from app.handlers.shared import TabHandlers
from ldm.errors import LdmError
from ldm.outputs import NumberedFolder
from ldm.render import render_xyz
from ldm.sampling.limits import check_work
from ldm.sampling.requests import ImageSpec, Progress, concept_mix, image_specs
from ldm.sampling.xyz import parse_axes, plot_cells


class GenerateHandlers(TabHandlers):
    """What the Generate tab's controls do."""

    def generate(self, prompt: str, negative_prompt: str = "", seed: int = -1, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, width: int | None = None,
                 height: int | None = None, num_images: int = 1, lora: str = NO_LORA, lora_scale: float = 1.0,
                 model: str | None = None, decoder: str | None = None, progress: Progress | None = None):
        """Text to image: (gallery of (png, caption), parameters of each image, the PNG files).

        model: a name from the server's models, e.g. the few-step student for a fast render (default: the main
        model); decoder: full or tiny (default: the model's; tiny needs a model that ships one)."""
        shared = self.shared
        prompt = checks.prompt(prompt)
        m = shared.models.pick(model)
        s = checks.settings(m, steps, guidance, scheduler, width, height, negative_prompt, shared.models.largest_side,
                            decoder)
        lora_file = shared.models.lora(m, lora)
        if lora_file is not None:
            s = replace(s, lora=lora_file, lora_scale=server("lora_scale", lora_scale))
        num_images = server("images", num_images)
        check_work(num_images, s.steps, s.width, s.height, m.default_size, shared.work_budget)
        specs = image_specs([prompt], num_images, checks.seed(seed))
        images = shared.batcher.generate(specs, s, progress, model=m)
        return shared.folders.publish("generate", specs, images, [m.parameters_text(sp, s) for sp in specs])

    def xyz_plot(self, prompt: str, negative_prompt: str = "", seed: int = -1, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, width: int | None = None,
                 height: int | None = None, x_axis: str = "", y_axis: str = "", z_axis: str = "",
                 model: str | None = None, progress: Progress | None = None):
        """An X/Y/Z plot of the prompt: (the labelled grid, the cells' PNG files). Each axis is `name=v1,v2`;
        model: a name from the server's models (default: the main model)."""
        shared = self.shared
        prompt = checks.prompt(prompt)
        m = shared.models.pick(model)
        biggest = shared.models.largest_side
        s = checks.settings(m, steps, guidance, scheduler, width, height, negative_prompt, biggest)
        texts = []
        for what, text in (("X", x_axis), ("Y", y_axis), ("Z", z_axis)):
            if text is not None and not isinstance(text, str):
                raise LdmError(f"the {what} axis must be text like steps=4,8,14")
            if text and text.strip():
                texts.append(text.strip())
        if not texts:
            raise LdmError("give at least one axis, e.g. X: steps=4,8,14")
        seed = checks.seed(seed)
        axes = parse_axes(texts)
        cells = plot_cells(axes, ImageSpec(prompt, seed), s)
        for cell in cells:  # each cell's values within the server's bounds, as a single request's are
            c = cell.settings
            checks.settings(m, c.steps, c.guidance_scale, c.scheduler, s.width, s.height, c.negative_prompt, biggest)
            server("seed", cell.spec.seed)
            server("eta", c.eta)
        check_work(1, sum(m.resolve(c.settings).steps for c in cells), s.width, s.height,
                   m.default_size, shared.work_budget)
        out = NumberedFolder(shared.folders.new("xyz"))
        paths = shared.batcher.run(render_xyz, m, axes, ImageSpec(prompt, seed), s, out, len(cells), progress)
        return str(paths[-1]), [str(p) for p in paths[:-1]]

    def live_generate(self, prompt: str, seed: int = 0, guidance: float | None = None, variation_seed: int = 1,
                      variation_strength: float = 0.0, concept_from: str = "", concept_to: str = "",
                      concept_strength: float = 0.0, lora: str = NO_LORA, lora_scale: float = 1.0,
                      client: str = LOCAL) -> str:
        """The image for the controls as they are now: seed, variation, a concept direction's strength, and a
        LoRA (a taught concept: the live student draws it too)."""
        prompt = checks.prompt(prompt)
        strength = server("variation_strength", variation_strength)
        concept = server("mix", concept_strength)
        concept_from = checks.prompt(concept_from or "", "concept start")
        concept_to = checks.prompt(concept_to or "", "concept end")
        if concept and not (concept_from.strip() and concept_to.strip()):
            raise LdmError("a concept slider needs both of its prompts (e.g. smiling face -> crying face)")
        spec = ImageSpec(prompt, server("seed", seed), server("seed", variation_seed) if strength else None,
                         strength, mix=concept_mix(concept_from, concept_to, concept))
        lora_file = self.shared.models.lora(self.shared.models.live, lora)
        return live_image(self.shared, spec, guidance, client, lora_file,
                          server("lora_scale", lora_scale) if lora_file else 1.0)
