"""What a UNet run trains, keeps as EMA and writes at the end: one Target per kind of run.

The UNet trainer builds its Target once (`make_target`) and its loop then has no branches on the kind of
run: a fresh UNet, a full fine-tune of a pipeline folder, LoRA adapters on one (optionally on its
CLIP text encoder too), or a few-step student distilled from one, one Target per objective (consistency,
trajectory, distribution matching). A new kind of run is a new Target class here and its name in TARGETS or STUDENTS.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from diffusers import LCMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel

from ldm.config import Config, TrainConfig, dump_config, vae_factor
from ldm.data.offers import evaluation_offer
from ldm.errors import LdmError
from ldm.folders import find_vae, is_student, part_folder, refuse_student_teacher
from ldm.io import write_text_atomic
from ldm.models import (
    build_noise_scheduler,
    build_unet,
    cross_attention_dim,
    embed_prompts,
    encode_prompts,
    load_text_encoder,
    load_unet,
    load_vae,
    use_training_attention,
)
from ldm.pipeline_folder import sampling_scheduler, save_pipeline
from ldm.train.consistency import ConsistencyDraw, DDIMSkeleton, consistency_loss, draw_guidance, guidance_embedding
from ldm.train.distribution_matching import (
    FakeScore,
    distribution_matching_loss,
    dm_gradient,
    dm_timesteps,
    score_predictions,
    student_x0,
)
from ldm.train.finetune import (
    add_lora,
    add_text_encoder_lora,
    load_ema_params,
    load_init_components,
    require_text_encoder_lora,
    save_ema_params,
    save_lora,
)
from ldm.train.losses import diffusion_loss
from ldm.train.optimization import make_ema, make_optimizer
from ldm.train.runtime import progress
from ldm.train.solve_prompts import recombined_prompts
from ldm.train.student_shape import guided_copy, student_unet
from ldm.train.trajectories import TrajectoryBuffer, teacher_trajectories, trajectory_loss

log = logging.getLogger("ldm")
EMA_DIR = "unet_ema"  # a full UNet's EMA weights inside a checkpoint, as EMAModel.save_pretrained writes them


class FreshUNet:
    """A new UNet on the config's frozen VAE and text encoder; every weight trains; the result is a pipeline."""

    encode_prompts_each_step = False  # prompts come from the latent cache
    preview_scheduler = "ddim"  # how the run's sample grids are drawn

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None):
        self.cfg, self.output_dir = cfg, output_dir
        self.vae_dir = find_vae(cfg, output_dir, vae_path)
        self.vae = load_vae(self.vae_dir)
        self.tokenizer, self.text_encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
        self.vae.requires_grad_(False).eval()

    def build(self) -> None:
        """Create the UNet and the training noise schedule, and say which parameters train (after seeding)."""
        latent_size = self.cfg.data.resolution // vae_factor(self.cfg)
        self.unet = build_unet(self.cfg.unet, self.vae.config.latent_channels, latent_size,
                               cross_attention_dim(self.text_encoder))
        self.noise_scheduler = build_noise_scheduler(self.cfg.noise)
        self.trainable = list(self.unet.parameters())

    def place(self, device: torch.device, tc: TrainConfig, mixed_precision: str) -> None:
        """Move the frozen models the loss uses to the training device."""
        self.vae.to(device)

    def loss(self, unet: torch.nn.Module, latents: torch.Tensor, embeds: torch.Tensor,
             generator: torch.Generator, tc: TrainConfig) -> torch.Tensor:
        """The denoising loss of one micro-batch."""
        return diffusion_loss(unet, self.noise_scheduler, latents, embeds, generator, tc.snr_gamma)

    def before_steps(self, batches: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Generator]],
                     start: int, tc: TrainConfig, device: torch.device, caption_lists: Sequence[Sequence[str]],
                     show_progress: bool = False) -> None:
        """Work the loss needs done before the first step (of this process: also after --resume), given the
        training images' captions; none here."""

    def make_ema(self, decay: float) -> EMAModel:
        """EMA of the trainable weights."""
        return make_ema(self.trainable, decay, model_cls=UNet2DConditionModel, model_config=self.unet.config)

    def settled(self, preview: torch.Tensor) -> bool:
        """Whether the run may end before train_unet.max_steps, given its newest preview; never here."""
        return False

    def save_ema(self, ema: EMAModel, folder: Path) -> None:
        """Write the EMA weights into a checkpoint folder."""
        ema.save_pretrained(str(folder / EMA_DIR))

    def load_ema(self, ema: EMAModel, folder: Path) -> None:
        """Restore what save_ema wrote, reading its safetensors only (EMAModel's own loader would take a .bin)."""
        shadow = load_unet(folder / EMA_DIR)
        settings = json.loads((folder / EMA_DIR / "config.json").read_text())
        state = ema.state_dict()
        state.update({key: settings[key] for key in state if key in settings and key != "shadow_params"})
        state["shadow_params"] = [p.detach() for p in shadow.parameters()]
        ema.load_state_dict(state)

    def metrics(self) -> dict[str, float]:
        """The Target's own figures for the step's log, beside the loss; none here."""
        return {}

    def save_extra(self, folder: Path) -> None:
        """Write what the Target trains beside the UNet (a fake-score network and its optimizer) into a checkpoint
        folder; nothing here."""

    def load_extra(self, folder: Path) -> None:
        """Restore what save_extra wrote; nothing here."""

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """The run folder as a pipeline; the VAE is referenced when it already lives in the run folder."""
        own_vae = self.vae_dir.resolve() == (self.output_dir / "vae").resolve()
        save_pipeline(self.output_dir, self.cfg, unet, None if own_vae else self.vae,
                      sampling_scheduler(self.noise_scheduler), self.tokenizer, text_encoder)


