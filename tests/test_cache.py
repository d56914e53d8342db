"""The latent cache: what it stores, that any change to its inputs changes its key, and its shards: written
atomically, resumed, extended with only new images, the same from 1 or 2 processes, read through memory maps."""

import dataclasses
import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import ROOT, TINY, shapes_folder

import ldm.cache
from ldm.cache import (
    MemoryCache,
    ShardedCache,
    cache_key,
    encode_dataset,
    load_or_build_cache,
    pick_captions,
    sample_batch,
    weights_digest,
)
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
    tensors = encode_dataset(vae, tokenizer, encoder, data, flip=True, batch_size=8)
    assert tensors["mean"].shape == (16, 4, 8, 8) and tensors["std"].shape == (16, 4, 8, 8)
    assert tensors["mean_flip"].shape == tensors["mean"].shape
    # one embedding per distinct caption; each image points at its own
    assert tensors["embeds"].shape == (len(set(data.captions)), cfg.text.max_length, 384)
    assert tensors["caption_offsets"].tolist() == list(range(17))
    cache = MemoryCache(tensors)
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
    assert torch.equal(dropped, cache.uncond.float().expand_as(dropped))


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
    tensors = encode_dataset(vae, tokenizer, encoder, data, flip=False, batch_size=4)
    assert tensors["embeds"].shape[0] == 11 and tensors["caption_offsets"].tolist() == [0, 1, 4, 9, 11]
    cache = MemoryCache(tensors)

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


class OneProcess:
    """What load_or_build_cache asks of an Accelerator, for one CPU process."""

    is_main_process = is_local_main_process = True
    process_index, num_processes, device = 0, 1, "cpu"

    def wait_for_everyone(self):
        pass


def _shard_tensors(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file
    return {p.name: load_file(p) for p in sorted(folder.glob("shard-*.safetensors"))}


def test_the_sharded_cache_gives_the_same_batches_as_the_cache_in_memory(tmp_path):
    # flip and several captions an image: every draw of sample_batch goes through both readers alike
    cfg, vae, tokenizer, encoder, _ = _parts()
    data = _captioned_folder(tmp_path / "data", [1, 3, 5, 2, 4, 1, 2, 3, 1])
    memory = MemoryCache(encode_dataset(vae, tokenizer, encoder, data, flip=True, batch_size=4))
    sharded = load_or_build_cache(OneProcess(), tmp_path / "cache", vae, tokenizer, encoder, data, flip=True,
                                  shard_rows=4)
    assert isinstance(sharded, ShardedCache) and len(sharded.shard_names) == 3 and len(sharded) == 9
    for seed in range(5):
        idx = torch.randint(0, 9, (6,), generator=torch.Generator().manual_seed(seed)).tolist()
        a = sample_batch(memory, idx, torch.Generator().manual_seed(seed), 0.5, 0.3, primary_share=0.5)
        b = sample_batch(sharded, idx, torch.Generator().manual_seed(seed), 0.5, 0.3, primary_share=0.5)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # a second load reads the index it wrote and encodes nothing
    again = load_or_build_cache(OneProcess(), tmp_path / "cache", vae, tokenizer, encoder, data, flip=True,
                                shard_rows=4)
    assert again.shard_names == sharded.shard_names


def _memory_mapped(array) -> bool:
    while array is not None and not isinstance(array, memoryview):
        array = getattr(array, "base", None)
    return array is not None and isinstance(array.obj, mmap.mmap)


def test_rows_are_read_on_demand_and_the_index_is_memory_mapped(tmp_path):
    cfg, vae, tokenizer, encoder, _ = _parts()
    held = []
    for count in (8, 40):
        data = _parts(shapes_count=count)[4]
        cache = load_or_build_cache(OneProcess(), tmp_path / f"cache{count}", vae, tokenizer, encoder, data,
                                    flip=False, shard_rows=8)
        cache.posteriors(torch.tensor([0, count - 1]))
        assert _memory_mapped(cache._shard_of) and cache.rows_read == 2
        held.append(cache.held_bytes())
    assert held[0] == held[1]  # what is copied into memory does not grow with the rows


def test_adding_images_encodes_only_the_new_ones(tmp_path, monkeypatch):
    cfg, vae, tokenizer, encoder, _ = _parts()
    encoded = []
    real = ldm.cache.encode_dataset

    def counting(*args, rows=None, **kwargs):
        encoded.extend(rows)
        return real(*args, rows=rows, **kwargs)

    monkeypatch.setattr(ldm.cache, "encode_dataset", counting)
    small = _parts(shapes_count=12)[4]
    first = load_or_build_cache(OneProcess(), tmp_path, vae, tokenizer, encoder, small, flip=False, shard_rows=5)
    assert sorted(encoded) == list(range(12))
    encoded.clear()
    big = _parts(shapes_count=20)[4]  # the same 12 images and 8 more
    second = load_or_build_cache(OneProcess(), tmp_path, vae, tokenizer, encoder, big, flip=False, shard_rows=5)
    assert sorted(encoded) == list(range(12, 20))
    idx = torch.arange(12)
    assert all(torch.equal(x, y) for x, y in zip(first.posteriors(idx), second.posteriors(idx), strict=True))
    # both datasets keep their own index; the first still reads
    assert len(list(next(tmp_path.iterdir()).glob("index-*.safetensors"))) == 2


def _build(out: Path, rows: int, shard_rows: int, *extra: str, processes: int = 1):
    launch = ([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"] if processes > 1
              else [sys.executable])
    cmd = [*launch, "tests/helpers/build_cache.py", str(out), str(rows), str(shard_rows), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})


@pytest.mark.slow  # cache builds in subprocesses
def test_a_build_killed_mid_shard_leaves_no_shard_that_is_read_and_resumes(tmp_path):
    killed = _build(tmp_path / "cache", 24, 5, "2")  # killed while writing its third shard
    assert killed.returncode != 0
    folder = next((tmp_path / "cache").iterdir())
    assert len(list(folder.glob("shard-*.safetensors"))) == 2 and not list(folder.glob("index-*"))
    resumed = _build(tmp_path / "cache", 24, 5)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "encoding 14 of 24 images into 3 new shards" in resumed.stderr  # the two whole shards are kept
    fresh = _build(tmp_path / "fresh", 24, 5)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    a, b = _shard_tensors(folder), _shard_tensors(next((tmp_path / "fresh").iterdir()))
    assert a.keys() == b.keys() and all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


@pytest.mark.slow  # an accelerate launch of two processes
def test_two_processes_encode_the_same_cache_as_one(tmp_path):
    one = _build(tmp_path / "one", 30, 4)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _build(tmp_path / "two", 30, 4, processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "(2 processes)" in two.stderr and two.stdout.count("30 rows") == 2
    assert "process 0: 30 rows, encoded 4 shards" in two.stdout and "process 1: 30 rows, encoded 4 shards" in two.stdout
    a, b = _shard_tensors(next((tmp_path / "one").iterdir())), _shard_tensors(next((tmp_path / "two").iterdir()))
    assert len(a) == 8 and a.keys() == b.keys()
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])  # bit-identical rows


