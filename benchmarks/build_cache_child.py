"""One cache build for `scripts/benchmark.py data`, run under plain python or `accelerate launch`:
build_cache_child.py CACHE_DIR IMAGES CONFIG. Each process prints its encode time as a result line."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from benchmarks.child import emit_result  # noqa: E402
from ldm.cache import load_or_build_cache  # noqa: E402
from ldm.config import DataConfig, load_config  # noqa: E402
from ldm.data.dataset import build_dataset  # noqa: E402
from ldm.models import build_vae, load_text_encoder  # noqa: E402

out, images, config = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = load_config(config)
torch.manual_seed(0)
vae = build_vae(cfg.vae, cfg.data.resolution).eval()
tokenizer, encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
data = build_dataset(DataConfig(source="shapes", shapes_count=images, resolution=cfg.data.resolution), "train")
accelerator = Accelerator()
t0 = time.perf_counter()
load_or_build_cache(accelerator, Path(out), vae, tokenizer, encoder, data, flip=False, shard_rows=256)
emit_result({"process": accelerator.process_index, "encode_s": time.perf_counter() - t0})