class FullFinetune(FreshUNet):
    """Every UNet weight of a pipeline folder trains; its VAE, text encoder and schedulers are kept."""

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None = None):
        self.cfg, self.output_dir = cfg, output_dir
        self.init = load_init_components(cfg.finetune.init_from)
        self.vae, self.tokenizer, self.text_encoder = self.init.vae, self.init.tokenizer, self.init.text_encoder
        self.vae.requires_grad_(False).eval()

    def build(self) -> None:
        """The folder's UNet and noise schedule; every parameter trains."""
        self.unet, self.noise_scheduler = self.init.unet, self.init.noise_scheduler
        self.trainable = list(self.unet.parameters())

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """A pipeline folder with the folder's VAE, scheduler and text encoder (referenced when packaged)."""
        self.cfg.text.encoder = self.init.encoder_spec
        save_pipeline(self.output_dir, self.cfg, unet, self.vae, self.init.sampling_scheduler, self.tokenizer,
                      text_encoder)


class LoraFinetune(FullFinetune):
    """LoRA adapters on a pipeline folder's UNet (and CLIP text encoder); the result is a LoRA file."""

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None = None):
        # the adapted encoder must embed prompts every step, so the cached embeddings are not used
        self.encode_prompts_each_step = cfg.finetune.lora_text_encoder
        if self.encode_prompts_each_step:
            require_text_encoder_lora()  # before any model loads
        super().__init__(cfg, output_dir, vae_path)

    def build(self) -> None:
        """Freeze the folder's weights and add adapters; only the adapters train."""
        super().build()
        self.trainable = add_lora(self.unet, self.cfg.finetune)
        if self.encode_prompts_each_step:
            self.trainable += add_text_encoder_lora(self.text_encoder, self.cfg.finetune)

    def make_ema(self, decay: float) -> EMAModel:
        """EMA of the adapter weights alone."""
        return make_ema(self.trainable, decay)

    def save_ema(self, ema: EMAModel, folder: Path) -> None:
        """The adapters' EMA as one safetensors file."""
        save_ema_params(ema, folder)

    def load_ema(self, ema: EMAModel, folder: Path) -> None:
        """Restore what save_ema wrote."""
        load_ema_params(ema, folder)

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """The LoRA file diffusers' load_lora_weights reads, and the resolved config beside it."""
        path = save_lora(unet, self.output_dir, text_encoder if self.encode_prompts_each_step else None)
        log.info("LoRA -> %s", path)
        write_text_atomic(self.output_dir / "ldm_config.yaml", dump_config(self.cfg))


