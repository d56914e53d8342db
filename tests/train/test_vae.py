"""The VAE loop: it learns to reconstruct held-out shapes, stores the scaling factor it measured, trains only the
decoder when asked, and resumes the same batch stream."""

import json

import pytest
import torch
from support import TINY

from ldm.config import load_config
from ldm.data.dataset import build_dataset
from ldm.metrics import heldout_psnr
from ldm.models import build_vae, load_vae
from ldm.train.schedule import batch_indices
from ldm.train.vae import StepBatches, freeze_encoder, latent_scaling_factor


def test_vae_reconstructs_heldout_shapes(tiny_run):
    cfg = load_config(TINY)
    vae = load_vae(tiny_run / "vae")
    assert heldout_psnr(vae, build_dataset(cfg.data, "heldout"), "cpu") > 20.0  # untrained: ~12 dB


def test_the_stored_scaling_factor_is_the_one_measured_on_the_training_images(tiny_run):
    cfg = load_config(TINY)
    vae = load_vae(tiny_run / "vae")
    tc = cfg.train_vae
    train_set = build_dataset(cfg.data, "train", seed=tc.seed)
    measured = latent_scaling_factor(vae, train_set, "cpu", tc.scaling_samples, tc.seed)
    stored = json.loads((tiny_run / "vae" / "config.json").read_text())["scaling_factor"]
    assert measured == pytest.approx(stored, rel=1e-5)
    assert latent_scaling_factor(vae, train_set, "cpu", tc.scaling_samples, tc.seed + 1) != pytest.approx(stored)


def test_freezing_the_encoder_leaves_only_the_decoder_side_to_train():
    cfg = load_config(TINY)
    vae = build_vae(cfg.vae, cfg.data.resolution)
    freeze_encoder(vae)
    frozen = {name.split(".")[0] for name, p in vae.named_parameters() if not p.requires_grad}
    trained = {name.split(".")[0] for name, p in vae.named_parameters() if p.requires_grad}
    assert frozen == {"encoder", "quant_conv"} and trained == {"decoder", "post_quant_conv"}


def test_step_batches_resume_where_the_full_run_would_be():
    # (start, max_steps, accum, batch_size, n, seed, rank, world)
    full = list(StepBatches(0, 6, 2, 4, 10, 3, 0, 1))
    assert len(full) == 12 and full[5] == batch_indices(2, 1, 2, 4, 10, 3)
    assert list(StepBatches(4, 6, 2, 4, 10, 3, 0, 1)) == full[8:]
    other_rank = list(StepBatches(0, 6, 2, 4, 10, 3, 1, 2))
    assert other_rank[0] == batch_indices(0, 0, 2, 4, 10, 3, 1, 2) != list(StepBatches(0, 6, 2, 4, 10, 3, 0, 2))[0]
    assert all(0 <= i < 10 for batch in full for i in batch)
    assert torch.tensor(full[:5]).unique().numel() == 10  # an epoch covers every image
