"""Trajectory distillation: a few-step student regressed onto where the teacher's own trajectories end.

Consistency distillation (ldm.train.consistency) teaches the student one DDIM step at a time and lets
agreement travel from t = 0 up the skeleton through the target network; on a small budget the student's
jump from pure noise stays far from the teacher's. This objective (Luhman & Luhman 2021, "Knowledge
distillation in iterative generative models", applied at every point of the trajectory as a consistency
model asks) runs the teacher's guided DDIM solve to the end and trains the student, through the same
boundary conditions, to map every point of that trajectory straight to its end. Each solve costs
2 x skeleton_steps teacher evaluations, so solves are kept in a buffer and each is drawn from many times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ldm.train.consistency import (
    DDIMSkeleton,
    boundary_scalings,
    guidance_embedding,
    guided_ddim_step,
    pseudo_huber,
    x0_and_noise,
)


def teacher_trajectories(teacher, noise: torch.Tensor, embeds: torch.Tensor, uncond: torch.Tensor, w: torch.Tensor,
                         skeleton: DDIMSkeleton, alphas_cumprod: torch.Tensor,
                         prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's guided DDIM solve from pure noise down the skeleton: (every point, (B, N, ...) by skeleton
    index, in float16) and (where each ends: its guided clean latent at the last point, float32)."""
    n = len(skeleton.timesteps)
    x = noise.float()
    points = torch.empty((x.shape[0], n, *x.shape[1:]), dtype=torch.float16, device=x.device)
    w = w.to(x.device)
    alphas = alphas_cumprod.to(x.device)
    with torch.no_grad():
        for i in reversed(range(n)):
            points[:, i] = x.half()
            t = torch.full((x.shape[0],), int(skeleton.timesteps[i]), device=x.device)
            x, x0 = guided_ddim_step(teacher, x, t, embeds, uncond, w, skeleton.alphas_prev[i].to(x.device), alphas,
                                     prediction_type)
    return points, x0


@dataclass
class TrajectoryBuffer:
    """The latest `capacity` teacher solves, oldest replaced first; on the CPU (an SD-sized one would crowd a GPU)."""

    capacity: int
    points: torch.Tensor | None = None  # (capacity, N, C, H, W) float16
    ends: torch.Tensor | None = None  # (capacity, C, H, W)
    embeds: torch.Tensor | None = None  # (capacity, L, D)
    w: torch.Tensor | None = None  # (capacity,) guidance - 1, as the student embeds it
    size: int = 0
    next: int = 0

    def __len__(self) -> int:
        return self.size

    def add(self, points: torch.Tensor, ends: torch.Tensor, embeds: torch.Tensor, w: torch.Tensor) -> None:
        """Store solves, replacing the oldest once full."""
        if self.points is None:
            def empty(like: torch.Tensor) -> torch.Tensor:
                return torch.empty((self.capacity, *like.shape[1:]), dtype=like.dtype)
            self.points, self.ends, self.embeds, self.w = empty(points), empty(ends), empty(embeds), empty(w)
        for k in range(points.shape[0]):
            i = self.next
            self.points[i], self.ends[i], self.embeds[i], self.w[i] = (
                points[k].cpu(), ends[k].cpu(), embeds[k].cpu(), w[k].cpu())
            self.next = (i + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(solve, skeleton index) pairs, uniformly over what is held."""
        solves = torch.randint(0, self.size, (count,), generator=generator)
        index = torch.randint(0, self.points.shape[1], (count,), generator=generator)
        return solves, index


def trajectory_loss(student, buffer: TrajectoryBuffer, solves: torch.Tensor, index: torch.Tensor,
                    skeleton: DDIMSkeleton, alphas_cumprod: torch.Tensor, prediction_type: str, guidance_dim: int,
                    huber_c: float, device: torch.device) -> torch.Tensor:
    """d(f_theta(x_{t_n}), x_0): the student at drawn points of buffered solves against where each solve ended."""
    x = buffer.points[solves, index].to(device, torch.float32)
    t = skeleton.timesteps[index].to(device)
    w = buffer.w[solves]
    c_skip, c_out = (s.view(-1, 1, 1, 1).to(device) for s in boundary_scalings(t))
    out = student(x, t, timestep_cond=guidance_embedding(w, guidance_dim).to(device),
                  encoder_hidden_states=buffer.embeds[solves].to(device)).sample
    x0, _ = x0_and_noise(out, x, t, alphas_cumprod.to(device), prediction_type)
    return pseudo_huber(c_skip * x + c_out * x0, buffer.ends[solves].to(device), huber_c)
