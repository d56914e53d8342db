"""Quality measures for a text-to-image model on its dataset: fidelity, generalisation, diversity, smoothness.

Images are compared in ldm.metrics' feature space (16x16 area-downsampled RGB). A generated image "is"
the dataset image nearest to it there; fidelity asks whether that is the caption's own image. Dataset
images drawn identically under two captions (the emoji font's "flag: France" and "flag: St. Martin") are
twins: no image can be nearer to one than to the other, so either counts as the other.

Every dataset's images and captions support the VAE, fidelity, diversity and walk measures; generalisation and
general prompts need the tables a dataset declares (ldm.data.offers, carried by Reference.offer), and a measure
a dataset cannot support is named with its reason instead of measured.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from ldm.data.augment import Layout
from ldm.data.offers import NOTHING, EvaluationOffer
from ldm.metrics import (
    downsample_psnr,
    heldout_psnr,
    image_features,
    mean_pairwise_distance,
    nearest,
    psnr,
    redrawn_images,
    round_trip_psnr,
    twin_groups,
)
from ldm.sampling.interpolate import max_jump_ratio, max_step_share
from ldm.sampling.prompt_syntax import escape
from ldm.sampling.requests import ImageSpec, Settings, seeded_specs
from ldm.sampling.sampler import SamplingModel
from ldm.sampling.walks import MORPH_MODE, render_walk

# (how, layout, background): held-out images redrawn where and on what a dataset's own layout rarely puts them
# (the emoji dataset draws each at 90% of the frame on white); an opaque image moves as a rectangle, so on a
# dataset without transparency the background redraws repeat the plain round trip
LAYOUT_CHECKS = (
    ("at 100% of the frame", Layout(1.0), "white"),
    ("at 75% of the frame", Layout(0.75), "white"),
    ("at 50% of the frame", Layout(0.5), "white"),
    ("on black", Layout(0.9), "black"),
    ("on grey", Layout(0.9), "grey"),
    ("on random colours", Layout(0.9), "colour"),
    ("on gradients", Layout(0.9), "gradient"),
)


@dataclass
class Reference:
    """Every dataset image's features and caption, the space generated images are judged in, and what else the
    dataset offers its evaluation."""

    features: torch.Tensor
    captions: list[str]
    trained: int | None = None  # the first `trained` entries are the model's training images (None: all)
    twin_of: torch.Tensor | None = None  # per image, the lowest index of its twins (itself when it has none)
    offer: EvaluationOffer = field(default=NOTHING)

    def __post_init__(self):
        if self.twin_of is None:
            self.twin_of = twin_groups(self.features)

    @classmethod
    def from_datasets(cls, datasets: Sequence, offer: EvaluationOffer = NOTHING, batch: int = 256) -> Reference:
        """Features of all images of the given datasets, the first being the training set (then e.g. held-out),
        with what the dataset declares (ldm.data.offers.evaluation_offer)."""
        feats, captions = [], []
        for ds in datasets:
            for start in range(0, len(ds), batch):
                idx = range(start, min(start + batch, len(ds)))
                pixels = torch.stack([ds.load(i) for i in idx]) / 2 + 0.5
                feats.append(image_features(pixels))
                captions += [ds.captions[i] for i in idx]
        return cls(torch.cat(feats), captions, len(datasets[0]), offer=offer)

    def twins(self, i: int) -> list[int]:
        """Image i and every dataset image drawn identically to it."""
        return torch.nonzero(self.twin_of == self.twin_of[i]).flatten().tolist()

    def family_share(self, keywords: Sequence[str]) -> float:
        """Fraction of dataset images whose caption names the family (the chance baseline)."""
        return sum(_in_family(c, keywords) for c in self.captions) / len(self.captions)

    def landing(self, images: torch.Tensor) -> torch.Tensor:
        """The dataset image each image is nearest to, twins as one (the group's lowest index)."""
        return self.twin_of[nearest(image_features(images), self.features, 1)[:, 0]]

    def names_families(self, table: Mapping[str, Sequence[str]]) -> bool:
        """Whether any caption names a family of the table's prompts (else measures on them cannot apply)."""
        return any(self.family_share(keywords) > 0 for keywords in table.values())

    def lacks(self, table: Mapping[str, Sequence[str]], what: str) -> str | None:
        """Why measures on the offer's `table` (its `what`) cannot apply here, or None when they can."""
        if not table:
            return f"the dataset declares no {what}"
        if not self.names_families(table):
            return f"no caption names a family its {what} ask for"
        return None


def _in_family(caption: str, keywords: Sequence[str]) -> bool:
    caption = caption.lower()
    return any(k in caption for k in keywords)


def caption_sample(reference: Reference, count: int, seed: int = 0) -> list[int]:
    """A fixed sample of training images whose caption is unique (so 'its own image' is well defined)."""
    counts: dict[str, int] = {}
    for c in reference.captions:
        counts[c] = counts.get(c, 0) + 1
    trained = reference.captions[:reference.trained]  # held-out images were never seen with their caption
    unique = [i for i, c in enumerate(trained) if counts[c] == 1 and c]
    return sorted(random.Random(seed).sample(unique, min(count, len(unique))))


def topk_hits(features: torch.Tensor, reference: Reference, targets: Sequence[int]) -> tuple[float, float]:
    """Top-1 and top-5 rate at which each image's nearest dataset images include its target (or a twin)."""
    idx = reference.twin_of[nearest(features, reference.features, 5)]
    target = reference.twin_of[torch.tensor(list(targets), dtype=torch.long)][:, None]
    return float((idx[:, :1] == target).any(1).float().mean()), float((idx == target).any(1).float().mean())


def prompt_fidelity(model: SamplingModel, reference: Reference, indices: Sequence[int], settings: Settings,
                    seed: int = 0, batch_size: int = 16, progress=None) -> tuple[float, float]:
    """Top-1 and top-5 nearest-neighbour agreement of images generated from dataset captions."""
    # a caption is asked for literally: its brackets are text, not emphasis ("A button (blood type)")
    specs = seeded_specs([escape(reference.captions[i]) for i in indices], seed)
    images = model.generate(specs, settings, batch_size, progress)
    return topk_hits(image_features(images), reference, indices)


def generalisation(model: SamplingModel, reference: Reference, settings: Settings,
                   paraphrases: Mapping[str, tuple[str, ...]], seed: int = 0,
                   batch_size: int = 16) -> tuple[float, float, list[tuple[str, str, bool]]]:
    """Share of paraphrase prompts whose image's nearest neighbour is in the right family, chance, details."""
    prompts = list(paraphrases)
    images = model.generate(seeded_specs(prompts, seed), settings, batch_size)
    idx = nearest(image_features(images), reference.features, 1)[:, 0].tolist()
    details = [(p, reference.captions[i], any(_in_family(reference.captions[t], paraphrases[p])
                                              for t in reference.twins(i)))
               for p, i in zip(prompts, idx, strict=True)]
    chance = sum(reference.family_share(k) for k in paraphrases.values()) / len(paraphrases)
    return sum(ok for *_, ok in details) / len(details), chance, details


def landings(model: SamplingModel, reference: Reference, prompts: Sequence[str], settings: Settings, seed: int = 0,
             batch_size: int = 16) -> torch.Tensor:
    """The dataset image (twins as one: the group's lowest index) each prompt's image is nearest to; a student's
    landings against its teacher's from the same seeds say how well it copies them, apart from the teacher's own
    quality."""
    images = model.generate(seeded_specs(prompts, seed), settings, batch_size)
    return reference.landing(images)


def agreement_table(student: SamplingModel, teacher: SamplingModel, reference: Reference,
                    steps: Sequence[int | None], captions: int = 200) -> str:
    """How often the student's image lands where its teacher's deterministic solve (DDIM over the student's
    skeleton, at the student's guidance) from the same seed does, on the fidelity captions and the paraphrases."""
    skeleton = int(student.pipe.scheduler.config.get("original_inference_steps") or 50)
    prompt_sets = {"training captions": [escape(reference.captions[i]) for i in caption_sample(reference, captions)]}
    if reference.lacks(reference.offer.paraphrases, "paraphrases") is None:
        prompt_sets["paraphrases"] = list(reference.offer.paraphrases)
    prompt_sets = {name: prompts for name, prompts in prompt_sets.items() if prompts}
    if not prompt_sets:
        return "agreement with the teacher: not measured (no training caption names a single image)"
    lines = [f"agreement with {teacher.name}'s DDIM {skeleton}-step solve from the same seed (share landing on the "
             "same dataset image):", "| student | " + " | ".join(prompt_sets) + " |",
             "|---" * (len(prompt_sets) + 1) + "|"]
    solves = {}  # (guidance, prompt set) -> the teacher's landings, made once for every step count
    for n in steps:
        s = student.resolve(Settings(steps=n))
        t = teacher.resolve(Settings(steps=skeleton, scheduler="ddim", guidance_scale=s.guidance_scale))
        shares = []
        for name, prompts in prompt_sets.items():
            if (t.guidance_scale, name) not in solves:
                solves[t.guidance_scale, name] = landings(teacher, reference, prompts, t)
            shares.append(float((landings(student, reference, prompts, s) == solves[t.guidance_scale, name])
                                .float().mean()))
        lines.append(f"| {s.scheduler}, {s.steps} step{'s' * (s.steps > 1)} | "
                     + " | ".join(f"{x:.3f}" for x in shares) + " |")
    return "\n".join(lines)


@dataclass
class Variety:
    """How a model answers general prompts ("a fruit"): per prompt, the distinct dataset images (twins as one)
    that the nearest neighbours of its seeds hit, and the share of those neighbours in the prompt's family;
    beside them the most distinct hits the family allows and the chance share."""

    distinct: float
    most: float
    in_family: float
    chance: float


def general_variety(model: SamplingModel, reference: Reference, settings: Settings,
                    prompts: Mapping[str, tuple[str, ...]], seeds: int = 8, batch_size: int = 16) -> Variety:
    """Means over the general prompts of the distinct dataset images (twins as one) their `seeds` images land on,
    and of the share in family."""
    specs = [ImageSpec(p, s) for p in prompts for s in range(seeds)]
    images = model.generate(specs, settings, batch_size)
    hits = reference.landing(images).view(len(prompts), seeds)
    distinct, in_family, most, chance = [], [], [], []
    for row, keywords in zip(hits.tolist(), prompts.values(), strict=True):
        distinct.append(len(set(row)))
        in_family.append(sum(any(_in_family(reference.captions[t], keywords) for t in reference.twins(i))
                             for i in row) / seeds)
        members = {int(reference.twin_of[i]) for i, c in enumerate(reference.captions) if _in_family(c, keywords)}
        most.append(min(seeds, len(members)))
        chance.append(reference.family_share(keywords))
    n = len(prompts)
    return Variety(sum(distinct) / n, sum(most) / n, sum(in_family) / n, sum(chance) / n)


def diversity(model: SamplingModel, prompt: str, settings: Settings, seeds: int = 8) -> float:
    """Mean pairwise feature distance between one prompt's images over seeds (0: one memorised image)."""
    images = model.generate([ImageSpec(prompt, s) for s in range(seeds)], settings, seeds)
    return mean_pairwise_distance(image_features(images))


MORPH_BASELINES = {"slerp": "embeddings slerped", "predictions": "predictions blended"}


def walk_frames(model: SamplingModel, prompts: Sequence[str], seeds: Sequence[int], frames: int,
                settings: Settings, even: bool = False, morph_mode: str = MORPH_MODE) -> torch.Tensor:
    """The frames of a seed walk or prompt morph, as sample.py renders them."""
    return render_walk(model, prompts, seeds, frames, settings, even=even, morph_mode=morph_mode)[1]


def smoothness_rows(model: SamplingModel, prompts: Sequence[str], frames: int, settings: Settings) -> list[Row]:
    """How evenly a seed walk and a prompt morph (when there are two prompts) change the image frame to frame."""
    walk = walk_frames(model, prompts[:1], [1, 2, 3], frames, settings)
    walk_even = walk_frames(model, prompts[:1], [1, 2, 3], frames, settings, even=True)
    rows = [Row("seed walk max/median frame change", max_jump_ratio(walk_even), max_jump_ratio(walk),
                "uniform spacing", "small")]
    if len(prompts) < 2:
        return rows
    morph_prompts = [prompts[0], prompts[min(2, len(prompts) - 1)]]
    morph = walk_frames(model, morph_prompts, [1], frames, settings)
    morph_even = walk_frames(model, morph_prompts, [1], frames, settings, even=True)
    # beside the model's own morph mode, the other kind: predictions blended, or embeddings slerped
    other = "slerp" if model.morph_mode("auto") == "predictions" else "predictions"
    other_even = walk_frames(model, morph_prompts, [1], frames, settings, even=True, morph_mode=other)
    # what a user sees: a morph that snaps, or flickers between its prompts, has a step about as large as the whole
    return rows + [Row("prompt morph max/median frame change", max_jump_ratio(morph_even), max_jump_ratio(morph),
                       "uniform spacing", "small"),
                   Row("prompt morph largest frame change, share of the whole", max_step_share(morph_even),
                       max_step_share(other_even), MORPH_BASELINES[other], f"small (even: {1 / (frames - 1):.3f})")]


def probe_prompts(reference: Reference, count: int = 5) -> tuple[str, ...]:
    """Prompts for diversity and walks: those the dataset declares where its captions have them all, else its first
    distinct captions (the empty prompt when it has none).

    A model is probed with prompts it has learnt (the procedural shapes and your own images with their own
    captions); the walk uses the first prompt and the morph runs from the first to the third.
    """
    declared = reference.offer.probe_prompts
    if declared and all(reference.family_share((p,)) > 0 for p in declared):
        return declared
    captions = [c for c in dict.fromkeys(reference.captions[:reference.trained]) if c]
    return tuple(escape(c) for c in captions[:count]) or ("",)


@dataclass
class Row:
    """One line of the quality table."""

    measure: str
    ours: float
    baseline: float | None
    baseline_name: str
    target: str = ""
    fmt: str = "{:.3f}"

    def cells(self) -> list[str]:
        """The row as table cells."""
        base = "-" if self.baseline is None else self.fmt.format(self.baseline)
        return [self.measure, self.fmt.format(self.ours), f"{base} ({self.baseline_name})", self.target]


@dataclass
class Evaluation:
    """The measured rows and, for each measure this dataset cannot support, why it was left out."""

    rows: list[Row]
    not_measured: list[str]


def evaluate_model(model: SamplingModel, reference: Reference, heldout, settings: Settings, captions: int = 200,
                   frames: int = 16, progress=None) -> Evaluation:
    """Every measure of the model card that applies to the dataset, each beside a simple baseline.

    The VAE measures need held-out images; prompt fidelity needs training captions that name one image each
    (the emoji; not the procedural shapes, whose 54 captions repeat); generalisation and general prompts need
    the tables the dataset declares (reference.offer) and captions naming their families.
    """
    rows, skipped = [], []
    offer = reference.offer
    if len(heldout):
        rows += vae_rows(model, heldout)
    else:
        skipped.append("the VAE's held-out PSNR (the dataset has no held-out images)")
    indices = caption_sample(reference, captions)
    n = len(reference.captions)
    if indices:
        top1, top5 = prompt_fidelity(model, reference, indices, settings, progress=progress)
        rows.append(Row(f"prompt fidelity top-1 ({len(indices)} captions)", top1, 1 / n, "chance", ">= 0.95"))
        rows.append(Row("prompt fidelity top-5", top5, 5 / n, "chance"))
    else:
        skipped.append("prompt fidelity (no training caption names a single image)")
    why = reference.lacks(offer.paraphrases, "paraphrases")
    if why is None:
        accuracy, chance, _ = generalisation(model, reference, settings, offer.paraphrases)
        rows.append(Row(f"generalisation ({len(offer.paraphrases)} paraphrases)", accuracy, chance, "chance",
                        ">= 0.80"))
    else:
        skipped.append(f"generalisation ({why})")
    why = reference.lacks(offer.general_prompts, "general prompts")
    if why is None:
        variety = general_variety(model, reference, settings, offer.general_prompts)
        rows.append(Row(f"general prompts: distinct {offer.noun} of 8 seeds ({len(offer.general_prompts)} prompts)",
                        variety.distinct, variety.most, "most the families allow", ">= 5", "{:.2f}"))
        rows.append(Row("general prompts: share of those in the prompt's family", variety.in_family,
                        variety.chance, "chance"))
    else:
        skipped.append(f"general prompts ({why})")
    prompts = probe_prompts(reference)
    if settings.decoder == "tiny":
        vae_own = next((r.ours for r in rows if r.measure == "VAE held-out PSNR (dB)"), None)
        rows.append(Row("tiny decoder's images against the VAE's, same latents (dB)",
                        tiny_decoder_psnr(model, prompts, settings), vae_own, "the VAE's own error, held-out",
                        fmt="{:.2f}"))
    spread = sum(diversity(model, p, settings) for p in prompts) / len(prompts)
    sample = reference.features[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:64]]
    rows.append(Row("diversity over 8 seeds (mean pairwise distance)", spread, mean_pairwise_distance(sample),
                    f"{len(sample)} random dataset images", "> 0"))
    rows += smoothness_rows(model, prompts, frames, settings)
    if len(prompts) < 2:
        skipped.append("prompt morph (the dataset has fewer than two captions)")
    return Evaluation(rows, skipped)


