"""Latent Consistency Distillation (Luo et al. 2023, "Latent Consistency Models"): the loss as pure functions.

A student f(x, t, w, c) learns to map any point of the teacher's probability-flow trajectory straight to
its end. Each step takes a data latent x_0, noises it to a DDIM skeleton time t_{n+k}, lets the teacher
(with classifier-free guidance w) take one DDIM step back to t_n, and asks the student at t_{n+k} to
agree with the target network (an EMA of the student) at t_n. Paper symbols -> names here:
  x_{t_{n+k}} -> noisy, t_{n+k} -> start_t, t_n -> prev_t, x^phi_{t_n} -> x_prev,
  f_theta -> student, f_theta^- -> target_net, omega -> w (guidance scale - 1, as LCMScheduler's pipeline
  embeds it), c_skip / c_out -> the boundary scalings, d -> the pseudo-Huber distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0  # LCMScheduler's default timestep_scaling: keep the two in step


@dataclass(frozen=True)
class DDIMSkeleton:
    """The N-step DDIM timesteps the teacher's solver jumps between, and each one's previous alpha-bar."""

    timesteps: torch.Tensor  # (N,) long, ascending: t_1 ... t_N
    alphas_prev: torch.Tensor  # (N,) alpha-bar at the time one skeleton step earlier (t_0 -> alpha-bar_0)
    skip: int  # training timesteps between skeleton points (k in the paper)

    @classmethod
    def from_alphas(cls, alphas_cumprod: torch.Tensor, num_steps: int) -> DDIMSkeleton:
        """The skeleton over a noise schedule's alpha-bars (as LCMScheduler's original_inference_steps)."""
        total = len(alphas_cumprod)
        skip = total // num_steps
        timesteps = torch.arange(1, num_steps + 1) * skip - 1
        prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[timesteps[:-1]]])
        return cls(timesteps, prev.float(), skip)


def boundary_scalings(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) at timesteps t: f(x, t) = c_skip x + c_out x0_pred, so f(x, 0) = x (LCMScheduler's)."""
    scaled = TIMESTEP_SCALING * t.float()
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip, c_out


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device)[t.to(like.device)].view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def x0_and_noise(model_output: torch.Tensor, sample: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                 prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean latent and the noise a UNet output implies at x_t (epsilon or v prediction)."""
    alpha = _per_sample(alphas_cumprod.sqrt(), t, sample)
    sigma = _per_sample((1 - alphas_cumprod).sqrt(), t, sample)
    out = model_output.float()
    if prediction_type == "epsilon":
        return (sample - sigma * out) / alpha, out
    if prediction_type == "v_prediction":
        return alpha * sample - sigma * out, alpha * out + sigma * sample
    raise ValueError(f"unsupported prediction type {prediction_type!r}")


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of w, by the function diffusers' pipelines embed guidance with at sampling time."""
    from diffusers import StableDiffusionPipeline

    # a method that reads nothing from its pipeline: called unbound, so training and sampling cannot drift apart
    return StableDiffusionPipeline.get_guidance_scale_embedding(None, w.float().cpu(), embedding_dim=dim)


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt(|a - b|^2 + c^2) - c, averaged: the robust distance LCM trains with."""
    return (torch.sqrt((a.float() - b.float()) ** 2 + c**2) - c).mean()


def guided_ddim_step(teacher, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, uncond: torch.Tensor,
                     w: torch.Tensor, alpha_prev: torch.Tensor, alphas_cumprod: torch.Tensor,
                     prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step of the teacher with guidance w (scale - 1) from x at t to alpha-bar alpha_prev: (the new
    point, the guided clean latent). Conditional and unconditional passes run as one batch."""
    both = teacher(torch.cat([x, x]), torch.cat([t, t]),
                   encoder_hidden_states=torch.cat([embeds, uncond.expand_as(embeds)])).sample
    x0_both, eps_both = x0_and_noise(both, torch.cat([x, x]), torch.cat([t, t]), alphas_cumprod, prediction_type)
    (x0_c, x0_u), (eps_c, eps_u) = x0_both.chunk(2), eps_both.chunk(2)
    wv = w.view(-1, 1, 1, 1)
    x0, eps = x0_c + wv * (x0_c - x0_u), eps_c + wv * (eps_c - eps_u)
    return alpha_prev.sqrt() * x0 + (1 - alpha_prev).sqrt() * eps, x0


def draw_guidance(count: int, w_range: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Guidance w (scale - 1, as the student embeds it) uniform over w_range, on the CPU generator."""
    return w_range[0] + (w_range[1] - w_range[0]) * torch.rand(count, generator=generator)


@dataclass(frozen=True)
class ConsistencyDraw:
    """One micro-batch's random choices: noise, skeleton index and guidance (from the step's CPU generator)."""

    noise: torch.Tensor
    index: torch.Tensor
    w: torch.Tensor

    @classmethod
    def sample(cls, shape: torch.Size, num_steps: int, w_range: tuple[float, float],
               generator: torch.Generator) -> ConsistencyDraw:
        """Draw on the CPU generator so a seed means the same run on any device."""
        noise = torch.randn(shape, generator=generator)
        index = torch.randint(0, num_steps, (shape[0],), generator=generator)
        return cls(noise, index, draw_guidance(shape[0], w_range, generator))


def consistency_loss(student, teacher, target_net, latents: torch.Tensor, embeds: torch.Tensor,
                     uncond: torch.Tensor, draw: ConsistencyDraw, skeleton: DDIMSkeleton, noise_scheduler,
                     guidance_dim: int, huber_c: float) -> torch.Tensor:
    """The LCD loss for one micro-batch: d(f_theta(x_{t_{n+k}}), f_theta^-(x^phi_{t_n})).

    noise_scheduler: the teacher's (its alpha-bars, prediction type and add_noise)."""
    device = latents.device
    start_t = skeleton.timesteps[draw.index].to(device)
    prev_t = (start_t - skeleton.skip).clamp(min=0)
    alphas = noise_scheduler.alphas_cumprod.to(device)
    prediction_type = noise_scheduler.config.prediction_type
    noisy = noise_scheduler.add_noise(latents, draw.noise.to(device), start_t)
    w = draw.w.to(device)
    w_embed = guidance_embedding(draw.w, guidance_dim).to(device)

    # 1. the student at t_{n+k}, through the boundary condition
    c_skip, c_out = (s.view(-1, 1, 1, 1) for s in boundary_scalings(start_t))
    out = student(noisy, start_t, timestep_cond=w_embed, encoder_hidden_states=embeds).sample
    x0, _ = x0_and_noise(out, noisy, start_t, alphas, prediction_type)
    prediction = c_skip * noisy + c_out * x0

    with torch.no_grad():
        # 2. the teacher's guided DDIM step from t_{n+k} to t_n
        alpha_prev = skeleton.alphas_prev.to(device)[draw.index.to(device)].view(-1, 1, 1, 1)
        x_prev, _ = guided_ddim_step(teacher, noisy, start_t, embeds, uncond, w, alpha_prev, alphas, prediction_type)

        # 3. the target network at t_n
        c_skip_p, c_out_p = (s.view(-1, 1, 1, 1) for s in boundary_scalings(prev_t))
        out_p = target_net(x_prev, prev_t, timestep_cond=w_embed, encoder_hidden_states=embeds).sample
        x0_p, _ = x0_and_noise(out_p, x_prev, prev_t, alphas, prediction_type)
        target = c_skip_p * x_prev + c_out_p * x0_p

    return pseudo_huber(prediction, target, huber_c)
