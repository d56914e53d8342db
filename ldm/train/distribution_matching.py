"""Distribution matching distillation (Yin et al. 2024, "Improved Distribution Matching Distillation", DMD2):
the loss as pure functions, and the fake-score network that learns the student's own distribution.

The student's samples are pushed where the teacher's distribution has more mass than the student's: at a
random noise level the teacher (with classifier-free guidance) gives the real score, a second UNet trained
on the student's own samples gives the fake score, and the sample moves along their difference. Unlike
trajectory matching, this needs no teacher solve and no pairing of noise with an end point: only prompts.
Paper symbols -> names here:
  G_theta -> student, x = G_theta(z) -> x0, mu_real -> the teacher (guided: real_x0), mu_fake -> FakeScore.net
  (fake_x0), t ~ U[T_min, T_max] -> t, the normalised gradient (mu_fake - mu_real) / |x - mu_real| -> grad,
  the two time-scale update rule -> FakeScore.update run distill.fake_updates times per student micro-batch.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ldm.train.consistency import boundary_scalings, x0_and_noise
from ldm.train.losses import diffusion_loss
from ldm.train.state_files import load_state, save_state

# DMD2's range of noise levels for the score difference: the ends carry little (no noise) or no (pure noise)
# information about where the two distributions differ
T_RANGE = (0.02, 0.98)
FAKE_WEIGHTS = "fake_score.safetensors"  # inside a checkpoint
FAKE_OPTIMIZER = "fake_score_optimizer.safetensors"


def dm_gradient(x0: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor) -> torch.Tensor:
    """DMD's normalised gradient on a sample x0, given the real and fake scores' clean predictions at its noised
    copy: (fake - real) / mean |x0 - real| per sample; gradient descent moves x0 toward the real prediction."""
    scale = (x0.float() - real_x0.float()).abs().mean(dim=tuple(range(1, x0.dim())), keepdim=True)
    return torch.nan_to_num((fake_x0.float() - real_x0.float()) / scale)


def distribution_matching_loss(x0: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 ||x0 - stopgrad(x0 - grad)||^2 (mean): its gradient with respect to x0 is `grad` / x0.numel()."""
    return 0.5 * F.mse_loss(x0.float(), (x0.float() - grad).detach())


def dm_timesteps(count: int, num_train_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """Noise levels for the score difference, uniform over T_RANGE of the schedule."""
    low, high = (int(f * num_train_timesteps) for f in T_RANGE)
    return torch.randint(low, high, (count,), generator=generator)


def student_x0(student, noise: torch.Tensor, embeds: torch.Tensor, w_embed: torch.Tensor, timesteps: torch.Tensor,
               last: int, alphas_cumprod: torch.Tensor, prediction_type: str, generator: torch.Generator,
               grad: bool) -> torch.Tensor:
    """The student's clean latent after sampling steps 0..last of `timesteps` from pure noise, as LCMScheduler
    samples (each step's output re-noised to the next timestep with fresh noise): DMD2's backward simulation.
    Only the last step keeps gradients (when `grad`)."""
    x, device = noise, noise.device
    alphas = alphas_cumprod.to(device)
    for k in range(last + 1):
        t = torch.full((x.shape[0],), int(timesteps[k]), device=device)
        with torch.set_grad_enabled(grad and k == last):
            out = student(x, t, timestep_cond=w_embed, encoder_hidden_states=embeds).sample
            pred, _ = x0_and_noise(out, x, t, alphas, prediction_type)
            c_skip, c_out = (s.view(-1, 1, 1, 1) for s in boundary_scalings(t))
            x0 = c_skip * x + c_out * pred
        if k < last:
            fresh = torch.randn(x.shape, generator=generator).to(device)
            a = alphas[int(timesteps[k + 1])]
            x = a.sqrt() * x0.detach() + (1 - a).sqrt() * fresh
    return x0


@torch.no_grad()
def score_predictions(teacher, fake, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor,
                      uncond: torch.Tensor, w: torch.Tensor, w_embed: torch.Tensor, alphas_cumprod: torch.Tensor,
                      prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(real_x0, fake_x0): the guided teacher's and the fake-score network's clean predictions at x0 noised to t."""
    alphas = alphas_cumprod.to(x0.device)
    a = alphas[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * x0.detach().float() + (1 - a).sqrt() * noise
    both = teacher(torch.cat([noisy, noisy]), torch.cat([t, t]),
                   encoder_hidden_states=torch.cat([embeds, uncond.expand_as(embeds)])).sample
    x0_both, _ = x0_and_noise(both, torch.cat([noisy, noisy]), torch.cat([t, t]), alphas, prediction_type)
    cond, free = x0_both.chunk(2)
    real = cond + w.view(-1, 1, 1, 1) * (cond - free)  # guidance scale w + 1, as the student embeds it
    out = fake(noisy, t, timestep_cond=w_embed, encoder_hidden_states=embeds).sample
    fake_x0, _ = x0_and_noise(out, noisy, t, alphas, prediction_type)
    return real, fake_x0


class FakeScore:
    """The fake-score network (mu_fake): a UNet that learns the student's own samples by the ordinary denoising
    loss, with its own AdamW; its weights and optimizer state go into each checkpoint."""

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, noise_scheduler, max_grad_norm: float):
        self.net, self.optimizer, self.noise_scheduler = net, optimizer, noise_scheduler
        self.max_grad_norm = max_grad_norm

    def loss(self, x0: torch.Tensor, embeds: torch.Tensor, w_embed: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
        """Its denoising loss on (detached) student samples."""
        def net(x, t, encoder_hidden_states):
            return self.net(x, t, timestep_cond=w_embed, encoder_hidden_states=encoder_hidden_states)

        return diffusion_loss(net, self.noise_scheduler, x0.detach().float(), embeds, generator)

    def update(self, x0: torch.Tensor, embeds: torch.Tensor, w_embed: torch.Tensor,
               generator: torch.Generator) -> float:
        """One optimizer step of the denoising loss on these student samples; returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self.loss(x0, embeds, w_embed, generator)
            loss.backward()
        params = [p for p in self.net.parameters() if p.grad is not None]
        average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        return float(loss.detach())

    def save(self, folder: Path) -> None:
        """Its weights and optimizer state as safetensors files in a checkpoint folder."""
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                  str(folder / FAKE_WEIGHTS))
        save_state(self.optimizer.state_dict(), folder / FAKE_OPTIMIZER)

    def load(self, folder: Path) -> None:
        """Restore what save wrote."""
        self.net.load_state_dict(load_file(str(folder / FAKE_WEIGHTS)))
        self.optimizer.load_state_dict(load_state(folder / FAKE_OPTIMIZER))


def average_gradients(params: list[torch.Tensor]) -> None:
    """Average gradients over the processes of a distributed run (the fake network is not wrapped by Accelerate,
    so every process would otherwise learn only its own share of the samples and drift apart)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:  # a sum, then divided: gloo (CPU runs) has no AVG
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()
