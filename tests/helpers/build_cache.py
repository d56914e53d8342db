"""Build the latent cache of a procedural shapes set with a seeded tiny VAE, as the trainer does, under plain
python or `accelerate launch`: python tests/helpers/build_cache.py CACHE_DIR ROWS SHARD_ROWS [KILL_AT_SHARD]

KILL_AT_SHARD: SIGKILL this process while it writes its N-th shard (0-based), after part of the file is written.
"""

import logging
import os
import signal
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

import ldm.cache as cache
import ldm.shards as shards
from ldm.config import DataConfig, load_config
from ldm.data.dataset import build_dataset
from ldm.models import build_vae, load_text_encoder

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"

logging.basicConfig(level=logging.INFO, format="%(message)s")
out, count, shard_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
encoded = {"shards": 0}
real_encode = cache.encode_dataset


def counting_encode(*args, **kwargs):
    encoded["shards"] += 1
    return real_encode(*args, **kwargs)


cache.encode_dataset = counting_encode
kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else -1

if kill_at >= 0:
    real_save = shards.save_file
    written = {"n": 0}

    def save_then_die(tensors, filename, metadata=None):
        if written["n"] == kill_at:
            with open(filename, "wb") as f:  # a partial temporary file, as a kill mid-write leaves it
                f.write(b"\0" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
        written["n"] += 1
        return real_save(tensors, filename, metadata=metadata)

    shards.save_file = save_then_die

cfg = load_config(TINY)
torch.manual_seed(0)
vae = build_vae(cfg.vae, cfg.data.resolution).eval()
tokenizer, encoder = load_text_encoder("minilm", cfg.text.max_length)
data = build_dataset(DataConfig(source="shapes", shapes_count=count, resolution=cfg.data.resolution), "train")
accelerator = Accelerator(cpu=True)
result = cache.load_or_build_cache(accelerator, out, vae, tokenizer, encoder, data, flip=True, shard_rows=shard_rows)
print(f"process {accelerator.process_index}: {len(result)} rows, encoded {encoded['shards']} shards")
