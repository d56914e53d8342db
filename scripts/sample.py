"""Generate images, seed walks and prompt morphs: python scripts/sample.py "a red apple" """

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ldm.cli import Parser, add_request_flags, flag_values, quiet_libraries, run
from ldm.config import PRECISIONS
from ldm.errors import LdmError
from ldm.folders import check_model_folder
from ldm.outputs import NumberedFolder, prepare_folder
from ldm.sampling.concepts import EMBEDDING_FILE, LORA_FILE, concept_file
from ldm.sampling.easing import EASINGS
from ldm.sampling.limits import check
from ldm.sampling.parameters import read_png_parameters, spec_from_parameters
from ldm.sampling.requests import DEFAULT_MODEL, Settings, folder_defaults, image_specs, resolve_settings
from ldm.sampling.schema import SETTINGS, part
from ldm.sampling.xyz import AXES, parse_axes, plot_cells


def parser() -> argparse.ArgumentParser:
    """The sample.py flags."""
    p = Parser(description="Text to image, seed walks and prompt morphs with a diffusers pipeline folder.")
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompt(s) to generate")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable; same as positional)")
    p.add_argument("--prompts-file", help="a text file: one prompt per line")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    add_request_flags(p)  # --steps, --seed, --strength, --mask-blur, ...: ldm.sampling.schema's flags
    p.add_argument("--num-images", type=int, default=1, help="images per prompt")
    p.add_argument("--embedding", action="append", default=[], metavar="PATH",
                   help="a textual-inversion embedding (learned_embeds.safetensors, or scripts/teach.py's folder) "
                   "whose word prompts may then use (repeatable); --lora takes a teach folder too")
    p.add_argument("--init-image", help="image to image: start from this picture (scaled and centre-cropped to "
                   "the output size)")
    p.add_argument("--mask", help="inpainting: repaint only this mask's white area of the init image (same size as "
                   "the init image; transparent = keep)")
    p.add_argument("--xyz", nargs="+", metavar="AXIS=V1,V2",
                   help="X/Y/Z plot of the first prompt: up to three axes (" + ", ".join(AXES) + "; prompt=A,B "
                   "replaces A by each value) into one labelled grid plus every single image")
    p.add_argument("--from-png", help="re-create an image from the parameters stored in its PNG")
    p.add_argument("--interpolate-seeds", type=int, nargs="+", metavar="SEED", help="seed walk through these seeds")
    p.add_argument("--morph", nargs="+", metavar="PROMPT", help="prompt morph through these prompts")
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


def png_request(args) -> tuple:
    """(spec, settings, raw fields) of the PNG named by --from-png, refused when it needs a flag not given."""
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
    return spec, settings, fields


def walk_prompts(args, prompts: list[str]) -> list[str]:
    """A seed walk's prompt or a morph's prompts; a walk or morph takes no init image."""
    keyframe_prompts = args.morph or prompts[:1]
    if not keyframe_prompts:
        raise LdmError("a seed walk needs a prompt (--prompt P)")
    if args.init_image or args.strength is not None or args.mask:
        raise LdmError("--init-image and --strength make images, not seed walks or morphs")
    return keyframe_prompts


def load_pictures(args, settings) -> tuple:
    """(--init-image, --mask) loaded at the output size, each None when not given."""
    init = mask = None
    if args.init_image:
        from ldm.sampling.init_image import load_init_image

        init = load_init_image(args.init_image, settings.width, settings.height)
    if args.mask:
        from ldm.sampling.inpaint import check_mask, load_mask

        mask = load_mask(args.mask, settings.width, settings.height, args.init_image)
        check_mask(mask)
    return init, mask


def warn_about_differences(args, fields: dict, model, init, mask) -> None:
    """Warn where a --from-png re-creation differs from what made the PNG: model, init image, mask, precision."""
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
        print(f"warning: made at {fields['Precision']} precision, sampling at {model.precision}", file=sys.stderr)


def report_interrupted(stop) -> None:
    """After Ctrl-C: the files kept, and one line saying how many of how many, then exit 130."""
    for path in stop.kept:
        print(path)
    print(f"interrupted: kept {len(stop.kept)} of {stop.total} {stop.what}"
          + (f" in {stop.kept[0].parent}" if stop.kept else ""), file=sys.stderr)
    sys.exit(130)


@dataclass
class Run:
    """A checked run: what kind, its images or keyframes, its resolved settings and inputs, and where it goes."""

    kind: str  # image, xyz, png (--from-png), walk or morph
    settings: Settings
    folder: Path  # the model
    guidance: float  # the model's default guidance
    out: NumberedFolder
    seed: int
    specs: list = field(default_factory=list)
    fields: dict = field(default_factory=dict)  # --from-png's raw fields
    axes: list | None = None  # --xyz's
    keyframe_prompts: list[str] | None = None  # a walk's or morph's
    init: object = None  # --init-image, loaded
    mask: object = None  # --mask, loaded
    embeddings: list[str] = field(default_factory=list)  # --embedding's files


