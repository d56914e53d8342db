"""Model building and safe loading: safetensors only, clear errors for pickles and broken files."""

import dataclasses
import json
import pickle

import pytest
import torch
from support import TINY

from ldm.config import load_config
from ldm.errors import LdmError
from ldm.folders import refuse_pickle
from ldm.models import (
    build_unet,
    build_vae,
    encode_prompts,
    load_text_encoder,
    load_unet,
    load_vae,
    minilm_path,
    save_model,
    use_training_attention,
)


@pytest.fixture(scope="module")
def cfg():
    return load_config(TINY)


@pytest.fixture()
def vae_dir(tmp_path, cfg):
    torch.manual_seed(0)
    save_model(build_vae(cfg.vae, cfg.data.resolution), tmp_path / "vae")
    return tmp_path / "vae"


def test_minilm_loads_offline_and_sets_length():
    tokenizer, encoder = load_text_encoder("minilm", max_length=12)
    assert minilm_path().is_dir()
    emb = encode_prompts(tokenizer, encoder, ["a red apple", "x " * 100])
    assert emb.shape == (2, 12, 384)
    assert not any(p.requires_grad for p in encoder.parameters())


@pytest.mark.parametrize("device, choice, precision, expected", [
    ("cpu", "auto", "no", "AttnProcessor2_0"),  # fp32: PyTorch's fused kernel is the faster one
    ("cpu", "auto", "bf16", "AttnProcessor"),  # its bf16 backward on a CPU is slow
    ("cuda", "auto", "bf16", "AttnProcessor2_0"),
    ("cpu", "sdpa", "bf16", "AttnProcessor2_0"),
    ("cpu", "classic", "no", "AttnProcessor"),
])
def test_training_attention_follows_device_and_precision(cfg, device, choice, precision, expected):
    unet = build_unet(cfg.unet, 4, 8, 384)
    use_training_attention(unet, torch.device(device), choice, precision)
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {expected}


def test_unet_cross_attention_follows_encoder(cfg):
    unet = build_unet(cfg.unet, 4, 8, context_dim=384)
    assert unet.config.cross_attention_dim == 384
    out = unet(torch.zeros(1, 4, 8, 8), 10, encoder_hidden_states=torch.zeros(1, 5, 384)).sample
    assert out.shape == (1, 4, 8, 8)


@pytest.mark.parametrize("mid_block", [True, False])
def test_the_mid_block_is_a_choice_that_loads_back(cfg, tmp_path, mid_block):
    unet = build_unet(dataclasses.replace(cfg.unet, mid_block=mid_block), 4, 8, context_dim=384)
    assert (unet.mid_block is not None) == mid_block
    save_model(unet, tmp_path / "unet")
    again = load_unet(tmp_path / "unet")
    assert (again.mid_block is not None) == mid_block
    x, emb = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 384)
    assert torch.equal(unet(x, 10, encoder_hidden_states=emb).sample, again(x, 10, encoder_hidden_states=emb).sample)


def test_round_trip_is_safetensors_only(vae_dir):
    assert [p.name for p in vae_dir.iterdir() if p.suffix in (".bin", ".pt", ".ckpt")] == []
    assert load_vae(vae_dir).config.latent_channels == 4


def test_truncated_safetensors_is_a_clear_error(vae_dir):
    weights = next(vae_dir.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(LdmError, match="cannot load VAE"):
        load_vae(vae_dir)


def test_mismatched_config_is_a_clear_error(vae_dir):
    config = json.loads((vae_dir / "config.json").read_text())
    config["block_out_channels"] = [64, 64, 128]
    (vae_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(LdmError, match="cannot load VAE"):
        load_vae(vae_dir)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_checkpoints_are_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(LdmError, match="pickle"):
        refuse_pickle(ckpt)
    with pytest.raises(LdmError, match="pickle"):
        load_unet(ckpt)
    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(LdmError, match="refuses"):
        load_unet(folder)
    assert not marker.exists()


def test_missing_folder(tmp_path):
    with pytest.raises(LdmError, match="not found"):
        load_vae(tmp_path / "nothing")