def tiny_decoder_psnr(model: SamplingModel, prompts: Sequence[str], settings: Settings, seeds: int = 8) -> float:
    """Mean PSNR (dB) of the model's own images as its tiny VAE decodes them against the same latents decoded by
    its VAE (8 seeds a prompt): how far the fast decoder's pixels are from the ones it copies."""
    specs = [ImageSpec(p, seed) for p in prompts for seed in range(seeds)]
    tiny = model.generate(specs, replace(settings, decoder="tiny"))
    full = model.generate(specs, replace(settings, decoder="full"))
    return float(psnr(tiny * 2 - 1, full * 2 - 1).mean())


def vae_rows(model: SamplingModel, heldout) -> list[Row]:
    """The VAE's round trip of the held-out images, as they are and redrawn in each of LAYOUT_CHECKS."""
    vae, baseline = model.vae, f"{model.factor}x area down/up-sampling"
    pixels = torch.stack([heldout.load(i) for i in range(len(heldout))])
    rows = [Row("VAE held-out PSNR (dB)", heldout_psnr(vae, heldout, model.device),
                downsample_psnr(pixels, model.factor), baseline, ">= 32", "{:.2f}")]
    for how, layout, background in LAYOUT_CHECKS:
        redrawn = redrawn_images(heldout, layout, background)
        rows.append(Row(f"VAE held-out PSNR, redrawn {how} (dB)", round_trip_psnr(vae, redrawn, model.device),
                        downsample_psnr(redrawn, model.factor), baseline, ">= 30", "{:.2f}"))
    return rows


