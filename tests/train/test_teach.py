"""Teaching a concept: DreamBooth's prior term, the new word and its token (checks, the trainable row, the file
stock diffusers reads), the user's images and their views, and the early stop on settled previews."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from support import TINY

from ldm.config import load_config
from ldm.data.dataset import build_dataset
from ldm.data.teach_images import augmented_views, centred, load_concept_images, write_view_folder
from ldm.errors import LdmError
from ldm.models import build_noise_scheduler, build_unet, embed_prompts, load_text_encoder
from ldm.sampling.concepts import concept_file, load_embedding, read_embedding
from ldm.train.early_stop import PreviewSettle
from ldm.train.losses import per_sample_diffusion_loss
from ldm.train.teach import KeptUnconditional, _frozen, cached_class_latents, instance_loss, prior_preservation_loss
from ldm.train.teach_inputs import MAX_IMAGES, check_name, check_new_word, image_paths
from ldm.train.teach_run import captions, teach_config
from ldm.train.textual_inversion import NewTokenEmbedding, add_new_token, save_embedding


@pytest.fixture(scope="module")
def tiny_unet():
    cfg = load_config(TINY)
    torch.manual_seed(0)
    return build_unet(cfg.unet, 4, 8, 384).eval(), build_noise_scheduler(cfg.noise)


@pytest.fixture()
def encoder():
    return load_text_encoder("minilm", 16)


def _batch(seed: int, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 8, 8, generator=g), torch.randn(n, 5, 384, generator=g)


# the prior term

def test_prior_term_is_the_class_rows_loss_weighted(tiny_unet):
    unet, scheduler = tiny_unet
    (latents, embeds), (class_latents, class_embeds) = _batch(1), _batch(2)
    with torch.no_grad():
        rows = per_sample_diffusion_loss(unet, scheduler, torch.cat([latents, class_latents]),
                                         torch.cat([embeds, class_embeds]), torch.Generator().manual_seed(5))

        def loss(weight: float) -> float:
            return float(prior_preservation_loss(unet, scheduler, latents, embeds, class_latents, class_embeds,
                                                 torch.Generator().manual_seed(5), weight))

        instance, prior = float(rows[:3].mean()), float(rows[3:].mean())
        assert prior > 0 and instance > 0
        assert loss(0.0) == pytest.approx(instance, rel=1e-6)
        assert loss(1.0) == pytest.approx(instance + prior, rel=1e-6)
        assert loss(0.5) == pytest.approx(instance + 0.5 * prior, rel=1e-6)


def test_prior_term_trains_on_the_class_rows_only_when_weighted(tiny_unet):
    unet, scheduler = tiny_unet
    (latents, embeds), (class_latents, class_embeds) = _batch(1), _batch(2)
    grads = []
    for weight in (0.0, 1.0):
        class_latents.grad = None
        class_latents.requires_grad_(True)
        prior_preservation_loss(unet, scheduler, latents, embeds, class_latents, class_embeds,
                                torch.Generator().manual_seed(5), weight).backward()
        grads.append(class_latents.grad.abs().sum())
    unet.zero_grad()
    assert grads[0] == 0 and grads[1] > 0


def test_kept_rows_pull_the_empty_prompts_prediction_back_to_the_frozen_models():
    from ldm.config import FinetuneConfig
    from ldm.train.finetune import add_lora

    cfg = load_config(TINY)
    torch.manual_seed(0)
    unet, scheduler = build_unet(cfg.unet, 4, 8, 384), build_noise_scheduler(cfg.noise)
    adapters = add_lora(unet, FinetuneConfig(lora_rank=4, lora_alpha=4))
    (latents, embeds), (_, uncond) = _batch(1), _batch(3, 1)

    def loss(weight: float | None) -> torch.Tensor:
        kept = None if weight is None else KeptUnconditional(uncond, weight, lambda *a: _frozen(unet, *a))
        return instance_loss(unet, scheduler, latents, embeds, torch.Generator().manual_seed(5), None, kept)

    with torch.no_grad():
        plain = float(loss(None))
        assert float(loss(1.0)) == pytest.approx(plain, rel=1e-6)  # untrained adapters: the frozen model exactly
        for param in adapters:
            param.add_(torch.randn_like(param) * 0.3)  # adapters that moved the model
        moved = float(loss(None))
        assert float(loss(2.0)) - moved == pytest.approx(2 * (float(loss(1.0)) - moved), rel=1e-4)
        assert float(loss(1.0)) > moved
    unet.zero_grad()
    (loss(1.0) - loss(None)).backward()  # the kept rows alone train the adapters toward the frozen model
    assert all(p.grad is not None for p in adapters) and sum(float(p.grad.abs().sum()) for p in adapters) > 0
    assert unet.peft_config and all(not p.requires_grad for n, p in unet.named_parameters() if "lora_" not in n)


def test_class_latents_are_drawn_once_per_setting(tmp_path):
    path, calls = tmp_path / "class.safetensors", []

    def draw():
        calls.append(1)
        return torch.full((2, 4, 8, 8), float(len(calls)))

    first = cached_class_latents(path, "a bird", 2, 20, 0, draw)
    again = cached_class_latents(path, "a bird", 2, 20, 0, draw)  # a resumed run reads them back
    other = cached_class_latents(path, "a face", 2, 20, 0, draw)  # another class prompt draws afresh
    assert len(calls) == 2 and torch.equal(first, again) and float(other[0, 0, 0, 0]) == 2


# the new word and its token

@pytest.mark.parametrize("name, message", [
    ("", "needs a name"), (" ", "needs a name"), ("x" * 1000, "1000 characters"), ("my cat", "one word"),
    ("my-cat", "one word"), ("4cat", "start with a letter"), ("<cat>", "one word")])
def test_bad_names_are_one_line(name, message):
    with pytest.raises(LdmError, match=message) as err:
        check_name(name)
    assert "\n" not in str(err.value)


def test_a_word_the_encoder_knows_is_refused(encoder):
    tokenizer, _ = encoder
    for word in ("bird", "Face", "the"):
        with pytest.raises(LdmError, match="already a word"):
            check_new_word(tokenizer, word)
    assert check_new_word(tokenizer, " Zorbly ") == "zorbly"  # uncased encoder: the token is lower case


def test_the_new_token_alone_trains(encoder):
    tokenizer, text_encoder = encoder
    table = text_encoder.get_input_embeddings().weight.detach().clone()
    embedding = add_new_token(tokenizer, text_encoder, "zorbly", "a bird")
    assert isinstance(text_encoder.get_input_embeddings(), NewTokenEmbedding)
    assert tokenizer.tokenize("a Zorbly bird") == ["a", "zorbly", "bird"]
    with pytest.raises(LdmError, match="already a word"):  # now a token: taught once is enough
        check_new_word(tokenizer, "zorbly")
    params = [p for p in text_encoder.parameters() if p.requires_grad]
    assert params == [embedding.vectors]
    optimizer = torch.optim.AdamW(params, lr=0.1, weight_decay=0.01)
    before = embedding.vectors.detach().clone()
    embed_prompts(tokenizer, text_encoder, ["a zorbly"]).pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(embedding.vectors, before)
    assert torch.equal(embedding.table.weight[: len(table)], table)  # every known word as it was
    plain = embed_prompts(tokenizer, text_encoder, ["a red bird"])
    fresh_tokenizer, fresh_encoder = load_text_encoder("minilm", 16)
    assert torch.allclose(plain, embed_prompts(fresh_tokenizer, fresh_encoder, ["a red bird"]), atol=1e-6)


def test_the_embedding_file_loads_in_stock_diffusers(encoder, tiny_pipeline, tmp_path):
    from diffusers import StableDiffusionPipeline

    tokenizer, text_encoder = encoder
    embedding = add_new_token(tokenizer, text_encoder, "zorbly", "")
    with torch.no_grad():
        embedding.vectors.add_(torch.randn(embedding.vectors.shape, generator=torch.Generator().manual_seed(0)))
    path = save_embedding(tmp_path / "learned_embeds.safetensors", "zorbly", embedding.vectors)
    ours = embed_prompts(tokenizer, text_encoder, ["a zorbly riding a bicycle"])
    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline, safety_checker=None, requires_safety_checker=False,
                                                   text_encoder=load_text_encoder("minilm", 16)[1],
                                                   tokenizer=load_text_encoder("minilm", 16)[0])
    pipe.load_textual_inversion(str(path))  # stock diffusers, the file alone
    theirs = embed_prompts(pipe.tokenizer, pipe.text_encoder, ["a zorbly riding a bicycle"])
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_bad_embedding_files_are_one_line(tiny_model, tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1, 384), "b": torch.zeros(1, 384)}, tmp_path / "two.safetensors")
    save_file({"zorbly": torch.zeros(1, 16)}, tmp_path / "narrow.safetensors")
    save_file({"bird": torch.zeros(1, 384)}, tmp_path / "word.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    for name, message in (("two", "holds 2 tensors"), ("narrow", "width 16"), ("word", "already knows"),
                          ("junk", "cannot read embedding")):
        with pytest.raises(LdmError, match=message):
            load_embedding(tiny_model.pipe, tmp_path / f"{name}.safetensors")
    with pytest.raises(LdmError, match="holds no embedding"):
        concept_file(str(tmp_path), "learned_embeds.safetensors", "embedding")
    assert read_embedding(tmp_path / "narrow.safetensors")[1].shape == (1, 16)


# the user's images

def _save(path, mode: str, size=(40, 30)):
    if mode == "I;16":
        Image.fromarray((np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 50).astype(np.uint16)).save(path)
    elif mode == "GIF":
        frames = [Image.new("P", size, i) for i in range(3)]
        frames[0].save(path, save_all=True, append_images=frames[1:])
    else:
        Image.new(mode, size, {"RGBA": (255, 0, 0, 128), "CMYK": (0, 255, 0, 0), "RGB": (0, 0, 255)}[mode]).save(path)
    return path


def test_any_mode_and_size_loads_as_rgb_on_white(tmp_path):
    paths = [_save(tmp_path / "a.png", "RGBA"), _save(tmp_path / "b.jpg", "CMYK"), _save(tmp_path / "c.png", "I;16"),
             _save(tmp_path / "d.gif", "GIF"), _save(tmp_path / "e.png", "RGB", (300, 90))]
    pixels, opacity = load_concept_images(paths, 32)
    assert pixels.shape == (5, 3, 32, 32) and opacity.shape == (5, 1, 32, 32)
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert float(opacity[0].mean()) == pytest.approx(128 / 255, abs=0.01) and float(opacity[1].min()) == 1
    assert float(pixels[0, 0].mean()) == pytest.approx(1.0, abs=0.02)  # half-transparent red on white: light red


def test_bad_image_files_are_one_line(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(LdmError, match="notes.png: not an image"):
        load_concept_images([tmp_path / "notes.png"], 32)
    with pytest.raises(LdmError, match="no images"):
        image_paths([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LdmError, match="no images"):
        image_paths([str(tmp_path / "empty")])
    with pytest.raises(LdmError, match="image not found"):
        image_paths([str(tmp_path / "missing.png")])
    many = tmp_path / "many"
    many.mkdir()
    for k in range(MAX_IMAGES + 1):
        (many / f"{k}.png").write_bytes(b"")
    with pytest.raises(LdmError, match=f"{MAX_IMAGES + 1} images"):
        image_paths([str(many)])
    assert image_paths([str(many / "1.png"), str(many / "1.png")]) == [(many / "1.png").resolve()]


def test_views_keep_the_images_then_shift_and_scale_them(tmp_path):
    pixels = torch.ones(2, 3, 32, 32)
    pixels[0, :, 8:24, 4:20] = -1  # a black square left of centre, on white
    pixels[1, 0, 10:22, 10:22] = -1
    opacity = torch.ones(2, 1, 32, 32)
    views = augmented_views(pixels, opacity, 12, torch.Generator().manual_seed(0), flip=True)
    assert views.shape == (12, 3, 32, 32) and torch.equal(views[:2], pixels)
    again = augmented_views(pixels, opacity, 12, torch.Generator().manual_seed(0), flip=True)
    assert torch.equal(views, again)
    dark = (views[2::2] < 0).float().mean(dim=(1, 2, 3))
    original = float((pixels[0] < 0).float().mean())
    assert (dark <= original + 1e-6).all() and (dark >= 0.8**2 * original - 0.01).all()  # scaled 0.8-1.0
    assert not all(torch.equal(v, pixels[0]) for v in views[2::2])  # moved
    folder = write_view_folder(tmp_path / "views", views, ["zorbly", "zorbly face"])
    lines = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and lines[0]["text"] == ["zorbly", "zorbly face"]
    assert (folder / lines[-1]["file_name"]).is_file() and not list(tmp_path.glob(".views*"))


def test_images_are_centred_at_the_share_of_the_frame_on_their_own_background():
    # three drawings of one thing at other places and sizes become one layout, as the model's own training images
    # have one per caption (three layouts of one word drew as colour mush: README, Benchmarks)
    pixels = torch.full((3, 3, 40, 40), 0.6)  # a light grey background
    pixels[0, :, 2:12, 4:14] = -1  # a 10 px black square, top left
    pixels[1, :, 20:40, 5:25] = -1  # 20 px, at the bottom edge
    pixels[2, :, 14:20, 30:36] = -1  # 6 px, right of centre
    out, opacity = centred(pixels, torch.ones(3, 1, 40, 40), 0.9)
    assert out.shape == pixels.shape and torch.equal(opacity, torch.ones(3, 1, 40, 40))
    for image in out:
        dark = (image[0] < -0.5).nonzero()
        (top, left), (bottom, right) = dark.min(0).values.tolist(), dark.max(0).values.tolist()
        assert (bottom - top + 1, right - left + 1) == (36, 36) and (top, left) == (2, 2)  # 0.9 of 40, centred
        assert image[0, 0, 0] == pytest.approx(0.6) and image[0, -1, -1] == pytest.approx(0.6)  # its own background
    assert (out[0] - out[1]).abs().mean() < 0.02 and (out[0] - out[2]).abs().mean() < 0.02


@pytest.mark.parametrize("config", ["configs/teach_dreambooth.yaml", "configs/teach_ti.yaml"])
def test_a_run_reads_its_views_as_its_dataset(config, tiny_pipeline, tmp_path):
    # teach_config names the data source itself: a name the dataset builder no longer knows stopped every run
    cfg = teach_config(config, [], "zorbly", tiny_pipeline, tmp_path / "run", "a face")
    write_view_folder(cfg.data.path, torch.zeros(3, 3, 32, 32), captions(cfg))
    dataset = build_dataset(cfg.data, "train")
    assert len(dataset) == 3 and dataset.captions[0] == "zorbly"


# the early stop

def test_previews_settle_after_patience_small_changes():
    settle = PreviewSettle(patience=2, tolerance=0.01)
    a = torch.zeros(2, 3, 8, 8)
    assert not settle.update(a)
    assert not settle.update(a + 0.5)  # still learning
    assert not settle.update(a + 0.505)  # one small change
    assert settle.update(a + 0.51)  # two in a row
    assert settle.changes == pytest.approx([0.5, 0.005, 0.005])
    never = PreviewSettle(patience=0, tolerance=1.0)
    assert not any(never.update(a) for _ in range(4))


def test_a_full_disk_is_told_apart_from_other_failures():
    import errno

    from ldm.train.teach_run import no_room

    assert no_room(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert no_room(RuntimeError("Error while serializing: I/O error: File too large (os error 27)")) == errno.EFBIG
    assert no_room(OSError(errno.EACCES, "Permission denied")) is None
    assert no_room(RuntimeError("I/O error: Permission denied (os error 13)")) is None
