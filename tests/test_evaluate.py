"""The evaluation procedure: nearest-neighbour fidelity, caption sampling, family matching, the card table."""

import pytest
import torch

from ldm.evaluate import Reference, caption_sample, topk_hits
from ldm.metrics import image_features


def _reference() -> tuple[Reference, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(10, 3, 32, 32, generator=g)
    return Reference(image_features(images), [f"thing {k}" for k in range(9)] + ["thing 0"]), images


def test_own_images_are_top1_and_shuffled_ones_are_not():
    ref, images = _reference()
    assert topk_hits(image_features(images[:5]), ref, [0, 1, 2, 3, 4]) == (1.0, 1.0)
    top1, _ = topk_hits(image_features(images[:5]), ref, [1, 2, 3, 4, 0])
    assert top1 == 0.0


def test_pixel_identical_images_count_as_each_other():
    # "flag: France" and "flag: St. Martin" are one picture in the font: neither can win a nearest-neighbour
    # search against the other, so a generated French flag must count for either caption
    g = torch.Generator().manual_seed(1)
    images = torch.rand(5, 3, 32, 32, generator=g)
    images[3] = images[1]
    images[4] = images[2] + 0.3 / 255  # a rendering-noise difference is still the same picture
    ref = Reference(image_features(images), ["a", "flag: France", "c", "flag: St. Martin", "e"])
    assert ref.twin_of.tolist() == [0, 1, 2, 1, 2]
    assert ref.twins(3) == [1, 3] and ref.twins(0) == [0]
    assert topk_hits(image_features(images[[1, 3, 4]]), ref, [3, 1, 2]) == (1.0, 1.0)
    assert topk_hits(image_features(images[[0]]), ref, [3])[0] == 0.0


def test_caption_sample_skips_duplicate_captions_and_is_fixed():
    ref, _ = _reference()
    sample = caption_sample(ref, 20)
    assert 0 not in sample and 9 not in sample and len(sample) == 8
    assert caption_sample(ref, 4, seed=3) == caption_sample(ref, 4, seed=3)


def test_caption_sample_draws_only_training_images():
    ref, _ = _reference()
    ref.trained = 6  # entries 6.. stand for held-out images
    assert caption_sample(ref, 20) == [1, 2, 3, 4, 5]


def test_family_share():
    ref = Reference(torch.zeros(4, 768), ["hamburger", "cat face", "grinning cat", "fire"])
    assert ref.family_share(("cat",)) == 0.5


def test_card_table_is_replaced_between_markers():
    from ldm.evaluate import Row, format_table, update_card

    table = format_table([Row("VAE PSNR", 31.5, 24.0, "down/up", ">= 32", "{:.2f}")])
    assert "| VAE PSNR | 31.50 | 24.00 (down/up) | >= 32 |" in table
    card = update_card("# model\n\nintro\n", table)
    again = update_card(card.replace("31.50", "99.00") + "\nfooter\n", table)
    assert again.count("evaluate:begin") == 1 and "31.50" in again and "99.00" not in again
    assert again.endswith("footer\n")


class _FixedImages:
    """Stands in for a SamplingModel: returns preset images, one per prompt, whatever the prompt."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def generate(self, specs, settings, batch_size=16, progress=None):
        return self.images[: len(specs)]


def test_generalisation_accepts_a_twin_of_the_right_family():
    from ldm.evaluate import generalisation
    from ldm.sampling.requests import Settings

    g = torch.Generator().manual_seed(2)
    images = torch.rand(3, 3, 32, 32, generator=g)
    images[1] = images[0] + 0.2 / 255  # the same flag under the territory's caption, nearest to image 0
    ref = Reference(image_features(images), ["flag: U.S. Outlying Islands", "flag: United States", "cat"])
    paraphrases = {"american flag": ("flag: united states",), "kitty": ("cat",)}
    model = _FixedImages(images[[0, 0]])  # both prompts draw the flag: right for one, wrong for the other
    accuracy, _, details = generalisation(model, ref, Settings(), paraphrases)
    assert accuracy == 0.5
    territory = "flag: U.S. Outlying Islands"
    assert details == [("american flag", territory, True), ("kitty", territory, False)]


def test_probe_prompts_come_from_the_dataset_when_it_declares_none():
    from ldm.data.emoji_eval import DIVERSITY_PROMPTS, EMOJI_OFFER
    from ldm.evaluate import probe_prompts

    shapes = ["a red circle on a white background", "a red square on a white background",
              "a red circle on a white background", "a blue circle on a black background", "held-out caption"]
    reference = Reference(torch.rand(5, 768), shapes, trained=4)
    assert probe_prompts(reference) == (shapes[0], shapes[1], shapes[3])
    emoji = list(DIVERSITY_PROMPTS) + ["grinning face with big eyes"]
    assert probe_prompts(Reference(torch.rand(6, 768), emoji, offer=EMOJI_OFFER)) == DIVERSITY_PROMPTS
    # emoji captions in a dataset that declares nothing are its own captions, not the emoji set's probes
    assert probe_prompts(Reference(torch.rand(6, 768), emoji))[:2] == ("grinning face", "red apple")
    assert probe_prompts(Reference(torch.rand(2, 768), ["", ""])) == ("",)  # no captions: probed unprompted


def test_a_measure_on_a_table_says_why_it_cannot_apply():
    from ldm.data.emoji_eval import EMOJI_OFFER

    reference = Reference(torch.zeros(3, 768), ["my cat", "my dog", "my garden"], offer=EMOJI_OFFER)
    assert Reference(torch.zeros(1, 768), ["x"]).lacks({}, "paraphrases") == "the dataset declares no paraphrases"
    assert reference.lacks(EMOJI_OFFER.paraphrases, "paraphrases") is None  # "kitty cat" asks for "cat"
    assert reference.lacks({"a fruit": ("apple",)}, "general prompts") == (
        "no caption names a family its general prompts ask for")


@pytest.mark.slow  # imports the libraries in a fresh subprocess
def test_the_evaluation_and_a_unet_run_import_no_dataset_module():
    # the evaluation and training read what a dataset declares (ldm.data.offers); the emoji tables load only
    # for a folder that names them
    import subprocess
    import sys

    code = ("import sys, ldm.evaluate, ldm.train.unet, ldm.train.targets, ldm.train.solve_prompts; "
            "print(sorted(m for m in sys.modules if m.startswith('ldm.data.emoji')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert proc.stdout.strip() == "[]"


def test_comparison_puts_each_evaluation_in_a_column():
    from ldm.evaluate import Evaluation, Row, format_comparison

    one = Evaluation([Row("fidelity", 0.5, 0.01, "chance", ">= 0.9"), Row("walk", 1.5, 2.0, "uniform", "small")], [])
    two = Evaluation([Row("fidelity", 0.75, 0.01, "chance", ">= 0.9")], ["walk (one caption)"])
    lines = format_comparison([("student (lcm, 2 steps)", one), ("teacher (euler-a, 14 steps)", two)]).splitlines()
    assert lines[0] == "| measure | student (lcm, 2 steps) | teacher (euler-a, 14 steps) | baseline | target |"
    assert lines[2] == "| fidelity | 0.500 | 0.750 | 0.010 (chance) | >= 0.9 |"
    assert lines[3] == "| walk | 1.500 | - | 2.000 (uniform) | small |"
    assert lines[-1] == "Not measured on this dataset: walk (one caption)."


def test_general_variety_counts_distinct_twins_and_family_hits():
    from ldm.evaluate import general_variety
    from ldm.sampling.requests import Settings

    g = torch.Generator().manual_seed(3)
    images = torch.rand(5, 3, 32, 32, generator=g)
    images[4] = images[3] + 0.2 / 255  # twins: one picture under two captions
    ref = Reference(image_features(images), ["red apple", "pear", "cat face", "banana", "flag: France"])
    prompts = {"a fruit": ("apple", "pear", "banana"), "an animal face": ("cat face",)}
    # "a fruit" lands on apple, pear, the banana and its twin (one picture), and the cat; "an animal face"
    # lands on the cat every time
    model = _FixedImages(images[[0, 1, 3, 4, 2, 2, 2, 2, 2, 2]])
    variety = general_variety(model, ref, Settings(), prompts, seeds=5)
    assert variety.distinct == (4 + 1) / 2
    assert variety.in_family == (4 / 5 + 5 / 5) / 2
    assert variety.most == (3 + 1) / 2  # the fruit family has 3 distinct pictures, the animal faces 1
    assert variety.chance == (3 / 5 + 1 / 5) / 2


class _Stub(_FixedImages):
    """A stand-in model for the agreement table: preset images, a student's skeleton, the settings it was asked."""

    def __init__(self, images: torch.Tensor, name: str):
        from types import SimpleNamespace

        super().__init__(images)
        self.name, self.asked = name, []
        self.pipe = SimpleNamespace(scheduler=SimpleNamespace(config={"original_inference_steps": 50}))

    def resolve(self, settings):
        import dataclasses

        return dataclasses.replace(settings, steps=settings.steps or 4, scheduler=settings.scheduler or "lcm",
                                   guidance_scale=settings.guidance_scale or 3.0)

    def generate(self, specs, settings, batch_size=16, progress=None):
        self.asked.append(settings)
        return super().generate(specs, settings, batch_size, progress)


def test_agreement_is_the_share_landing_on_the_teachers_image_and_the_teacher_solves_once():
    from ldm.evaluate import agreement_table

    ref, images = _reference()
    ref.captions[9] = "thing 9"  # ten captions, each naming one image
    # the student lands where the teacher does for 6 of the 10 prompts, and swaps the last two pairs
    student = _Stub(images[[0, 1, 2, 3, 4, 5, 7, 6, 9, 8]], "student")
    teacher = _Stub(images, "teacher")
    table = agreement_table(student, teacher, ref, [1, 4]).splitlines()
    assert "teacher's DDIM 50-step solve" in table[0] and table[1] == "| student | training captions |"
    assert table[3:] == ["| lcm, 1 step | 0.600 |", "| lcm, 4 steps | 0.600 |"]
    # the teacher's deterministic solve at the student's guidance, made once for both step counts
    assert [(s.scheduler, s.steps, s.guidance_scale) for s in teacher.asked] == [("ddim", 50, 3.0)]
    assert [s.steps for s in student.asked] == [1, 4]
