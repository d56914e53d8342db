"""What a UNet run trains, keeps as EMA and writes at the end: one Target per kind of run.

The UNet trainer builds its Target once (`make_target`) and its loop then has no branches on the kind of
run: a fresh UNet, a full fine-tune of a pipeline folder, or LoRA adapters on one (optionally on its
CLIP text encoder too).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel

from ldm.config import Config, dump_config, vae_factor
from ldm.folders import find_vae
from ldm.io import write_text_atomic
from ldm.models import (
    build_noise_scheduler,
    build_unet,
    cross_attention_dim,
    load_text_encoder,
    load_unet,
    load_vae,
    save_pipeline,
)
from ldm.sampling.sampler import sampling_scheduler
from ldm.train.finetune import (
    add_lora,
    add_text_encoder_lora,
    load_ema_params,
    load_init_components,
    require_text_encoder_lora,
    save_ema_params,
    save_lora,
)
from ldm.train.optimization import make_ema

log = logging.getLogger("ldm")
EMA_DIR = "unet_ema"  # a full UNet's EMA weights inside a checkpoint, as EMAModel.save_pretrained writes them


class FreshUNet:
    """A new UNet on the config's frozen VAE and text encoder; every weight trains; the result is a pipeline."""

    encode_prompts_each_step = False  # prompts come from the latent cache

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None):
        self.cfg, self.output_dir = cfg, output_dir
        self.vae_dir = find_vae(cfg, output_dir, vae_path)
        self.vae = load_vae(self.vae_dir)
        self.tokenizer, self.text_encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
        self.vae.requires_grad_(False).eval()

    def build(self) -> None:
        """Create the UNet and the training noise schedule, and say which parameters train (after seeding)."""
        latent_size = self.cfg.data.resolution // vae_factor(self.cfg)
        self.unet = build_unet(self.cfg.unet, self.vae.config.latent_channels, latent_size,
                               cross_attention_dim(self.text_encoder))
        self.noise_scheduler = build_noise_scheduler(self.cfg.noise)
        self.trainable = list(self.unet.parameters())

    def make_ema(self, decay: float) -> EMAModel:
        """EMA of the trainable weights."""
        return make_ema(self.trainable, decay, model_cls=UNet2DConditionModel, model_config=self.unet.config)

    def save_ema(self, ema: EMAModel, folder: Path) -> None:
        """Write the EMA weights into a checkpoint folder."""
        ema.save_pretrained(str(folder / EMA_DIR))

    def load_ema(self, ema: EMAModel, folder: Path) -> None:
        """Restore what save_ema wrote, reading its safetensors only (EMAModel's own loader would take a .bin)."""
        shadow = load_unet(folder / EMA_DIR)
        settings = json.loads((folder / EMA_DIR / "config.json").read_text())
        state = ema.state_dict()
        state.update({key: settings[key] for key in state if key in settings and key != "shadow_params"})
        state["shadow_params"] = [p.detach() for p in shadow.parameters()]
        ema.load_state_dict(state)

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """The run folder as a pipeline; the VAE is referenced when it already lives in the run folder."""
        own_vae = self.vae_dir.resolve() == (self.output_dir / "vae").resolve()
        save_pipeline(self.output_dir, self.cfg, unet, None if own_vae else self.vae,
                      sampling_scheduler(self.noise_scheduler), self.tokenizer, text_encoder)


class FullFinetune(FreshUNet):
    """Every UNet weight of a pipeline folder trains; its VAE, text encoder and schedulers are kept."""

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None = None):
        self.cfg, self.output_dir = cfg, output_dir
        self.init = load_init_components(cfg.finetune.init_from)
        self.vae, self.tokenizer, self.text_encoder = self.init.vae, self.init.tokenizer, self.init.text_encoder
        self.vae.requires_grad_(False).eval()

    def build(self) -> None:
        """The folder's UNet and noise schedule; every parameter trains."""
        self.unet, self.noise_scheduler = self.init.unet, self.init.noise_scheduler
        self.trainable = list(self.unet.parameters())

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """A pipeline folder with the folder's VAE, scheduler and text encoder (referenced when packaged)."""
        self.cfg.text.encoder = self.init.encoder_spec
        save_pipeline(self.output_dir, self.cfg, unet, self.vae, self.init.sampling_scheduler, self.tokenizer,
                      text_encoder)


class LoraFinetune(FullFinetune):
    """LoRA adapters on a pipeline folder's UNet (and CLIP text encoder); the result is a LoRA file."""

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None = None):
        # the adapted encoder must embed prompts every step, so the cached embeddings are not used
        self.encode_prompts_each_step = cfg.finetune.lora_text_encoder
        if self.encode_prompts_each_step:
            require_text_encoder_lora()  # before any model loads
        super().__init__(cfg, output_dir, vae_path)

    def build(self) -> None:
        """Freeze the folder's weights and add adapters; only the adapters train."""
        super().build()
        self.trainable = add_lora(self.unet, self.cfg.finetune)
        if self.encode_prompts_each_step:
            self.trainable += add_text_encoder_lora(self.text_encoder, self.cfg.finetune)

    def make_ema(self, decay: float) -> EMAModel:
        """EMA of the adapter weights alone."""
        return make_ema(self.trainable, decay)

    def save_ema(self, ema: EMAModel, folder: Path) -> None:
        """The adapters' EMA as one safetensors file."""
        save_ema_params(ema, folder)

    def load_ema(self, ema: EMAModel, folder: Path) -> None:
        """Restore what save_ema wrote."""
        load_ema_params(ema, folder)

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """The LoRA file diffusers' load_lora_weights reads, and the resolved config beside it."""
        path = save_lora(unet, self.output_dir, text_encoder if self.encode_prompts_each_step else None)
        log.info("LoRA -> %s", path)
        write_text_atomic(self.output_dir / "ldm_config.yaml", dump_config(self.cfg))


def make_target(cfg: Config, output_dir: Path, vae_path: str | None = None) -> FreshUNet:
    """The Target the config asks for, with its frozen encoders loaded (the UNet comes with build())."""
    if not cfg.finetune.init_from:
        return FreshUNet(cfg, output_dir, vae_path)
    return LoraFinetune(cfg, output_dir) if cfg.finetune.method == "lora" else FullFinetune(cfg, output_dir)
