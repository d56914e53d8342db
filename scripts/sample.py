"""Generate images, seed walks and prompt morphs: python scripts/sample.py "a red apple" """

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from ldm.cli import Parser, quiet_libraries, run
from ldm.config import PRECISIONS
from ldm.errors import LdmError
from ldm.folders import check_model_folder
from ldm.outputs import NumberedFolder, prepare_folder
from ldm.sampling.concepts import EMBEDDING_FILE, LORA_FILE, concept_file
from ldm.sampling.easing import EASINGS
from ldm.sampling.limits import check
from ldm.sampling.parameters import read_png_parameters
from ldm.sampling.requests import (
    DEFAULT_MODEL,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    INPAINT_AREAS,
    MASKED_CONTENT,
    MORPH_MODES,
    STUDENT_SCHEDULER,
    STUDENT_STEPS,
    Settings,
    folder_defaults,
    image_specs,
    resolve_settings,
    spec_from_parameters,
)
from ldm.sampling.schedulers import SCHEDULERS
from ldm.sampling.xyz import AXES, parse_axes, plot_cells


def parser() -> argparse.ArgumentParser:
    """The sample.py flags."""
    p = Parser(description="Text to image, seed walks and prompt morphs with a diffusers pipeline folder.")
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompt(s) to generate")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable; same as positional)")
    p.add_argument("--prompts-file", help="a text file: one prompt per line")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--negative-prompt", default="", help="what to steer away from")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--steps", type=int, help=f"denoising steps (default: the model's; {DEFAULT_STEPS}, or "
                   f"{STUDENT_STEPS} for a few-step student)")
    p.add_argument("--scheduler", choices=list(SCHEDULERS), help=f"sampler (default: the model's; {DEFAULT_SCHEDULER}, "
                   f"or {STUDENT_SCHEDULER} for a few-step student)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    p.add_argument("--width", type=int, help="pixels (default: the model's training size)")
    p.add_argument("--height", type=int, help="pixels (default: the model's training size)")
    p.add_argument("--num-images", type=int, default=1, help="images per prompt")
    p.add_argument("--seed", type=int, help="seed of the first image; image k uses seed + k (default: random)")
    p.add_argument("--variation-seed", type=int, help="second seed slerped into the noise")
    p.add_argument("--variation-strength", type=float, default=0.0, help="0 = seed only, 1 = variation seed only")
    p.add_argument("--lora", help="a LoRA file (diffusers format, e.g. runs/my-lora/pytorch_lora_weights.safetensors) "
                   "or a folder holding one (scripts/teach.py's)")
    p.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength (default 1.0)")
    p.add_argument("--embedding", action="append", default=[], metavar="PATH",
                   help="a textual-inversion embedding (learned_embeds.safetensors, or scripts/teach.py's folder) "
                   "whose word prompts may then use (repeatable)")
    p.add_argument("--init-image", help="image to image: start from this picture (scaled and centre-cropped to "
                   "the output size)")
    p.add_argument("--strength", type=float, help="image to image: how much to change the init image, 0 (none) "
                   f"to 1 (text to image); default {DEFAULT_STRENGTH}")
    p.add_argument("--mask", help="inpainting: repaint only this mask's white area of the init image (same size as "
                   "the init image; transparent = keep)")
    p.add_argument("--mask-blur", type=int, default=4, help="inpainting: soften the mask's edge by this many pixels")
    p.add_argument("--masked-content", choices=MASKED_CONTENT, default="original",
                   help="inpainting: what the masked area starts as")
    p.add_argument("--inpaint-area", choices=INPAINT_AREAS, default="whole",
                   help="inpainting: the whole picture, or only a box around the mask at full size")
    p.add_argument("--inpaint-padding", type=int, default=32, help="inpainting: pixels around the mask's box")
    p.add_argument("--xyz", nargs="+", metavar="AXIS=V1,V2",
                   help="X/Y/Z plot of the first prompt: up to three axes (" + ", ".join(AXES) + "; prompt=A,B "
                   "replaces A by each value) into one labelled grid plus every single image")
    p.add_argument("--from-png", help="re-create an image from the parameters stored in its PNG")
    p.add_argument("--interpolate-seeds", type=int, nargs="+", metavar="SEED", help="seed walk through these seeds")
    p.add_argument("--morph", nargs="+", metavar="PROMPT", help="prompt morph through these prompts")
    p.add_argument("--morph-mode", choices=MORPH_MODES, default="slerp", help="embedding interpolation")
    p.add_argument("--frames", type=int, default=24, help="frames of a walk or morph")
    p.add_argument("--loop", action="store_true", help="walk back to the first keyframe")
    p.add_argument("--ease", choices=EASINGS, default="linear", help="easing between keyframes")
    p.add_argument("--even-spacing", action="store_true",
                   help="second pass placing frames evenly in image change (up to twice the time)")
    p.add_argument("--fps", type=float, default=12, help="animation frame rate")
    p.add_argument("--out", help="output folder (default outputs/<kind>-<time>)")
    p.add_argument("--batch-size", type=int, default=8, help="images denoised together (never changes pixels)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: a GPU if there is one)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="autocast precision of the UNet")
    return p


def read_prompts(args) -> list[str]:
    """Prompts from the positional arguments, --prompt and --prompts-file, in that order."""
    prompts = list(args.prompts) + list(args.prompt)
    if args.prompts_file:
        try:
            text = Path(args.prompts_file).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise LdmError(f"cannot read prompts file {args.prompts_file}: {exc}") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise LdmError(f"prompts file {args.prompts_file} has no prompts")
    return prompts


def main() -> None:
    """Parse flags, check them all, then load the model, generate, write and list the files."""
    # Everything the user typed is checked before torch and diffusers are imported (seconds), so a
    # mistake is answered at once and nothing is loaded for it.
    args = parser().parse_args()
    for name in ("frames", "batch_size", "fps"):
        check(name, getattr(args, name))
    if args.lora:
        args.lora = concept_file(args.lora, LORA_FILE, "LoRA file")
    embeddings = [concept_file(path, EMBEDDING_FILE, "embedding") for path in args.embedding]
    settings = Settings(steps=args.steps, guidance_scale=args.guidance, scheduler=args.scheduler,
                        width=args.width, height=args.height, eta=args.eta, negative_prompt=args.negative_prompt,
                        lora=args.lora, lora_scale=args.lora_scale, strength=args.strength, mask_blur=args.mask_blur,
                        masked_content=args.masked_content, inpaint_area=args.inpaint_area,
                        inpaint_padding=args.inpaint_padding)
    prompts = read_prompts(args)
    kind = ("png" if args.from_png else "morph" if args.morph else "walk" if args.interpolate_seeds else
            "xyz" if args.xyz else "image")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    if kind == "png":
        spec, settings, fields = spec_from_parameters(read_png_parameters(args.from_png))
        if settings.lora is not None:
            if args.lora is None:
                raise LdmError(f"{args.from_png} was made with LoRA {fields['LoRA']}: pass --lora PATH")
            settings = replace(settings, lora=args.lora)
        if settings.strength is not None and args.init_image is None:
            raise LdmError(f"{args.from_png} was made from an init image (Denoising strength "
                           f"{settings.strength:g}): pass --init-image PATH")
        if "Mask hash" in fields and args.mask is None:
            raise LdmError(f"{args.from_png} was inpainted: pass --mask PATH (and --init-image PATH)")
        specs = [spec]
    elif kind in ("image", "xyz"):
        if not prompts:
            raise LdmError("give a prompt (or --prompts-file, --morph or --from-png)")
        specs = image_specs(prompts, args.num_images, seed, args.variation_seed, args.variation_strength)
        axes = parse_axes(args.xyz) if kind == "xyz" else None
    else:
        keyframe_prompts = args.morph or prompts[:1]
        if not keyframe_prompts:
            raise LdmError("a seed walk needs a prompt (--prompt P)")
        if args.init_image or args.strength is not None or args.mask:
            raise LdmError("--init-image and --strength make images, not seed walks or morphs")
    for flag, value in (("--strength", args.strength), ("--mask", args.mask)):
        if value is not None and args.init_image is None:
            raise LdmError(f"{flag} needs --init-image")
    folder = check_model_folder(args.model)
    factor, defaults = folder_defaults(folder)  # read once: it warns when the folder's config lacks guidance
    settings = resolve_settings(settings, factor, defaults)
    if kind == "xyz":  # every cell's values checked before anything is loaded
        for cell in plot_cells(axes, specs[0], settings):
            resolve_settings(cell.settings, factor, defaults)
    init = None
    if args.init_image:
        from ldm.sampling.init_image import load_init_image

        init = load_init_image(args.init_image, settings.width, settings.height)
    mask = None
    if args.mask:
        from ldm.sampling.inpaint import check_mask, load_mask

        mask = load_mask(args.mask, settings.width, settings.height, args.init_image)
        check_mask(mask)
    guidance = defaults.guidance
    name = "image" if kind == "png" else kind
    out = NumberedFolder(prepare_folder(args.out or f"outputs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"))

    quiet_libraries()
    from tqdm import tqdm

    from ldm.render import Interrupted, render_animation, render_images, render_xyz
    from ldm.sampling.concepts import load_embedding
    from ldm.sampling.sampler import load_sampling_model

    model = load_sampling_model(folder, args.device, args.precision, guidance)
    for path in embeddings:
        load_embedding(model.pipe, path)
    bar = tqdm(unit="step", desc=name, file=sys.stderr, delay=0.5)  # delay: no bar for instant failures

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    if kind == "png":
        if fields.get("Model hash") not in (None, model.model_hash):
            print(f"warning: {args.from_png} was made with model hash {fields['Model hash']}, "
                  f"this model is {model.model_hash}", file=sys.stderr)
        if init is not None and fields.get("Init image hash") not in (None, init.digest):
            print(f"warning: {args.from_png} was made from an init image with hash {fields['Init image hash']}, "
                  f"{args.init_image} has {init.digest}", file=sys.stderr)
        if mask is not None and fields.get("Mask hash") not in (None, mask.digest):
            print(f"warning: {args.from_png} was made with a mask with hash {fields['Mask hash']}, "
                  f"{args.mask} has {mask.digest}", file=sys.stderr)
        if fields.get("Precision", model.precision) != model.precision:
            print(f"warning: made at {fields['Precision']} precision, sampling at {model.precision}",
                  file=sys.stderr)
    try:
        if kind in ("png", "image"):
            paths = render_images(model, specs, settings, out, args.batch_size, progress, init, mask)
        elif kind == "xyz":
            paths = render_xyz(model, axes, specs[0], settings, out, args.batch_size, progress, init, mask)
        else:
            paths = render_animation(model, keyframe_prompts, args.interpolate_seeds or [seed], args.frames, settings,
                                     out.subfolder(kind), args.fps, progress, loop=args.loop, ease=args.ease,
                                     morph_mode=args.morph_mode, even=args.even_spacing, batch_size=args.batch_size)
    except Interrupted as stop:
        bar.leave = False  # the one line below is all that stays on the terminal
        bar.close()
        for path in stop.kept:
            print(path)
        print(f"interrupted: kept {len(stop.kept)} of {stop.total} {stop.what}"
              + (f" in {stop.kept[0].parent}" if stop.kept else ""), file=sys.stderr)
        sys.exit(130)
    bar.close()
    if kind == "image":
        for s in specs:
            print(f"seed {s.seed}: {s.prompt!r}", file=sys.stderr)
    for path in paths:
        print(path)


if __name__ == "__main__":
    run(main)