def checked_run(args) -> Run:
    """Every flag checked and every input read, before torch and diffusers are imported (seconds), so that a
    mistake is answered at once and nothing is loaded for it."""
    for name in ("frames", "batch_size", "fps"):
        check(name, getattr(args, name))
    if args.lora:  # a file, or the folder scripts/teach.py wrote
        args.lora = concept_file(args.lora, LORA_FILE, "LoRA file")
    embeddings = [concept_file(path, EMBEDDING_FILE, "embedding") for path in args.embedding]
    settings = Settings(**flag_values(args, part(SETTINGS)))
    prompts = read_prompts(args)
    kind = ("png" if args.from_png else "morph" if args.morph else "walk" if args.interpolate_seeds else
            "xyz" if args.xyz else "image")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    specs, fields, axes, keyframe_prompts = [], {}, None, None
    if kind == "png":
        spec, settings, fields = png_request(args)
        specs = [spec]
    elif kind in ("image", "xyz"):
        if not prompts:
            raise LdmError("give a prompt (or --prompts-file, --morph or --from-png)")
        specs = image_specs(prompts, args.num_images, seed, args.variation_seed, args.variation_strength)
        axes = parse_axes(args.xyz) if kind == "xyz" else None
    else:
        keyframe_prompts = walk_prompts(args, prompts)
    for flag, value in (("--strength", args.strength), ("--mask", args.mask)):
        if value is not None and args.init_image is None:
            raise LdmError(f"{flag} needs --init-image")
    folder = check_model_folder(args.model)
    factor, defaults = folder_defaults(folder)  # read once: it warns when the folder's config lacks guidance
    if kind == "png" and settings.decoder == "tiny" and not defaults.tiny_decoder:
        raise LdmError(f"{args.from_png} was decoded by a tiny VAE (Decoder: tiny), which {folder} does not ship: "
                       f"pass --model with the folder that made it (Model: {fields.get('Model', 'unknown')})")
    settings = resolve_settings(settings, factor, defaults)
    if kind == "xyz":  # every cell's values checked before anything is loaded
        for cell in plot_cells(axes, specs[0], settings):
            resolve_settings(cell.settings, factor, defaults)
    init, mask = load_pictures(args, settings)
    name = "image" if kind == "png" else kind
    out = NumberedFolder(prepare_folder(args.out or f"outputs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"))
    return Run(kind, settings, folder, defaults.guidance, out, seed, specs, fields, axes, keyframe_prompts, init,
               mask, embeddings)


def main() -> None:
    """Parse flags, check them all, then load the model, generate, write and list the files."""
    args = parser().parse_args()
    r = checked_run(args)
    name = "image" if r.kind == "png" else r.kind

    quiet_libraries()
    from tqdm import tqdm

    from ldm.render import Interrupted, render_animation, render_images, render_xyz
    from ldm.sampling.concepts import load_embedding
    from ldm.sampling.sampler import load_sampling_model

    model = load_sampling_model(r.folder, args.device, args.precision, r.guidance)
    for path in r.embeddings:
        load_embedding(model.pipe, path)
    bar = tqdm(unit="step", desc=name, file=sys.stderr, delay=0.5)  # delay: no bar for instant failures

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    if r.kind == "png":
        warn_about_differences(args, r.fields, model, r.init, r.mask)
    try:
        if r.kind in ("png", "image"):
            paths = render_images(model, r.specs, r.settings, r.out, args.batch_size, progress, r.init, r.mask)
        elif r.kind == "xyz":
            paths = render_xyz(model, r.axes, r.specs[0], r.settings, r.out, args.batch_size, progress, r.init, r.mask)
        else:
            paths = render_animation(model, r.keyframe_prompts, args.interpolate_seeds or [r.seed], args.frames,
                                     r.settings, r.out.subfolder(r.kind), args.fps, progress, loop=args.loop,
                                     ease=args.ease, morph_mode=args.morph_mode, even=args.even_spacing,
                                     batch_size=args.batch_size)
    except Interrupted as stop:
        bar.leave = False  # the one line below is all that stays on the terminal
        bar.close()
        report_interrupted(stop)
    bar.close()
    if r.kind == "image":
        for s in r.specs:
            print(f"seed {s.seed}: {s.prompt!r}", file=sys.stderr)
    for path in paths:
        print(path)


if __name__ == "__main__":
    run(main)
