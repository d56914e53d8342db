"""Export for stock diffusers: fp16 storage, the encoder kept as a reference, loading without ldm."""

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

from ldm.errors import LdmError
from ldm.models import REFERENCE_FILE
from ldm.sampling.export import export_pipeline
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model


def test_fp16_export_keeping_the_encoder_reference_is_small_and_samples_the_same(tmp_path, tiny_pipeline):
    out = export_pipeline(tiny_pipeline, tmp_path / "shipped", "fp16", reference_encoder=True)
    assert [p.name for p in (out / "text_encoder").iterdir()] == [REFERENCE_FILE]
    for part in ("unet", "vae"):
        with safe_open(next((out / part).glob("*.safetensors")), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    spec, s = [ImageSpec("a red square", 2)], Settings(steps=4, scheduler="ddim")
    shipped = load_sampling_model(out, "cpu", "fp32")
    assert next(shipped.pipe.unet.parameters()).dtype == torch.float32  # fp16 storage, fp32 arithmetic
    source = load_sampling_model(tiny_pipeline, "cpu", "fp32").generate(spec, s)
    assert (shipped.generate(spec, s) - source).abs().max() < 2e-2


@pytest.mark.slow  # export.py and stock diffusers in subprocesses
def test_export_loads_in_stock_diffusers_without_ldm(tmp_path, tiny_pipeline):
    out = export_pipeline(tiny_pipeline, tmp_path / "export")
    with pytest.raises(LdmError, match="not empty"):
        export_pipeline(tiny_pipeline, out)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ldm"] = None  # any import of ldm now fails
        import torch
        from diffusers import DDIMScheduler, StableDiffusionPipeline
        pipe = StableDiffusionPipeline.from_pretrained({str(out)!r}, local_files_only=True)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        g = [torch.Generator().manual_seed(9)]
        img = pipe("a red square", num_inference_steps=4, guidance_scale=3.0, generator=g, output_type="pt").images
        torch.save(img, {str(tmp_path / "stock.pt")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    stock = torch.load(tmp_path / "stock.pt")
    ours = load_sampling_model(tiny_pipeline, "cpu", "fp32").generate(
        [ImageSpec("a red square", 9)], Settings(steps=4, scheduler="ddim", guidance_scale=3.0))
    assert stock.shape == ours.shape == (1, 3, 32, 32)
    assert (stock - ours).abs().max() < 1e-3  # same images as stock diffusers, up to arithmetic
