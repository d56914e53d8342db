"""Latent Consistency Distillation on the tiny model: the loss falls, 2-step samples follow the prompt's colour,
the result is a student folder (LCMScheduler, its own defaults) that stock diffusers samples, and resume is exact.
Trajectory distillation (distill.objective trajectory): the teacher's solve is its DDIM sampler, the buffer keeps
the latest solves and is filled before the first step (alike after a resume), a share of solves can be for
recombined captions, and a short run brings a student's jumps closer to where the teacher's solves end."""

import json
import subprocess
import sys
import textwrap
from functools import partial

import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler
from safetensors.torch import load_file
from support import TINY, kill_then_resume, run_script

from ldm.errors import LdmError
from ldm.folders import folder_student_steps
from ldm.pipeline_folder import load_pipeline
from ldm.sampling.export import export_pipeline
from ldm.sampling.requests import ImageSpec, Settings, folder_defaults
from ldm.sampling.sampler import load_sampling_model
from ldm.train.consistency import ConsistencyDraw, DDIMSkeleton, consistency_loss
from ldm.train.trajectories import TrajectoryBuffer, teacher_trajectories, trajectory_loss
from ldm.train.unet import pipeline_from_checkpoint

DISTILL = "configs/distill_lcm.yaml"
# configs/distill_lcm.yaml at the tiny model's size: 200 steps take about 15 s on 2 cores
TINY_DISTILL = ["data.source=shapes", "data.resolution=32", "data.shapes_count=512", "data.num_workers=0",
                "train_unet.batch_size=32", "train_unet.learning_rate=1e-3", "train_unet.warmup_steps=20",
                "train_unet.max_steps=200", "train_unet.mixed_precision=no", "train_unet.sample_every=100000",
                "train_unet.checkpoint_every=100", "train_unet.validation_prompts=[]", "distill.default_steps=2"]


def _distill(teacher, out, *extra, check=True, script="scripts/train_unet.py", env=None):
    return run_script(script, "--config", DISTILL, "--init-from", str(teacher), "--output-dir", str(out),
                      *TINY_DISTILL, *extra, check=check, env=env)


@pytest.fixture(scope="module")
def student(tiny_run, tmp_path_factory):
    """The tiny trained pipeline distilled into a few-step student through the real script."""
    out = tmp_path_factory.mktemp("student")
    _distill(tiny_run, out)
    return out


def _colour_score(images: torch.Tensor) -> float:
    return float((images[:, 0] - images[:, 2]).mean())


