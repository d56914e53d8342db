"""The one writer of pipeline folders: what it writes loads in stock diffusers and in ldm, part by part whole."""

import json
import shutil

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from support import make_random_pipeline, make_tiny_clip

from ldm.errors import LdmError
from ldm.models import REFERENCE_FILE, load_pipeline_text_encoder
from ldm.pipeline_folder import assemble_pipeline, load_pipeline, write_pipeline
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model


@pytest.fixture(scope="module")
def clip_pipeline(tmp_path_factory):
    """A tiny pipeline folder with a CLIP text encoder written in full (what stock diffusers loads alone)."""
    root = tmp_path_factory.mktemp("clip")
    tokenizer, encoder = make_tiny_clip(root / "clip")
    return make_random_pipeline(root / "sd", text_encoder=encoder, tokenizer=tokenizer)


def _weights(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _index(folder) -> dict:
    index = json.loads((folder / "model_index.json").read_text())
    index.pop("_name_or_path", None)  # where diffusers loaded it from
    return index


def test_a_written_folder_loads_in_stock_diffusers_and_samples_as_ours(clip_pipeline):
    stock = StableDiffusionPipeline.from_pretrained(clip_pipeline, local_files_only=True)  # no ldm arguments
    ours = load_sampling_model(clip_pipeline, "cpu", "fp32")
    for part in ("unet", "vae", "text_encoder"):
        assert _same(_weights(getattr(stock, part)), _weights(getattr(ours.pipe, part))), part
    stock.scheduler = DDIMScheduler.from_config(stock.scheduler.config)
    stock.set_progress_bar_config(disable=True)
    image = stock("a red square", num_inference_steps=4, guidance_scale=3.0,
                  generator=[torch.Generator().manual_seed(9)], output_type="pt").images
    mine = ours.generate([ImageSpec("a red square", 9)], Settings(steps=4, scheduler="ddim", guidance_scale=3.0))
    assert image.shape == mine.shape == (1, 3, 32, 32)
    assert (image - mine).abs().max() < 1e-3


def test_the_layout_is_the_one_diffusers_writes(clip_pipeline, tmp_path):
    pipe = load_pipeline(clip_pipeline, "cpu")
    pipe.save_pretrained(tmp_path / "stock")
    ours = write_pipeline(pipe, tmp_path / "ours")
    assert _index(ours) == _index(tmp_path / "stock")
    assert _files(ours) == _files(tmp_path / "stock")
    assert _same(_weights(load_pipeline(ours, "cpu").unet), _weights(pipe.unet))


def test_the_packaged_encoder_is_a_reference_that_stock_diffusers_loads_when_given_it(tiny_pipeline):
    assert [p.name for p in (tiny_pipeline / "text_encoder").iterdir()] == [REFERENCE_FILE]
    assert _index(tiny_pipeline)["text_encoder"] == ["transformers", "BertModel"]
    tokenizer, encoder = load_pipeline_text_encoder(tiny_pipeline)
    stock = StableDiffusionPipeline.from_pretrained(tiny_pipeline, local_files_only=True, tokenizer=tokenizer,
                                                    text_encoder=encoder)
    assert _same(_weights(stock.unet), _weights(load_pipeline(tiny_pipeline, "cpu").unet))
    assert (tiny_pipeline / "ldm_config.yaml").is_file()


def test_a_run_folder_keeps_its_own_vae_untouched(clip_pipeline, tmp_path):
    run = shutil.copytree(clip_pipeline, tmp_path / "run")
    vae_files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run / "vae").iterdir()}
    pipe = load_pipeline(run, "cpu")
    torch.nn.init.zeros_(pipe.unet.conv_out.weight)  # a further trained UNet
    write_pipeline(assemble_pipeline(None, pipe.unet, pipe.tokenizer, pipe.text_encoder, pipe.scheduler), run)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run / "vae").iterdir()} == vae_files
    assert _index(run) == _index(clip_pipeline)
    assert load_pipeline(run, "cpu").unet.conv_out.weight.abs().sum() == 0


def test_a_failed_write_leaves_the_folder_as_it_was(clip_pipeline, tmp_path, monkeypatch):
    run = shutil.copytree(clip_pipeline, tmp_path / "run")
    files = {name: (run / name).read_bytes() for name in _files(run)}
    pipe = load_pipeline(run, "cpu")
    torch.nn.init.zeros_(pipe.unet.conv_out.weight)

    def disk_full(folder, **kwargs):
        (folder / "config.json").write_text("{half")
        raise OSError("no space left on device")

    monkeypatch.setattr(pipe.unet, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="no space"):
        write_pipeline(pipe, run)
    assert _files(run) == list(files)  # no half part, no temporary folder
    for name in [n for n in files if n.startswith("unet/")] + ["model_index.json"]:
        assert (run / name).read_bytes() == files[name], name


def test_bad_folders_are_one_line_errors(tmp_path, tiny_pipeline):
    with pytest.raises(LdmError, match="not found"):
        load_pipeline(tmp_path / "nowhere")
    with pytest.raises(LdmError, match="model_index.json"):
        load_pipeline(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline, broken)
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(LdmError, match="not valid JSON"):
        load_pipeline(broken)
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    for f in (broken / "unet").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(LdmError, match="safetensors"):
        load_pipeline(broken)