def format_table(rows: Sequence[Row], not_measured: Sequence[str] = ()) -> str:
    """A Markdown table of the measures, then one line naming those left out (if any) and why."""
    lines = ["| measure | ours | baseline | target |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    if not_measured:
        lines += ["", f"Not measured on this dataset: {'; '.join(not_measured)}."]
    return "\n".join(lines)


def format_comparison(columns: Sequence[tuple[str, Evaluation]]) -> str:
    """Several evaluations side by side (a student at 1, 2 and 4 steps beside its teacher), one column each."""
    measures = list(dict.fromkeys(row.measure for _, ev in columns for row in ev.rows))
    lines = ["| measure | " + " | ".join(name for name, _ in columns) + " | baseline | target |",
             "|---" * (len(columns) + 3) + "|"]
    for measure in measures:
        found = [next((r for r in ev.rows if r.measure == measure), None) for _, ev in columns]
        first = next(r for r in found if r is not None)
        cells = ["-" if r is None else r.fmt.format(r.ours) for r in found]
        base = "-" if first.baseline is None else first.fmt.format(first.baseline)
        lines.append(f"| {measure} | " + " | ".join(cells) + f" | {base} ({first.baseline_name}) | {first.target} |")
    skipped = list(dict.fromkeys(reason for _, ev in columns for reason in ev.not_measured))
    if skipped:
        lines += ["", f"Not measured on this dataset: {'; '.join(skipped)}."]
    return "\n".join(lines)


CARD_BEGIN, CARD_END = "<!-- evaluate:begin -->", "<!-- evaluate:end -->"


def update_card(card: str, table: str) -> str:
    """The card text with the table placed between the evaluate markers (appended when there are none)."""
    block = f"{CARD_BEGIN}\n{table}\n{CARD_END}"
    if CARD_BEGIN in card and CARD_END in card:
        head, rest = card.split(CARD_BEGIN, 1)
        return head + block + rest.split(CARD_END, 1)[1]
    return card.rstrip("\n") + "\n\n" + block + "\n"
