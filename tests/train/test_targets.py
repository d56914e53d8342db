"""One Target per kind of UNet run: the config picks it, and it says what trains and what EMA tracks."""

import torch
from support import TINY

from ldm.config import load_config
from ldm.train.targets import FreshUNet, FullFinetune, LoraFinetune, make_target


def _count(params) -> int:
    return sum(p.numel() for p in params)


def test_the_config_picks_the_target_and_its_trainable_weights(tiny_pipeline, tmp_path):
    vae = tiny_pipeline / "vae"
    fresh = make_target(load_config(TINY), tmp_path, str(vae))
    assert type(fresh) is FreshUNet and not fresh.encode_prompts_each_step
    fresh.build()
    assert _count(fresh.trainable) == _count(fresh.unet.parameters())

    full = make_target(load_config(TINY, [f"finetune.init_from={tiny_pipeline}", "finetune.method=full"]), tmp_path)
    assert type(full) is FullFinetune
    full.build()
    assert _count(full.trainable) == _count(full.unet.parameters()) == _count(fresh.unet.parameters())

    lora = make_target(load_config(TINY, [f"finetune.init_from={tiny_pipeline}", "finetune.method=lora"]), tmp_path)
    assert type(lora) is LoraFinetune and not lora.encode_prompts_each_step
    torch.manual_seed(0)
    lora.build()
    adapters = [n for n, p in lora.unet.named_parameters() if p.requires_grad]
    assert adapters and all("lora" in n for n in adapters)
    assert _count(lora.trainable) == _count(p for p in lora.unet.parameters() if p.requires_grad) < \
        _count(lora.unet.parameters()) / 4
    ema = lora.make_ema(0.9)
    assert len(ema.shadow_params) == len(lora.trainable)  # EMA tracks the adapters, not the frozen UNet
