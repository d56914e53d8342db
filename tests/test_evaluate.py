"""Quality measures: nearest-neighbour fidelity, caption sampling, diversity and family matching."""

import torch

from ldm.evaluate import (
    PARAPHRASES,
    Reference,
    caption_sample,
    image_features,
    mean_pairwise_distance,
    topk_hits,
)


def _reference() -> tuple[Reference, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(10, 3, 32, 32, generator=g)
    return Reference(image_features(images), [f"thing {k}" for k in range(9)] + ["thing 0"]), images


def test_features_are_16x16_rgb():
    assert image_features(torch.rand(2, 3, 64, 64)).shape == (2, 768)


def test_own_images_are_top1_and_shuffled_ones_are_not():
    ref, images = _reference()
    assert topk_hits(image_features(images[:5]), ref, [0, 1, 2, 3, 4]) == (1.0, 1.0)
    top1, _ = topk_hits(image_features(images[:5]), ref, [1, 2, 3, 4, 0])
    assert top1 == 0.0


def test_caption_sample_skips_duplicate_captions_and_is_fixed():
    ref, _ = _reference()
    sample = caption_sample(ref, 20)
    assert 0 not in sample and 9 not in sample and len(sample) == 8
    assert caption_sample(ref, 4, seed=3) == caption_sample(ref, 4, seed=3)


def test_caption_sample_draws_only_training_images():
    ref, _ = _reference()
    ref.trained = 6  # entries 6.. stand for held-out images
    assert caption_sample(ref, 20) == [1, 2, 3, 4, 5]


def test_family_share_and_paraphrase_list():
    ref = Reference(torch.zeros(4, 768), ["hamburger", "cat face", "grinning cat", "fire"])
    assert ref.family_share(("cat",)) == 0.5
    assert len(PARAPHRASES) >= 30


def test_diversity_is_zero_for_copies():
    x = torch.rand(1, 768).expand(4, -1)
    assert mean_pairwise_distance(x) == 0
    assert mean_pairwise_distance(torch.rand(4, 768)) > 1


def test_card_table_is_replaced_between_markers():
    from ldm.evaluate import Row, format_table, update_card

    table = format_table([Row("VAE PSNR", 31.5, 24.0, "down/up", ">= 32", "{:.2f}")])
    assert "| VAE PSNR | 31.50 | 24.00 (down/up) | >= 32 |" in table
    card = update_card("# model\n\nintro\n", table)
    again = update_card(card.replace("31.50", "99.00") + "\nfooter\n", table)
    assert again.count("evaluate:begin") == 1 and "31.50" in again and "99.00" not in again
    assert again.endswith("footer\n")


def test_downsampling_baseline_is_lossless_on_flat_images():
    from ldm.evaluate import downsample_psnr

    assert downsample_psnr(torch.zeros(2, 3, 16, 16), 4) > 90