def test_the_result_is_a_student_folder_with_its_defaults(student):
    index = json.loads((student / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "LCMScheduler"]
    assert json.loads((student / "unet" / "config.json").read_text())["time_cond_proj_dim"] == 256
    model = load_sampling_model(student, "cpu")
    assert model.is_student and (model.defaults.scheduler, model.defaults.steps) == ("lcm", 2)
    assert folder_defaults(student) == (model.factor, model.defaults) and folder_student_steps(student) == 2
    assert model.resolve(Settings()).scheduler == "lcm"


def test_two_step_samples_follow_the_colour_in_the_prompt(student):
    model = load_sampling_model(student, "cpu")
    red = model.generate([ImageSpec("a red square on a black background", k) for k in range(6)])
    blue = model.generate([ImageSpec("a blue square on a black background", k) for k in range(6)])
    # measured 0.12 at 2 steps (the teacher: 0.13 at 2 DDIM steps, 0.30 at 20)
    assert _colour_score(red) - _colour_score(blue) > 0.05, (_colour_score(red), _colour_score(blue))


def test_distillation_lowers_the_consistency_loss(tiny_run, student):
    teacher = load_pipeline(tiny_run, "cpu")
    trained = load_pipeline(student, "cpu").unet
    start = type(trained).from_config(trained.config)  # what the run started from: the teacher, zero projection
    start.load_state_dict(teacher.unet.state_dict(), strict=False)
    torch.nn.init.zeros_(start.time_embedding.cond_proj.weight)
    sched = teacher.scheduler
    skeleton = DDIMSkeleton.from_alphas(sched.alphas_cumprod, 50)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(32, 4, 8, 8, generator=gen)  # stand-ins for data latents (unit variance, like scaled ones)
    with torch.no_grad():
        embeds, _ = teacher.encode_prompt(["a red circle on a white background"] * 32, "cpu", 1, False)
        uncond, _ = teacher.encode_prompt([""], "cpu", 1, False)
    draw = ConsistencyDraw.sample(latents.shape, 50, (1.0, 4.0), gen)

    def loss(unet) -> float:
        with torch.no_grad():  # each network as its own target: how self-consistent its trajectories are
            return float(consistency_loss(unet, teacher.unet, unet, latents, embeds, uncond, draw, skeleton, sched,
                                          256, 0.001))

    assert loss(trained) < 0.8 * loss(start), (loss(trained), loss(start))


def test_the_skeleton_holds_the_timesteps_lcm_samples_at():
    scheduler = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    skeleton = DDIMSkeleton.from_alphas(scheduler.alphas_cumprod, 50)
    for steps in (1, 2, 4, 8):
        scheduler.set_timesteps(steps, original_inference_steps=50)
        assert set(scheduler.timesteps.tolist()) <= set(skeleton.timesteps.tolist()), steps


def test_lcm_sampling_is_reproducible_and_walks_end_on_the_plain_images(student):
    from ldm.sampling.walks import render_walk

    model = load_sampling_model(student, "cpu", "bf16")
    settings = Settings(steps=3)  # the multistep sampler draws fresh noise between steps
    one = model.generate([ImageSpec("a red square", 4)], settings)
    batch = model.generate([ImageSpec("a blue circle", 9), ImageSpec("a red square", 4)], settings)
    assert torch.equal(one[0], batch[1])  # per-image generators: the batch does not change an image
    _, frames = render_walk(model, ["a red square"], [4, 7], 5, settings)
    plain = model.generate([ImageSpec("a red square", 7)], settings)
    assert torch.equal(frames[0], one[0]) and torch.equal(frames[-1], plain[0])


def test_stock_diffusers_samples_the_exported_student_without_ldm(student, tmp_path):
    exported = export_pipeline(student, tmp_path / "export")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ldm"] = None
        import torch
        from diffusers import StableDiffusionPipeline
        pipe = StableDiffusionPipeline.from_pretrained({str(exported)!r}, local_files_only=True)
        assert type(pipe.scheduler).__name__ == "LCMScheduler", type(pipe.scheduler)
        pipe.set_progress_bar_config(disable=True)
        g = [torch.Generator().manual_seed(k) for k in range(2)]
        images = pipe(["a red square on a black background"] * 2, num_inference_steps=2, guidance_scale=3.0,
                      generator=g, output_type="pt").images
        torch.save(images, {str(tmp_path / "out.pt")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stock = torch.load(tmp_path / "out.pt")
    assert stock.shape == (2, 3, 32, 32) and float(stock.std()) > 0.05
    assert _colour_score(stock) > 0  # a red square: more red than blue


def test_interrupted_distillation_resumes_to_the_same_weights(tiny_run, tmp_path):
    short = ["train_unet.max_steps=20", "train_unet.checkpoint_every=10", "train_unet.batch_size=8",
             "data.shapes_count=64"]
    reference = tmp_path / "reference"
    _distill(tiny_run, reference, *short)
    run = tmp_path / "run"
    assert "resumed from step 10" in kill_then_resume(partial(_distill, tiny_run), run, 15, *short)
    final = "unet/diffusion_pytorch_model.safetensors"
    a, b = load_file(str(reference / final)), load_file(str(run / final))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_distillation_refuses_what_it_cannot_do(student, tmp_path):
    again = _distill(student, tmp_path / "again", check=False)
    assert again.returncode == 2 and "already a few-step student" in again.stderr
    assert "Traceback" not in again.stderr
    alone = run_script("scripts/train_unet.py", "--config", DISTILL, "--output-dir", str(tmp_path / "alone"),
                       check=False)
    assert alone.returncode == 2 and "pass --init-from" in alone.stderr and "Traceback" not in alone.stderr
    wide = run_script("scripts/train_unet.py", "--config", DISTILL, "--init-from", str(student), "--output-dir",
                      str(tmp_path / "wide"), "train_unet.guidance_scale=9", check=False)
    assert wide.returncode == 2 and "outside the distilled range" in wide.stderr


def test_config_checks_for_distillation():
    from ldm.config import load_config

    with pytest.raises(LdmError, match="even number"):
        load_config(TINY, ["distill.guidance_embedding_dim=7"])
    with pytest.raises(LdmError, match="'finetune.method'"):
        load_config(TINY, ["finetune.method=consistency"])


def test_the_last_checkpoint_exports_the_student_the_run_wrote(student, tmp_path):
    # a checkpoint of a distillation exports through the run's own writer: the student's UNet, LCMScheduler,
    # and the teacher folder's VAE and encoder, not a fresh run's (which has no VAE in its folder)
    out = pipeline_from_checkpoint(student / "checkpoints" / "unet" / "checkpoint-200", tmp_path / "model")
    exported = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    written = load_file(student / "unet" / "diffusion_pytorch_model.safetensors")
    assert exported.keys() == written.keys() and all(torch.equal(exported[k], written[k]) for k in written)
    assert json.loads((out / "model_index.json").read_text())["scheduler"] == ["diffusers", "LCMScheduler"]
    assert "decay" not in json.loads((out / "unet" / "config.json").read_text())  # no EMAModel settings
    a = load_sampling_model(out, "cpu").generate([ImageSpec("a red square", 3)], Settings())
    b = load_sampling_model(student, "cpu").generate([ImageSpec("a red square", 3)], Settings())
    assert torch.equal(a, b)


def test_distillation_goes_on_from_an_earlier_student(tiny_run, student, tmp_path):
    # distill.student_from: the run starts from the student's weights (guidance projection included), not from
    # the teacher's with a zero projection; one step at a vanishing rate leaves the result at that starting point
    again = tmp_path / "again"
    _distill(tiny_run, again, f"distill.student_from={student}", "train_unet.max_steps=1",
             "train_unet.learning_rate=1e-12", "train_unet.warmup_steps=0", "train_unet.ema_decay=0")
    final = "unet/diffusion_pytorch_model.safetensors"
    a, b = load_file(str(student / final)), load_file(str(again / final))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert b["time_embedding.cond_proj.weight"].abs().sum() > 0

    not_student = _distill(tiny_run, tmp_path / "x", f"distill.student_from={tiny_run}", check=False)
    assert not_student.returncode == 2 and "is not a few-step student" in not_student.stderr
    other = _distill(tiny_run, tmp_path / "y", f"distill.student_from={student}", "distill.guidance_embedding_dim=64",
                     check=False)
    assert other.returncode == 2 and "student of another UNet" in other.stderr
    missing = _distill(tiny_run, tmp_path / "z", f"distill.student_from={tmp_path / 'nowhere'}", check=False)
    assert missing.returncode == 2 and "config key 'distill.student_from': no UNet at" in missing.stderr
    assert "Traceback" not in not_student.stderr + other.stderr + missing.stderr


PROMPTS = ["a red circle on a white background", "a blue square on a black background"] * 8


def _teacher(folder):
    pipe = load_pipeline(folder, "cpu")
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(PROMPTS, "cpu", 1, False)
        uncond, _ = pipe.encode_prompt([""], "cpu", 1, False)
    return pipe, embeds, uncond


def test_the_teacher_solve_is_its_ddim_sampler_on_the_skeleton(tiny_run):
    pipe, embeds, uncond = _teacher(tiny_run)
    sched = pipe.scheduler
    skeleton = DDIMSkeleton.from_alphas(sched.alphas_cumprod, 50)
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    points, end = teacher_trajectories(pipe.unet, noise, embeds[:4], uncond, torch.zeros(4), skeleton,
                                       sched.alphas_cumprod, sched.config.prediction_type)
    # w = 0 is guidance 1 (no unconditional pull): the plain DDIM sampler over the same 50 timesteps
    ddim = DDIMScheduler.from_config(sched.config, timestep_spacing="trailing", set_alpha_to_one=True)
    ddim.set_timesteps(50)
    assert ddim.timesteps.flip(0).tolist() == skeleton.timesteps.tolist()
    x = noise
    with torch.no_grad():
        for k, t in enumerate(ddim.timesteps):
            assert torch.allclose(points[:, 49 - k].float(), x, atol=2e-3)
            x = ddim.step(pipe.unet(x, t, encoder_hidden_states=embeds[:4]).sample, t, x).prev_sample
    assert torch.allclose(end, x, atol=1e-4), float((end - x).abs().max())


def test_the_buffer_keeps_the_latest_solves_and_draws_within_them():
    buffer = TrajectoryBuffer(3)
    for k in range(5):
        buffer.add(torch.full((1, 2, 1), float(k)), torch.full((1, 1), float(k)), torch.full((1, 2), float(k)),
                   torch.tensor([float(k)]))
    assert len(buffer) == 3 and sorted(buffer.ends.flatten().tolist()) == [2.0, 3.0, 4.0]
    solves, index = buffer.draw(100, torch.Generator().manual_seed(0))
    assert set(solves.tolist()) == {0, 1, 2} and set(index.tolist()) == {0, 1}


def _distance(unet, teacher_folder) -> float:
    """How far the student's jumps land from the ends of fresh teacher solves (the trajectory loss, no gradients)."""
    pipe, embeds, uncond = _teacher(teacher_folder)
    sched = pipe.scheduler
    skeleton = DDIMSkeleton.from_alphas(sched.alphas_cumprod, 50)
    gen = torch.Generator().manual_seed(7)
    w = 1.0 + 3.0 * torch.rand(len(PROMPTS), generator=gen)
    buffer = TrajectoryBuffer(len(PROMPTS))
    points, end = teacher_trajectories(pipe.unet, torch.randn(len(PROMPTS), 4, 8, 8, generator=gen), embeds, uncond,
                                       w, skeleton, sched.alphas_cumprod, sched.config.prediction_type)
    buffer.add(points, end, embeds, w)
    solves, index = buffer.draw(256, gen)
    with torch.no_grad():
        return float(trajectory_loss(unet, buffer, solves, index, skeleton, sched.alphas_cumprod,
                                     sched.config.prediction_type, 256, 0.001, torch.device("cpu")))


def test_trajectory_distillation_brings_the_student_to_the_teacher_solves(tiny_run, student, tmp_path):
    out = tmp_path / "trajectory"
    _distill(tiny_run, out, f"distill.student_from={student}", "distill.objective=trajectory",
             "distill.buffer_solves=256", "distill.solves_per_step=4", "train_unet.max_steps=100",
             "train_unet.learning_rate=3e-4", "train_unet.ema_decay=0.9")
    before = _distance(load_pipeline(student, "cpu").unet, tiny_run)
    after = _distance(load_pipeline(out, "cpu").unet, tiny_run)
    assert after < 0.8 * before, (after, before)
    model = load_sampling_model(out, "cpu")
    red = model.generate([ImageSpec("a red square on a black background", k) for k in range(6)])
    blue = model.generate([ImageSpec("a blue square on a black background", k) for k in range(6)])
    assert _colour_score(red) - _colour_score(blue) > 0.05, (_colour_score(red), _colour_score(blue))


def test_config_checks_for_trajectory_distillation():
    from ldm.config import load_config

    with pytest.raises(LdmError, match="'distill.objective'"):
        load_config(TINY, ["distill.objective=trajectories"])
    for key in ("distill.buffer_solves", "distill.solves_per_step", "distill.solve_batch"):
        with pytest.raises(LdmError, match=f"'{key}'.*at least 1"):
            load_config(TINY, [f"{key}=0"])
    with pytest.raises(LdmError, match="'distill.initial_solves'.*>= 0"):
        load_config(TINY, ["distill.initial_solves=-1"])


def _fill(teacher_folder, out, start, *overrides):
    """A trajectory target on the tiny teacher whose buffer before_steps filled, from micro-batches that each
    give 8 captions' embeddings (their step in the first value, so the test sees which steps were read)."""
    from ldm.config import load_config
    from ldm.train.targets import make_target

    cfg = load_config(DISTILL, [*TINY_DISTILL, f"finetune.init_from={teacher_folder}", "distill.objective=trajectory",
                                "distill.solve_batch=16", *overrides])
    target = make_target(cfg, out)
    target.build()
    _, embeds, _ = _teacher(teacher_folder)

    def batches(step, micro):
        e = embeds[:8].clone()
        e[:, 0, 0] = step
        return torch.zeros(8, 4, 8, 8), e, torch.Generator().manual_seed(1000 * step + micro)

    target.before_steps(batches, start, cfg.train_unet, torch.device("cpu"), [["a red square"], ["a blue circle"]])
    return target


def test_the_buffer_is_filled_before_the_first_step_and_alike_after_a_resume(tiny_run, tmp_path):
    a = _fill(tiny_run, tmp_path / "a", 5, "distill.initial_solves=40")
    b = _fill(tiny_run, tmp_path / "b", 5, "distill.initial_solves=40")
    assert len(a.buffer) == 40 and not a.queue
    # the captions of the micro-batches from the start step on, 8 a step, the last one cut to what was wanted
    assert a.buffer.embeds[:40, 0, 0].tolist() == [float(5 + k // 8) for k in range(40)]
    assert torch.equal(a.buffer.points[:40], b.buffer.points[:40]) and torch.equal(a.buffer.ends[:40],
                                                                                   b.buffer.ends[:40])
    assert a.buffer.w[:40].min() >= 1.0 and a.buffer.w[:40].max() <= 4.0  # guidance 2-5, embedded as w - 1
    assert len(_fill(tiny_run, tmp_path / "c", 5, "distill.initial_solves=40", "distill.buffer_solves=24").buffer) == 24
    assert len(_fill(tiny_run, tmp_path / "d", 5, "distill.initial_solves=0").buffer) == 0
    consistency = _fill(tiny_run, tmp_path / "e", 5, "distill.initial_solves=40", "distill.objective=consistency")
    assert not hasattr(consistency, "buffer")  # its own Target, which solves nothing


def test_a_run_that_recombines_captions_imports_no_dataset_module(tiny_run, tmp_path):
    # a recombination avoids the wordings the dataset holds out for its evaluation, which the dataset declares
    # (ldm.data.offers): the shapes declare none, so no dataset's tables (the emoji ones) load in the run
    listing, wrapper = tmp_path / "modules.txt", tmp_path / "train_unet.py"
    wrapper.write_text(textwrap.dedent(f"""
        import atexit, runpy, sys
        atexit.register(lambda: open({str(listing)!r}, "w").write("\\n".join(sorted(sys.modules))))
        sys.argv[0] = "scripts/train_unet.py"
        runpy.run_path("scripts/train_unet.py", run_name="__main__")
    """))
    _distill(tiny_run, tmp_path / "run", "train_unet.max_steps=2", "distill.objective=trajectory",
             "distill.initial_solves=8", "distill.recombined_share=1", script=str(wrapper))
    modules = listing.read_text().splitlines()
    assert "ldm.train.solve_prompts" in modules and "ldm.data.offers" in modules
    assert not [m for m in modules if m.startswith("ldm.data.emoji")]


def test_a_share_of_solves_is_for_recombined_captions_with_the_same_noise_and_guidance(tiny_run, tmp_path):
    from itertools import combinations

    from ldm.models import encode_prompts

    plain = _fill(tiny_run, tmp_path / "a", 0, "distill.initial_solves=32")
    mixed = _fill(tiny_run, tmp_path / "b", 0, "distill.initial_solves=32", "distill.recombined_share=1")
    half = _fill(tiny_run, tmp_path / "c", 0, "distill.initial_solves=32", "distill.recombined_share=0.5")
    # noise (each solve's first point) and guidance are drawn before the recombinations, as without them
    for other in (mixed, half):
        assert torch.equal(other.buffer.points[:32, -1], plain.buffer.points[:32, -1])
        assert torch.equal(other.buffer.w[:32], plain.buffer.w[:32])
    # every recombined solve is for words of one of the images' captions ("a red square", "a blue circle"), in order
    wordings = [" ".join(c) for caption in ("a red square", "a blue circle")
                for k in (1, 2, 3) for c in combinations(caption.split(), k)]
    with torch.no_grad():
        known = encode_prompts(mixed.tokenizer, mixed.text_encoder, wordings)
    match = (mixed.buffer.embeds[:32, None] - known[None]).abs().flatten(2).amax(2) < 1e-4
    assert match.any(1).all()
    assert len(set(match.float().argmax(1).tolist())) > 4  # many wordings, both images
    batch_rows = (half.buffer.embeds[:32] - plain.buffer.embeds[:32]).abs().flatten(1).amax(1) == 0
    assert 6 < int(batch_rows.sum()) < 26  # about half kept the micro-batch's caption
    with pytest.raises(LdmError, match="'distill.recombined_share'"):
        from ldm.config import load_config
        load_config(TINY, ["distill.recombined_share=1.5"])


def test_the_weights_of_a_smaller_student_are_the_teachers_cut_to_its_shape():
    from ldm.train.student_shape import cut_weights

    source = {"a": torch.arange(12.0).view(3, 4), "b": torch.ones(2), "c": torch.zeros(1)}
    target = {"a": torch.full((2, 3), -1.0), "b": torch.full((2,), -1.0), "c": torch.full((2,), -1.0),
              "d": torch.full((1,), -1.0)}
    out, counts = cut_weights(source, target)
    assert torch.equal(out["a"], torch.tensor([[0.0, 1, 2], [4, 5, 6]]))  # the leading rows and columns
    assert torch.equal(out["b"], torch.ones(2)) and torch.equal(out["c"], target["c"])  # too small: kept fresh
    assert counts == {"copied": 1, "cut": 1, "fresh": 2}


def test_a_student_of_the_teachers_own_shape_starts_as_the_teacher(tiny_run):
    from ldm.train.student_shape import student_unet
    from ldm.train.targets import guided_copy

    teacher = load_pipeline(tiny_run, "cpu").unet
    same, copy = student_unet(teacher, 256), guided_copy(teacher, 256)
    assert all(torch.equal(a, copy.state_dict()[k]) for k, a in same.state_dict().items())
    small = student_unet(teacher, 256, [16, 32])
    assert list(small.config.block_out_channels) == [16, 32] and small.config.time_cond_proj_dim == 256
    assert torch.equal(small.state_dict()["conv_in.weight"], teacher.state_dict()["conv_in.weight"][:16])
    assert not small.time_embedding.cond_proj.weight.any()
    with pytest.raises(LdmError, match=r"'distill.student_channels': the teacher's UNet has 2 levels"):
        student_unet(teacher, 256, [16, 32, 64])
    with pytest.raises(LdmError, match=r"\[12, 32\] must be positive multiples of 8"):
        student_unet(teacher, 256, [12, 32])


def test_a_narrower_student_learns_the_teacher_solves(tiny_run, tmp_path):
    from ldm.train.student_shape import student_unet

    out = tmp_path / "narrow"
    _distill(tiny_run, out, "distill.objective=trajectory", "distill.student_channels=[16,32]",
             "distill.buffer_solves=256", "distill.solves_per_step=4", "distill.initial_solves=64",
             "train_unet.max_steps=150", "train_unet.learning_rate=1e-3", "train_unet.ema_decay=0.9")
    assert json.loads((out / "unet" / "config.json").read_text())["block_out_channels"] == [16, 32]
    teacher = load_pipeline(tiny_run, "cpu").unet
    before = _distance(student_unet(teacher, 256, [16, 32]), tiny_run)  # where it started: the teacher, cut
    after = _distance(load_pipeline(out, "cpu").unet, tiny_run)
    assert after < 0.8 * before, (after, before)
    model = load_sampling_model(out, "cpu")  # a student folder like any other, smaller
    assert model.is_student and model.generate([ImageSpec("a red square", 1)]).shape == (1, 3, 32, 32)
