"""Schedulers by name: each builds its diffusers class over the model's noise schedule, labels map both ways,
and a bad name is one line."""

import diffusers
import pytest
import torch
from support import TINY

from ldm.config import load_config
from ldm.errors import LdmError
from ldm.models import build_noise_scheduler
from ldm.sampling.schedulers import (
    SCHEDULERS,
    check_scheduler,
    make_scheduler,
    scheduler_from_label,
    stock_scheduler_name,
)

EXPECTED = {
    "ddim": ("DDIMScheduler", "DDIM"),
    "pndm": ("PNDMScheduler", "PLMS"),
    "euler": ("EulerDiscreteScheduler", "Euler"),
    "euler-a": ("EulerAncestralDiscreteScheduler", "Euler a"),
    "heun": ("HeunDiscreteScheduler", "Heun"),
    "dpmpp-2m": ("DPMSolverMultistepScheduler", "DPM++ 2M"),
    "dpmpp-2m-karras": ("DPMSolverMultistepScheduler", "DPM++ 2M Karras"),
    "unipc": ("UniPCMultistepScheduler", "UniPC"),
    "lms": ("LMSDiscreteScheduler", "LMS"),
}


@pytest.fixture(scope="module")
def training_schedule():
    """The tiny config's DDPM training schedule, with v-prediction so that carrying it over is visible."""
    cfg = load_config(TINY, ["noise.prediction_type=v_prediction"])
    return build_noise_scheduler(cfg.noise)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_name_builds_its_class_over_the_training_schedule(training_schedule, name):
    scheduler = make_scheduler(name, training_schedule.config)
    class_name, label = EXPECTED[name]
    assert type(scheduler) is getattr(diffusers, class_name) and SCHEDULERS[name].label == label
    assert scheduler.config.prediction_type == "v_prediction"
    assert torch.allclose(scheduler.alphas_cumprod, training_schedule.alphas_cumprod)
    scheduler.set_timesteps(4)
    assert len(scheduler.timesteps) >= 4  # second-order Heun takes two model calls per step


def test_options_reach_the_scheduler(training_schedule):
    karras = make_scheduler("dpmpp-2m-karras", training_schedule.config)
    plain = make_scheduler("dpmpp-2m", training_schedule.config)
    assert karras.config.use_karras_sigmas and not plain.config.use_karras_sigmas
    assert karras.config.algorithm_type == "dpmsolver++" and karras.config.solver_order == 2
    assert make_scheduler("pndm", training_schedule.config).config.skip_prk_steps
    assert SCHEDULERS["euler-a"].ancestral and not SCHEDULERS["euler"].ancestral


def test_unknown_names_are_one_line_errors_listing_the_choices(training_schedule):
    assert check_scheduler("heun") == "heun"
    for call in (lambda: check_scheduler("karras-magic"), lambda: make_scheduler("karras-magic", {})):
        with pytest.raises(LdmError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and "'karras-magic'" in message and all(name in message for name in EXPECTED)


def test_labels_map_back_to_names():
    for name, (_, label) in EXPECTED.items():
        assert scheduler_from_label(label) == name
        assert scheduler_from_label(name) == name
    with pytest.raises(LdmError, match="unsupported sampler 'DPM2 a'"):
        scheduler_from_label("DPM2 a")


def test_stock_name_only_where_ours_builds_the_folder_scheduler_unchanged():
    assert stock_scheduler_name({"_class_name": "DDIMScheduler"}) == "ddim"
    assert stock_scheduler_name({"_class_name": "EulerDiscreteScheduler"}) == "euler"
    # stock DPM-Solver and PNDM run with other options than ours; DDPM is not one of ours at all
    for other in ("DPMSolverMultistepScheduler", "PNDMScheduler", "DDPMScheduler"):
        assert stock_scheduler_name({"_class_name": other}) is None
