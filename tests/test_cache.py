"""The latent cache: what it stores, and that any change to its inputs changes its key."""

import dataclasses
import json

import torch
from support import TINY, shapes_folder

from ldm.cache import cache_key, encode_dataset, pick_captions, sample_batch, weights_digest
from ldm.config import load_config
from ldm.data.dataset import FolderDataset, build_dataset
from ldm.data.imagefolder import scan_imagefolder
from ldm.models import build_vae, encode_prompts, load_text_encoder


def _parts(shapes_count=16):
    cfg = load_config(TINY)
    torch.manual_seed(0)
    vae = build_vae(cfg.vae, cfg.data.resolution).eval()
    tokenizer, encoder = load_text_encoder("minilm", cfg.text.max_length)
    data = build_dataset(dataclasses.replace(cfg.data, shapes_count=shapes_count), "train")
    return cfg, vae, tokenizer, encoder, data


def test_key_changes_with_weights_data_flip_and_length():
    cfg, vae, tokenizer, encoder, data = _parts()
    key = cache_key(vae, encoder, tokenizer, data, flip=False)
    assert key == cache_key(vae, encoder, tokenizer, data, flip=False)
    assert key != cache_key(vae, encoder, tokenizer, data, flip=True)
    assert key != cache_key(vae, encoder, tokenizer, _parts(shapes_count=17)[4], flip=False)
    tokenizer.model_max_length += 1
    assert key != cache_key(vae, encoder, tokenizer, data, flip=False)
    tokenizer.model_max_length -= 1
    with torch.no_grad():
        next(vae.parameters()).add_(1e-3)
    assert key != cache_key(vae, encoder, tokenizer, data, flip=False)


def test_weights_digest_ignores_the_memory_format():
    # the sampler keeps its VAE in channels_last (its 1x1 convolutions then have a last stride above 1)
    vae = _parts()[1]
    plain = weights_digest(vae)
    vae.to(memory_format=torch.channels_last)
    assert weights_digest(vae) == plain


def test_encodings_and_batches():
    cfg, vae, tokenizer, encoder, data = _parts()
    cache = encode_dataset(vae, tokenizer, encoder, data, flip=True, batch_size=8)
    assert cache["mean"].shape == (16, 4, 8, 8) and cache["std"].shape == (16, 4, 8, 8)
    assert cache["mean_flip"].shape == cache["mean"].shape
    # one embedding per distinct caption; each image points at its own
    assert cache["embeds"].shape == (len(set(data.captions)), cfg.text.max_length, 384)
    assert cache["caption_offsets"].tolist() == list(range(17))
    gen = torch.Generator().manual_seed(0)
    latents, embeds, drop, picks = sample_batch(cache, [0, 1, 2, 3], gen, scaling_factor=0.5, caption_dropout=0.0)
    assert not drop.any() and picks.tolist() == [0, 1, 2, 3]
    assert latents.shape == (4, 4, 8, 8)
    expected = encode_prompts(tokenizer, encoder, data.captions[:4]).to(torch.float16).float()
    assert torch.equal(embeds, expected)
    # posterior samples differ step to step; full dropout gives the empty prompt's embedding everywhere
    latents2, dropped, drop, _ = sample_batch(cache, [0, 1, 2, 3], gen, scaling_factor=0.5, caption_dropout=1.0)
    assert drop.all()
    assert not torch.equal(latents, latents2)
    assert torch.equal(dropped, cache["uncond"].float().expand_as(dropped))


def _captioned_folder(folder, captions_per_image):
    """shapes images whose metadata gives each image a list of captions: 'image i, name j'."""
    shapes_folder(folder, count=len(captions_per_image))
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    with open(folder / "metadata.jsonl", "w") as f:
        for i, (row, count) in enumerate(zip(rows, captions_per_image, strict=True)):
            row["captions"] = [f"image {i}, name {j}" for j in range(count)]
            f.write(json.dumps(row) + "\n")
    return FolderDataset(scan_imagefolder(folder, "captions", 32, heldout_fraction=0).train, 32)


def test_every_caption_is_cached_and_drawn_with_the_primary_share(tmp_path):
    cfg, vae, tokenizer, encoder, _ = _parts()
    data = _captioned_folder(tmp_path / "data", [1, 3, 5, 2])
    assert data.captions == [f"image {i}, name 0" for i in range(4)]  # the first is the primary caption
    cache = encode_dataset(vae, tokenizer, encoder, data, flip=False, batch_size=4)
    assert cache["embeds"].shape[0] == 11 and cache["caption_offsets"].tolist() == [0, 1, 4, 9, 11]

    gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([pick_captions(cache, [0, 1, 2, 3], gen, primary_share=0.5) for _ in range(400)])
    counts = torch.bincount(drawn, minlength=11)
    assert counts.tolist()[0] == 400  # one caption: always it
    assert all(c > 0 for c in counts.tolist())  # every caption of every image is drawn
    primary = counts[[1, 4, 9]].sum().item() / 1200
    assert 0.45 < primary < 0.55
    # the others evenly: image 2 has 4 others, about 50 draws each of its 400
    assert all(30 < c < 75 for c in counts[5:9].tolist())
    assert torch.equal(pick_captions(cache, [2, 2, 2], gen, primary_share=1.0), torch.tensor([4, 4, 4]))

    # a drawn caption's embedding is that caption's
    latents, embeds, _, picks = sample_batch(cache, [2, 3], gen, 0.5, 0.0, primary_share=0.0)
    names = [c for captions in data.caption_lists for c in captions]
    expected = encode_prompts(tokenizer, encoder, [names[p] for p in picks.tolist()]).to(torch.float16).float()
    assert torch.equal(embeds, expected) and picks.tolist()[0] in range(5, 9)
