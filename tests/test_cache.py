"""The latent cache: what it stores, and that any change to its inputs changes its key."""

import dataclasses

import torch
from support import TINY

from ldm.cache import cache_key, encode_dataset, sample_batch, weights_digest
from ldm.config import load_config
from ldm.data.dataset import build_dataset
from ldm.models import build_vae, load_text_encoder


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
    assert cache["embeds"].shape == (16, cfg.text.max_length, 384)
    gen = torch.Generator().manual_seed(0)
    latents, embeds, drop = sample_batch(cache, [0, 1, 2, 3], gen, scaling_factor=0.5, caption_dropout=0.0)
    assert not drop.any()
    assert latents.shape == (4, 4, 8, 8)
    assert torch.equal(embeds, cache["embeds"][:4].float())
    # posterior samples differ step to step; full dropout gives the empty prompt's embedding everywhere
    latents2, dropped, drop = sample_batch(cache, [0, 1, 2, 3], gen, scaling_factor=0.5, caption_dropout=1.0)
    assert drop.all()
    assert not torch.equal(latents, latents2)
    assert torch.equal(dropped, cache["uncond"].float().expand_as(dropped))
