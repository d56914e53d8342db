"""The Image to image tab's handlers: a picture changed by a prompt, repainted only where strokes are painted."""

from __future__ import annotations

from dataclasses import replace

from app.handlers import checks
from app.handlers.checks import server, whole
from app.handlers.payloads import editor_files
from app.handlers.shared import TabHandlers
from ldm.data.images import BadImage, decode_image
from ldm.errors import LdmError
from ldm.sampling.init_image import InitImage, init_image_from_pil
from ldm.sampling.inpaint import Mask, mask_from_strokes
from ldm.sampling.limits import check_work
from ldm.sampling.requests import Progress, image_specs
from ldm.sampling.schema import FIELD


class Img2ImgHandlers(TabHandlers):
    """What the Image to image tab's controls do."""

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
        shared, model = self.shared, self.shared.model
        prompt = checks.prompt(prompt)
        s = checks.settings(model, steps, guidance, scheduler, None, None, negative_prompt)
        s = model.resolve(replace(
            s, strength=server("strength", strength), mask_blur=server("mask_blur", whole(mask_blur)),
            masked_content=checks.choice("masked content", masked_content),
            inpaint_area=checks.choice("inpaint area", inpaint_area),
            inpaint_padding=server("inpaint_padding", whole(inpaint_padding))))
        init, mask = self.editor_input(editor, s.width, s.height)
        num_images = server("images", num_images)
        check_work(num_images, s.steps, s.width, s.height, model.default_size, shared.work_budget)
        specs = image_specs([prompt], num_images, checks.seed(seed))
        images = shared.batcher.run(model.generate, specs, s, len(specs), progress, None, init, mask)
        return shared.folders.publish("img2img", specs, images,
                                      [model.parameters_text(sp, s, init, mask) for sp in specs])

    @staticmethod
    def editor_input(editor, width: int, height: int) -> tuple[InitImage, Mask | None]:
        """The picture under an image editor's strokes (fitted to width x height) and the strokes as the mask
        (None when nothing was painted)."""
        (path, name), layers = editor_files(editor)
        try:
            picture = decode_image(path, max(width, height))
        except BadImage as exc:  # its reason never names the server's copy of the file
            raise LdmError(f"cannot use {name}: {exc}") from None
        return init_image_from_pil(picture, width, height), mask_from_strokes(picture.size, layers, width, height)
