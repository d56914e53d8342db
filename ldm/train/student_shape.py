"""A few-step student smaller than its teacher (distill.student_channels, distill.student_layers).

A UNet's FLOPs a step grow with the square of its widths and in proportion to its layers a level, so a narrower or
shallower student is the lever left where a CPU's matrix rate bounds a live walk's frames per second. The student
starts from the teacher's weights cut to its shape (each of its tensors takes the teacher's tensor of the same name,
its leading channels and first layers) rather than from noise; what has no counterpart starts fresh, and the
trajectory objective then teaches it where the teacher's solves end.
"""

from __future__ import annotations

import logging
import math

import torch
from diffusers import UNet2DConditionModel

from ldm.errors import LdmError

log = logging.getLogger(__name__)


def check_student_shape(teacher_config, channels: list[int] | None, layers: int | None) -> None:
    """One line when the student's shape cannot be a UNet of the teacher's kind."""
    levels = len(teacher_config.block_out_channels)
    if channels is not None:
        if len(channels) != levels:
            raise LdmError(f"config key 'distill.student_channels': the teacher's UNet has {levels} levels "
                           f"({list(teacher_config.block_out_channels)}), got {len(channels)} ({channels})")
        groups = teacher_config.norm_num_groups
        heads = teacher_config.attention_head_dim  # diffusers' legacy name for the number of heads
        step = math.lcm(groups, heads) if isinstance(heads, int) else groups
        if any(c < 1 or c % step for c in channels):
            raise LdmError(f"config key 'distill.student_channels': {channels} must be positive multiples of "
                           f"{step} (the UNet's {groups} norm groups and {heads} attention heads)")
    if layers is not None and layers < 1:
        raise LdmError(f"config key 'distill.student_layers': must be at least 1, got {layers}")


def cut_weights(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> tuple[dict, dict[str, int]]:
    """`target`'s tensors, each replaced by `source`'s of the same name cut to its shape where that fits (as big or
    bigger in every dimension); the counts of tensors copied whole, cut and left as they were."""
    out, counts = {}, {"copied": 0, "cut": 0, "fresh": 0}
    for name, mine in target.items():
        theirs = source.get(name)
        if theirs is None or theirs.dim() != mine.dim() or any(t < m for t, m in zip(theirs.shape, mine.shape)):
            out[name] = mine
            counts["fresh"] += 1
            continue
        out[name] = theirs[tuple(slice(0, m) for m in mine.shape)].clone()
        counts["copied" if theirs.shape == mine.shape else "cut"] += 1
    return out, counts


def guided_copy(teacher: torch.nn.Module, guidance_dim: int) -> UNet2DConditionModel:
    """The teacher's UNet with a guidance embedding (time_cond_proj_dim) whose projection is zero: at first it
    is the teacher whatever the guidance asked for."""
    unet = UNet2DConditionModel.from_config(teacher.config, time_cond_proj_dim=guidance_dim)
    missing, unexpected = unet.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not key.startswith("time_embedding.cond_proj") for key in missing):
        raise LdmError(f"the student does not take the teacher's weights: missing {missing}, unexpected {unexpected}")
    torch.nn.init.zeros_(unet.time_embedding.cond_proj.weight)
    return unet


def student_unet(teacher: torch.nn.Module, guidance_dim: int, channels: list[int] | None = None,
                 layers: int | None = None) -> UNet2DConditionModel:
    """A UNet of the teacher's kind with these widths and layers a level and a guidance embedding of
    `guidance_dim`, started from the teacher's weights cut to it; the guidance projection is zero. With neither
    given: the teacher's own shape and weights (guided_copy)."""
    if channels is None and layers is None:
        return guided_copy(teacher, guidance_dim)
    check_student_shape(teacher.config, channels, layers)
    unet = UNet2DConditionModel.from_config(
        teacher.config, block_out_channels=list(channels or teacher.config.block_out_channels),
        layers_per_block=layers or teacher.config.layers_per_block, time_cond_proj_dim=guidance_dim)
    weights, counts = cut_weights(teacher.state_dict(), unet.state_dict())
    unet.load_state_dict(weights)
    torch.nn.init.zeros_(unet.time_embedding.cond_proj.weight)
    ours, theirs = sum(p.numel() for p in unet.parameters()), sum(p.numel() for p in teacher.parameters())
    log.info("student UNet %s x %d layers: %.2fM parameters (teacher %.2fM); tensors from the teacher: %d whole, "
             "%d cut, %d fresh", list(unet.config.block_out_channels), unet.config.layers_per_block, ours / 1e6,
             theirs / 1e6, counts["copied"], counts["cut"], counts["fresh"])
    return unet
