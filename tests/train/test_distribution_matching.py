"""Distribution matching distillation (distill.objective dmd): the gradient points from the fake score's side to
the real one's and vanishes where they agree, the student's samples follow LCM sampling, the fake-score network
learns the student's samples, bad settings are refused in one line, checkpoints hold the fake-score network and
its optimizer so a resume goes on exactly, and a short run from a blurry 1-step student brings its samples'
distribution closer to the teacher's."""

from functools import partial

import pytest
import torch
from diffusers import LCMScheduler
from safetensors.torch import load_file
from support import TINY, kill_then_resume, make_random_pipeline, run_script

from ldm.config import load_config
from ldm.errors import LdmError
from ldm.pipeline_folder import load_pipeline
from ldm.train.distribution_matching import (
    FAKE_OPTIMIZER,
    FAKE_WEIGHTS,
    distribution_matching_loss,
    dm_gradient,
    student_x0,
)

DISTILL = "configs/distill_lcm.yaml"
# configs/distill_lcm.yaml at the tiny model's size, the matching objective alone
TINY_DMD = ["data.source=shapes", "data.resolution=32", "data.shapes_count=64", "data.num_workers=0",
            "train_unet.batch_size=8", "train_unet.learning_rate=1e-4", "train_unet.warmup_steps=0",
            "train_unet.mixed_precision=no", "train_unet.sample_every=100000", "train_unet.validation_prompts=[]",
            "distill.default_steps=1", "distill.objective=dmd", "distill.fake_updates=2"]


def _moved(x0, real, fake):
    """x0 after one gradient-descent step on the matching loss."""
    x0 = x0.clone().requires_grad_(True)
    distribution_matching_loss(x0, dm_gradient(x0, real, fake)).backward()
    return (x0 - x0.grad * x0.numel()).detach()  # the mean's 1/numel undone: a unit step along the gradient


def test_the_gradient_vanishes_where_the_fake_score_agrees_with_the_real_one():
    gen = torch.Generator().manual_seed(0)
    x0, real = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    assert torch.equal(dm_gradient(x0, real, real), torch.zeros_like(x0))
    assert torch.equal(_moved(x0, real, real), x0)


def test_the_gradient_moves_a_sample_toward_the_real_score_and_away_from_the_fake_one():
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 4, 8, 8, generator=gen)
    real = x0 + 0.5  # the teacher would denoise the sample's noised copy upward ...
    fake = x0 - 0.5  # ... the student's own distribution downward
    step = _moved(x0, real, fake) - x0
    assert bool((step > 0).all())  # toward the real prediction's side, on every element
    # normalised by the distance to the real prediction (DMD's form): (fake - real) / mean |x0 - real| = -2
    assert torch.allclose(step, torch.full_like(x0, 2.0))
    # per sample: a row whose scores agree does not move while the others do
    fake[0] = real[0]
    step = _moved(x0, real, fake) - x0
    assert torch.equal(step[0], torch.zeros_like(step[0])) and bool((step[1:] > 0).all())


@pytest.fixture(scope="module")
def random_student(tmp_path_factory):
    return make_random_pipeline(tmp_path_factory.mktemp("student") / "student", seed=1, student=True)


def test_the_student_samples_as_lcm_sampling_does(random_student):
    # student_x0 from pure noise over the student's sampling timesteps is LCMScheduler's multistep sampler
    pipe = load_pipeline(random_student, "cpu")
    unet, scheduler = pipe.unet, LCMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(3, original_inference_steps=50)
    gen = torch.Generator().manual_seed(2)
    noise, embeds = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 16, 384, generator=gen)
    w_embed = torch.randn(2, 256, generator=gen)
    with torch.no_grad():
        ours = student_x0(unet, noise, embeds, w_embed, scheduler.timesteps, 2, scheduler.alphas_cumprod,
                          "epsilon", torch.Generator().manual_seed(3), grad=False)
        x, theirs = noise, None
        step_gen = torch.Generator().manual_seed(3)
        for t in scheduler.timesteps:
            out = unet(x, t, timestep_cond=w_embed, encoder_hidden_states=embeds).sample
            x, theirs = scheduler.step(out, t, x, generator=step_gen, return_dict=False)
    assert torch.allclose(ours, theirs, atol=1e-5), float((ours - theirs).abs().max())