class StudentDistill(FullFinetune):
    """What every few-step student distilled from a pipeline folder (the teacher) shares; one subclass per
    distill.objective says what it learns from.

    The student is the teacher's UNet plus a guidance embedding (time_cond_proj_dim), so guidance is
    distilled in; the result is a pipeline folder with an LCMScheduler.
    """

    preview_scheduler = "lcm"

    def build(self) -> None:
        """The frozen teacher, its DDIM skeleton, and the student (teacher weights, a zero guidance projection)."""
        d = self.cfg.distill
        self.teacher = self.init.unet
        refuse_student_teacher(self.teacher.config, self.cfg.finetune.init_from)
        self.teacher.requires_grad_(False).eval()
        self.noise_scheduler = self.init.noise_scheduler
        total = self.noise_scheduler.config.num_train_timesteps
        if d.skeleton_steps > total:
            raise LdmError(f"config key 'distill.skeleton_steps': {d.skeleton_steps} is more than the teacher's "
                           f"{total} training timesteps")
        self.skeleton = DDIMSkeleton.from_alphas(self.noise_scheduler.alphas_cumprod, d.skeleton_steps)
        self.unet = student_unet(self.teacher, d.guidance_embedding_dim, d.student_channels, d.student_layers)
        if d.student_from:
            self.unet.load_state_dict(student_weights(d.student_from, self.unet))
        self.trainable = list(self.unet.parameters())
        self.uncond = embed_prompts(self.tokenizer, self.text_encoder, [""]).detach()

    def frozen_unets(self) -> list[torch.nn.Module]:
        """The UNets the loss runs without training them."""
        return [self.teacher]

    def place(self, device: torch.device, tc: TrainConfig, mixed_precision: str) -> None:
        """The frozen UNets on the device, with the attention the student trains with."""
        super().place(device, tc, mixed_precision)
        for net in self.frozen_unets():
            net.to(device)
            use_training_attention(net, device, tc.attention, mixed_precision)
        self.uncond = self.uncond.to(device)

    @property
    def w_range(self) -> tuple[float, float]:
        """The guidance the student learns, as w = scale - 1 (what it embeds)."""
        return self.cfg.distill.guidance_min - 1, self.cfg.distill.guidance_max - 1

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """A pipeline folder whose scheduler is an LCMScheduler over the teacher's noise schedule."""
        self.cfg.text.encoder = self.init.encoder_spec
        scheduler = LCMScheduler.from_config(self.noise_scheduler.config)
        save_pipeline(self.output_dir, self.cfg, unet, self.vae, scheduler, self.tokenizer, text_encoder)


class ConsistencyDistill(StudentDistill):
    """Latent Consistency Distillation (distill.objective 'consistency'): one guided DDIM step of the teacher
    at a time, the student matching the target network one skeleton point earlier (ldm.train.consistency).

    The EMA (train_unet.ema_decay, 0.95 in the paper) is the target network and the result; with EMA off,
    the student itself (without gradients) is the target.
    """

    def build(self) -> None:
        """The student as StudentDistill builds it, and a copy that holds the target network's weights."""
        super().build()
        self.target_net = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.ema = None

    def frozen_unets(self) -> list[torch.nn.Module]:
        """The teacher and the target network."""
        return [self.teacher, self.target_net]

    def make_ema(self, decay: float) -> EMAModel:
        """The target network's weights: an EMA of the student."""
        self.ema = super().make_ema(decay)
        return self.ema

    def loss(self, unet: torch.nn.Module, latents: torch.Tensor, embeds: torch.Tensor,
             generator: torch.Generator, tc: TrainConfig) -> torch.Tensor:
        """The consistency loss of one micro-batch against the current target network."""
        d = self.cfg.distill
        if self.ema is not None:
            self.ema.copy_to(self.target_net.parameters())
            target_net = self.target_net
        else:
            target_net = unet
        draw = ConsistencyDraw.sample(latents.shape, d.skeleton_steps, self.w_range, generator)
        return consistency_loss(unet, self.teacher, target_net, latents, embeds, self.uncond, draw, self.skeleton,
                                self.noise_scheduler, d.guidance_embedding_dim, d.huber_c)


