"""The PNG Info tab's handlers: the parameters a PNG carries, read and handed to Generate's controls."""

from __future__ import annotations

from app.handlers import checks, payloads
from app.handlers.shared import TabHandlers
from ldm.errors import LdmError
from ldm.sampling.parameters import parse_parameters, read_png_parameters, spec_from_parameters


class PngInfoHandlers(TabHandlers):
    """What the PNG Info tab's controls (and its send-to buttons) do."""

    @staticmethod
    def png_info(upload) -> tuple[str, list[list[str]]]:
        """The generation parameters a PNG carries: (the text, a table of its fields)."""
        path, name = payloads.upload(upload)
        if not path:
            raise LdmError("drop a PNG made by ldm or AUTOMATIC1111")
        try:
            text = read_png_parameters(path)
        except LdmError as exc:  # its message names the server's copy of the file: name the user's
            raise LdmError(str(exc).replace(str(path), name)) from None
        prompt, negative, fields = parse_parameters(text)
        rows = [["Prompt", prompt], *([["Negative prompt", negative]] if negative else [])]
        return text, rows + [[key, value] for key, value in fields.items()]

    def png_fields(self, text: str) -> tuple:
        """A PNG's parameters as Generate's (prompt, negative, seed, steps, guidance, scheduler, width, height,
        model name, decoder), each checked as typed input is; what the text does not say takes the model's
        default (a text without a decoder was decoded by the full VAE)."""
        if not text:
            raise LdmError("drop a PNG with parameters first")
        spec, settings, fields = spec_from_parameters(text)
        models = self.shared.models
        name = models.that_made(fields)
        try:  # a PNG is input like any other: a value no control can hold would wedge the page
            prompt, seed = checks.prompt(spec.prompt), checks.server("seed", spec.seed)
            s = checks.settings(models.by_name[name], settings.steps, settings.guidance_scale, settings.scheduler,
                                settings.width, settings.height, settings.negative_prompt, models.largest_side,
                                settings.decoder)
        except LdmError as exc:
            raise LdmError(f"PNG parameters: {exc}") from None
        return (prompt, s.negative_prompt, seed, s.steps, s.guidance_scale, s.scheduler, s.width, s.height, name,
                s.decoder)