@pytest.fixture(scope="module")
def random_teacher(tmp_path_factory):
    return make_random_pipeline(tmp_path_factory.mktemp("teacher") / "teacher", seed=3)


def _target(teacher, out, *overrides):
    from ldm.train.targets import make_target

    cfg = load_config(DISTILL, [*TINY_DMD, f"finetune.init_from={teacher}", *overrides])
    target = make_target(cfg, out)
    torch.manual_seed(0)
    target.build()
    return target, cfg


def test_the_fake_score_network_learns_the_samples_it_is_shown(random_teacher, tmp_path):
    # samples of a narrow made-up distribution (two patterns, slightly noised; a random student's would be
    # unbounded): the fake-score network's denoising loss on them, at held-out noise, falls as it updates
    target, cfg = _target(random_teacher, tmp_path, "distill.fake_learning_rate=3e-3")
    gen = torch.Generator().manual_seed(4)
    patterns, embeds = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(8, 16, 384, generator=gen)
    w_embed = torch.zeros(8, 256)

    def samples(g: torch.Generator) -> torch.Tensor:
        return patterns.repeat(4, 1, 1, 1) + 0.1 * torch.randn(8, 4, 8, 8, generator=g)

    def held_out() -> float:
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            return sum(float(target.fake.loss(samples(g), embeds, w_embed, g)) for _ in range(8)) / 8

    before = held_out()
    for _ in range(40):
        target.fake.update(samples(gen), embeds, w_embed, gen)
    after = held_out()
    assert after < 0.7 * before, (after, before)
    teacher_weights = target.teacher.state_dict()["conv_in.weight"]
    assert not torch.equal(target.fake.net.state_dict()["conv_in.weight"], teacher_weights)  # its own copy trained


def test_the_matching_loss_trains_the_student_only_through_its_samples(random_teacher, tmp_path):
    target, cfg = _target(random_teacher, tmp_path)
    target.place(torch.device("cpu"), cfg.train_unet, "no")
    latents, embeds = torch.zeros(8, 4, 8, 8), torch.randn(8, 16, 384, generator=torch.Generator().manual_seed(7))
    loss = target.loss(target.unet, latents, embeds, torch.Generator().manual_seed(8), cfg.train_unet)
    fake_grads = [p.grad.clone() for p in target.fake.net.parameters() if p.grad is not None]
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and target.fake_loss > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in target.unet.parameters())
    # the scores only judged the samples: the student's backward reaches neither the fake network nor the teacher
    after = [p.grad for p in target.fake.net.parameters() if p.grad is not None]
    assert fake_grads and all(torch.equal(a, b) for a, b in zip(fake_grads, after, strict=True))
    assert all(p.grad is None for p in target.teacher.parameters())
    assert len(target.buffer) == 0  # no trajectory term: the teacher solved nothing


def test_config_checks_for_distribution_matching():
    for override, message in [("distill.objective=dmd2", "'distill.objective'"),
                              ("distill.fake_updates=0", "'distill.fake_updates': must be at least 1"),
                              ("distill.fake_learning_rate=0", "'distill.fake_learning_rate': must be > 0"),
                              ("distill.trajectory_weight=-1", "'distill.trajectory_weight': must be >= 0")]:
        with pytest.raises(LdmError, match=message):
            load_config(TINY, [override])
    cfg = load_config(TINY, ["distill.fake_learning_rate=null"])
    assert cfg.distill.fake_learning_rate is None and cfg.distill.objective == "consistency"
    with pytest.raises(LdmError, match="'distill.default_steps'.*at most distill.skeleton_steps"):
        load_config(DISTILL, ["distill.objective=dmd", "distill.default_steps=8", "distill.skeleton_steps=4"])