class TrajectoryDistill(StudentDistill):
    """Trajectory distillation (distill.objective 'trajectory'): the student maps every point of the teacher's
    whole guided solves straight to where each ends (ldm.train.trajectories).

    Solves are kept in a buffer, each drawn from many times; a resumed run fills it afresh, from the same
    micro-batches' captions and generators, so it fills alike.
    """

    def build(self) -> None:
        """The student as StudentDistill builds it, an empty buffer of solves, and the queue of solves to run."""
        super().build()
        self.buffer = TrajectoryBuffer(self.cfg.distill.buffer_solves)
        self.queue: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (noise, embeds, w) to solve
        self.caption_lists: Sequence[Sequence[str]] = []  # the training images' captions, which solves may recombine
        # wordings the dataset holds out for its evaluation: no recombined solve may be one
        self.avoid = evaluation_offer(self.cfg.data).heldout_wordings()

    def before_steps(self, batches: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Generator]],
                     start: int, tc: TrainConfig, device: torch.device, caption_lists: Sequence[Sequence[str]],
                     show_progress: bool = False) -> None:
        """Keep the captions that solves recombine, and fill the buffer with distill.initial_solves teacher
        solves, for the captions of the micro-batches from `start` on (their noise drawn from those
        micro-batches' own generators, so a run that resumes at `start` fills it alike)."""
        d = self.cfg.distill
        self.caption_lists = caption_lists
        wanted = min(d.initial_solves, d.buffer_solves) - len(self.buffer)
        if wanted <= 0:
            return
        log.info("the teacher solves %d trajectories before the first step", wanted)
        bar = progress(wanted, 0, "teacher solves", show_progress)
        coming = ((step, micro) for step in itertools.count(start) for micro in range(tc.gradient_accumulation_steps))
        while wanted > 0:
            latents, embeds, generator = batches(*next(coming))
            rows = min(wanted, embeds.shape[0])
            self.queue_solves(latents.shape[1:], embeds[:rows].to(device), rows, generator)
            wanted -= rows
            if self.queued() >= d.solve_batch or wanted == 0:
                bar.update(self.queued())
                self.solve_queue(device)
        bar.close()

    def loss(self, unet: torch.nn.Module, latents: torch.Tensor, embeds: torch.Tensor,
             generator: torch.Generator, tc: TrainConfig) -> torch.Tensor:
        """Queue this micro-batch's solves (all its rows until the buffer holds a batch), solve the queue once it
        fills a solve batch, then the trajectory loss at points drawn from the buffer."""
        d = self.cfg.distill
        rows = embeds.shape[0]
        new = rows if len(self.buffer) + self.queued() < rows else min(d.solves_per_step, rows)
        self.queue_solves(latents.shape[1:], embeds[:new], new, generator)
        if len(self.buffer) < rows or self.queued() >= d.solve_batch:
            self.solve_queue(embeds.device)
        solves, index = self.buffer.draw(rows, generator)
        return trajectory_loss(unet, self.buffer, solves, index, self.skeleton, self.noise_scheduler.alphas_cumprod,
                               self.noise_scheduler.config.prediction_type, d.guidance_embedding_dim, d.huber_c,
                               embeds.device)

    def queue_solves(self, latent_shape: torch.Size, embeds: torch.Tensor, count: int,
                     generator: torch.Generator) -> None:
        """Queue `count` solves for these captions (a distill.recombined_share of them swapped for recombined
        ones), their noise, guidance and recombinations drawn from `generator`."""
        noise = torch.randn((count, *latent_shape), generator=generator)  # the data's latent shape
        w = draw_guidance(count, self.w_range, generator)
        # recombinations drawn after the rest, so that a run without them keeps its random stream
        self.queue.append((noise, self.recombined(embeds.detach(), generator), w))

    def recombined(self, embeds: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """These captions' embeddings with a distill.recombined_share of rows swapped for recombined captions
        (which rows and which captions drawn from `generator`; none drawn when the share is 0)."""
        share = self.cfg.distill.recombined_share
        if share > 0:
            swap = (torch.rand(embeds.shape[0], generator=generator) < share).nonzero()[:, 0]
            if len(swap):
                prompts = recombined_prompts(self.caption_lists, len(swap), generator, self.avoid)
                with torch.no_grad():
                    new = encode_prompts(self.tokenizer, self.text_encoder, prompts)
                embeds = embeds.clone()
                embeds[swap.to(embeds.device)] = new.to(embeds.device, embeds.dtype)
        return embeds

    def queued(self) -> int:
        """Solves waiting for the teacher."""
        return sum(len(w) for *_, w in self.queue)

    def solve_queue(self, device: torch.device) -> None:
        """Run the teacher on every queued solve at once (one batch uses the device far better than a few rows
        each step) and keep the results."""
        noise, embeds, w = (torch.cat(parts) for parts in zip(*self.queue, strict=True))
        self.queue = []
        points, ends = teacher_trajectories(self.teacher, noise.to(device), embeds, self.uncond, w, self.skeleton,
                                            self.noise_scheduler.alphas_cumprod,
                                            self.noise_scheduler.config.prediction_type)
        self.buffer.add(points, ends, embeds, w)


class DistributionMatchDistill(TrajectoryDistill):
    """Distribution matching (distill.objective 'dmd', DMD2: ldm.train.distribution_matching): the student's own
    samples, drawn from noise at its distill.default_steps (backward simulation), move along the difference of
    a fake-score network's prediction and the guided teacher's; the fake-score network (the teacher's weights at
    first, with a guidance embedding as the student's) learns the student's samples, distill.fake_updates
    steps of its own AdamW per student micro-batch. distill.trajectory_weight adds the trajectory loss (DMD's
    regression term: the teacher's solves, as objective 'trajectory'); at 0 the teacher solves nothing.

    It subclasses TrajectoryDistill for that term and for its recombined captions (distill.recombined_share),
    which the matching term uses too: it needs only prompts, so it can reach wordings no solve was made for.
    """

    def build(self) -> None:
        """The student and buffer as TrajectoryDistill builds them, the fake-score network and its optimizer, and
        the timesteps the student samples at."""
        super().build()
        d, tc = self.cfg.distill, self.cfg.train_unet
        net = guided_copy(self.teacher, d.guidance_embedding_dim).train()
        rate = tc.learning_rate if d.fake_learning_rate is None else d.fake_learning_rate
        optimizer = make_optimizer(net.parameters(), dataclasses.replace(tc, learning_rate=rate))
        self.fake = FakeScore(net, optimizer, self.noise_scheduler, tc.max_grad_norm)
        self.fake_loss = float("nan")  # the newest update's, for whoever watches the run
        sampler = LCMScheduler.from_config(self.noise_scheduler.config)  # as the result samples
        sampler.set_timesteps(d.default_steps, original_inference_steps=d.skeleton_steps)
        self.sample_timesteps = sampler.timesteps.clone()

    def place(self, device: torch.device, tc: TrainConfig, mixed_precision: str) -> None:
        """The frozen UNets and the fake-score network on the device."""
        super().place(device, tc, mixed_precision)
        self.fake.net.to(device)
        use_training_attention(self.fake.net, device, tc.attention, mixed_precision)

    def before_steps(self, batches: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Generator]],
                     start: int, tc: TrainConfig, device: torch.device, caption_lists: Sequence[Sequence[str]],
                     show_progress: bool = False) -> None:
        """The teacher's first solves only when the trajectory term is on; the captions to recombine either way."""
        self.caption_lists = caption_lists
        if self.cfg.distill.trajectory_weight > 0:
            super().before_steps(batches, start, tc, device, caption_lists, show_progress)

    def loss(self, unet: torch.nn.Module, latents: torch.Tensor, embeds: torch.Tensor,
             generator: torch.Generator, tc: TrainConfig) -> torch.Tensor:
        """The fake-score network's updates, then the matching loss (plus the weighted trajectory loss)."""
        weight = self.cfg.distill.trajectory_weight
        total = self.matching_loss(unet, latents.shape, embeds, generator)
        if weight > 0:
            total = total + weight * super().loss(unet, latents, embeds, generator, tc)
        return total

    def matching_loss(self, unet: torch.nn.Module, shape: torch.Size, embeds: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        """distill.fake_updates steps of the fake-score network on fresh student samples, then DMD's loss on one
        more batch of them (whose last sampling step keeps its gradients)."""
        embeds = self.recombined(embeds.detach(), generator)
        for _ in range(self.cfg.distill.fake_updates):
            x0, _, w_embed = self.student_samples(unet, shape, embeds, generator, grad=False)
            self.fake_loss = self.fake.update(x0, embeds, w_embed, generator)
        x0, w, w_embed = self.student_samples(unet, shape, embeds, generator, grad=True)
        schedule = self.noise_scheduler
        t = dm_timesteps(shape[0], schedule.config.num_train_timesteps, generator).to(x0.device)
        noise = torch.randn(shape, generator=generator).to(x0.device)
        real, fake = score_predictions(self.teacher, self.fake.net, x0, noise, t, embeds, self.uncond, w, w_embed,
                                       schedule.alphas_cumprod, schedule.config.prediction_type)
        return distribution_matching_loss(x0, dm_gradient(x0, real, fake))

    def student_samples(self, unet: torch.nn.Module, shape: torch.Size, embeds: torch.Tensor,
                        generator: torch.Generator, grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x0, w, w's embedding): the student's samples at guidance drawn over the distilled range, stopped after a
        drawn number of its sampling steps (DMD2's backward simulation)."""
        device = embeds.device
        w = draw_guidance(shape[0], self.w_range, generator)
        last = int(torch.randint(0, len(self.sample_timesteps), (1,), generator=generator))
        noise = torch.randn(shape, generator=generator).to(device)
        w_embed = guidance_embedding(w, self.cfg.distill.guidance_embedding_dim).to(device)
        x0 = student_x0(unet, noise, embeds, w_embed, self.sample_timesteps, last, self.noise_scheduler.alphas_cumprod,
                        self.noise_scheduler.config.prediction_type, generator, grad)
        return x0, w.to(device), w_embed

    def metrics(self) -> dict[str, float]:
        """The fake-score network's newest denoising loss on the student's samples (this process's)."""
        return {"fake_loss": self.fake_loss}

    def save_extra(self, folder: Path) -> None:
        """The fake-score network's weights and optimizer state."""
        self.fake.save(folder)

    def load_extra(self, folder: Path) -> None:
        """Restore what save_extra wrote."""
        self.fake.load(folder)



def student_weights(folder: str, like: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The UNet weights of an earlier student (a pipeline folder or its unet/), refused unless they fit `like`."""
    unet = load_unet(part_folder(folder, "unet", "UNet", "config key 'distill.student_from'"))
    if not is_student(unet.config):
        raise LdmError(f"config key 'distill.student_from': {folder} is not a few-step student (its UNet takes no "
                       "guidance embedding)")
    ours = like.state_dict()
    theirs = unet.state_dict()
    wrong = sorted(k for k in ours.keys() | theirs.keys() if k not in ours or k not in theirs
                   or ours[k].shape != theirs[k].shape)
    if wrong:
        raise LdmError(f"config key 'distill.student_from': {folder} is a student of another UNet ({len(wrong)} "
                       f"weights differ in name or shape, e.g. {wrong[0]})")
    return theirs


# what a run from a pipeline folder trains, by finetune.method; a distilled student (lcm) by distill.objective
TARGETS = {"full": FullFinetune, "lora": LoraFinetune}
STUDENTS = {"consistency": ConsistencyDistill, "trajectory": TrajectoryDistill, "dmd": DistributionMatchDistill}
TEACH_METHODS = ("dreambooth", "textual_inversion")  # their Targets build on the classes above (ldm/train/teach*)


def make_target(cfg: Config, output_dir: Path, vae_path: str | None = None) -> FreshUNet:
    """The Target the config asks for, with its frozen encoders loaded (the UNet comes with build())."""
    if not cfg.finetune.init_from:
        return FreshUNet(cfg, output_dir, vae_path)
    if cfg.finetune.method == "lcm":
        return STUDENTS[cfg.distill.objective](cfg, output_dir)
    if cfg.finetune.method == "dreambooth":
        from ldm.train.teach import DreamBoothLora

        return DreamBoothLora(cfg, output_dir)
    if cfg.finetune.method == "textual_inversion":
        from ldm.train.textual_inversion import TextualInversion

        return TextualInversion(cfg, output_dir)
    return TARGETS[cfg.finetune.method](cfg, output_dir)