def test_each_reading_thread_keeps_its_own_shard_files(tmp_path, monkeypatch):
    import threading

    import numpy as np

    cfg, vae, tokenizer, encoder, data = _parts(shapes_count=24)
    cache = load_or_build_cache(OneProcess(), tmp_path, vae, tokenizer, encoder, data, flip=False, shard_rows=8)
    monkeypatch.setattr(type(cache), "MAX_OPEN", 2)
    theirs = []

    def read_one():
        theirs.append(cache._shard(0))
        theirs[0].rows("mean", np.array([0]))  # its file is open now

    worker = threading.Thread(target=read_one)
    worker.start()
    worker.join()
    for k in (0, 1, 2):  # this thread reads all three, closing its own first one
        cache._shard(k).rows("mean", np.array([0]))
    # the other thread's file is its own and still open: no thread closes a descriptor another may be reading
    # (whose number the system may then give to another file)
    assert theirs[0] is not cache._shard(0) and theirs[0]._fd is not None


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_drawn_ahead_are_the_batches_drawn_in_turn(tmp_path, workers, monkeypatch):
    from ldm.train.unet import CachedBatches

    cfg, vae, tokenizer, encoder, data = _parts(shapes_count=24)
    cache = load_or_build_cache(OneProcess(), tmp_path, vae, tokenizer, encoder, data, flip=True, shard_rows=8)
    # three shards, at most two open per thread: readers keep evicting, each its own files
    monkeypatch.setattr(type(cache), "MAX_OPEN", 2)
    tc = dataclasses.replace(cfg.train_unet, batch_size=4, gradient_accumulation_steps=2, caption_dropout=0.2)
    plain = CachedBatches(cache, tc, 0.5, prefetch=0)
    ahead = CachedBatches(cache, tc, 0.5, prefetch=3, workers=workers)
    assert ahead.prefetch == 3 and len(ahead._pool._threads) <= workers
    # in order, then a jump (a resumed run), then back to an earlier step (a caller out of order)
    for step, micro in [(0, 0), (0, 1), (1, 0), (1, 1), (7, 0), (7, 1), (8, 0), (2, 1)]:
        a, b = plain(step, micro), ahead(step, micro)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(torch.randn(3, generator=a[2]), torch.randn(3, generator=b[2]))  # the noise to come
    assert ahead._ahead  # it was drawing ahead
    for step in range(9, 40):  # many draws in flight at once, on every worker
        assert torch.equal(plain(step, 0)[0], ahead(step, 0)[0]) and torch.equal(plain(step, 1)[1], ahead(step, 1)[1])
    ahead.close()
    assert not ahead._ahead and torch.equal(plain(3, 0)[0], ahead(3, 0)[0])  # closed: it draws in turn