def _dmd(teacher, out, *extra, check=True, script="scripts/train_unet.py", env=None):
    return run_script(script, "--config", DISTILL, "--init-from", str(teacher), "--output-dir", str(out),
                      *TINY_DMD, *extra, check=check, env=env)


@pytest.mark.slow
def test_interrupted_matching_resumes_to_the_same_weights(random_teacher, tmp_path):
    # the fake-score network and its optimizer are in each checkpoint: killed at step 7 and resumed from step 6,
    # the run ends where an uninterrupted one does (student, and fake-score network)
    short = ["train_unet.max_steps=10", "train_unet.checkpoint_every=6", "distill.default_steps=2"]
    reference = tmp_path / "reference"
    _dmd(random_teacher, reference, *short)
    run = tmp_path / "run"
    assert "resumed from step 6" in kill_then_resume(partial(_dmd, random_teacher), run, 7, *short)
    saved = run / "checkpoints" / "unet" / "checkpoint-6"
    assert (saved / FAKE_WEIGHTS).is_file() and (saved / FAKE_OPTIMIZER).is_file()
    for part in ("unet/diffusion_pytorch_model.safetensors", f"checkpoints/unet/checkpoint-10/{FAKE_WEIGHTS}"):
        a, b = load_file(str(reference / part)), load_file(str(run / part))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part


JUDGED = ["a red circle on a white background", "a blue square on a black background",
          "a yellow triangle on a gray background"]


def _energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """2 E|a - b| - E|a - a'| - E|b - b'| over two sets of images: 0 when they are drawn alike (Szekely)."""
    a, b = a.flatten(1), b.flatten(1)
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


@torch.no_grad()
def _distance_to_teacher(teacher_folder, student, seeds: int = 32) -> float:
    """How far a student's 1-step images (guidance 3) lie from the teacher's 20-step guided DDIM images, as sets
    (one per prompt, the same noise for both): the energy distance in pixels, averaged over the prompts."""
    from ldm.train.consistency import DDIMSkeleton, guidance_embedding
    from ldm.train.trajectories import teacher_trajectories

    pipe = load_pipeline(teacher_folder, "cpu")
    alphas = pipe.scheduler.alphas_cumprod
    noise = torch.randn(seeds, 4, 8, 8, generator=torch.Generator().manual_seed(123))
    w, top = torch.full((seeds,), 2.0), torch.tensor([999])
    uncond, _ = pipe.encode_prompt([""], "cpu", 1, False)
    total = 0.0
    for prompt in JUDGED:
        embeds, _ = pipe.encode_prompt([prompt] * seeds, "cpu", 1, False)
        _, ends = teacher_trajectories(pipe.unet, noise, embeds, uncond, w, DDIMSkeleton.from_alphas(alphas, 20),
                                       alphas, "epsilon")
        ours = student_x0(student, noise, embeds, guidance_embedding(w, 256), top, 0, alphas, "epsilon",
                          torch.Generator(), grad=False)
        images = [pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample.clamp(-1, 1) for z in (ends, ours)]
        total += _energy_distance(*images)
    return total / len(JUDGED)


def test_matching_brings_a_blurry_one_step_students_images_toward_the_teachers(tiny_run, tmp_path):
    # at first the student's one step is the teacher's single jump from noise: the mean of what the teacher would
    # draw, a blur; 60 steps of matching alone (no teacher solve) make its images far more like the teacher's
    # (measured 6.54 -> 3.86; 150 steps at rate 2e-4 and batch 32: 6.90 -> 6.13)
    from ldm.train.targets import guided_copy

    before = _distance_to_teacher(tiny_run, guided_copy(load_pipeline(tiny_run, "cpu").unet, 256))
    out = tmp_path / "dmd"
    _dmd(tiny_run, out, "train_unet.max_steps=60", "train_unet.batch_size=16", "train_unet.learning_rate=1e-3",
         "train_unet.warmup_steps=10", "distill.fake_updates=3", "data.shapes_count=512")
    after = _distance_to_teacher(tiny_run, load_pipeline(out, "cpu").unet)
    assert after < 0.8 * before, (after, before)
