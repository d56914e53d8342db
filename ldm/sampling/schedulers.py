"""Sampling schedulers by name, with the labels AUTOMATIC1111 writes into PNG parameters.

Classes are named, not imported: the table answers scripts' flag checks without importing diffusers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ldm.errors import LdmError


@dataclass(frozen=True)
class SchedulerChoice:
    """A diffusers scheduler class (by name), the config it needs, and its AUTOMATIC1111 label."""

    class_name: str
    label: str
    options: dict = field(default_factory=dict)
    ancestral: bool = False

    @property
    def cls(self) -> type:
        """The diffusers class."""
        return getattr(importlib.import_module("diffusers"), self.class_name)


SCHEDULERS: dict[str, SchedulerChoice] = {
    "ddim": SchedulerChoice("DDIMScheduler", "DDIM"),
    "pndm": SchedulerChoice("PNDMScheduler", "PLMS", {"skip_prk_steps": True}),
    "euler": SchedulerChoice("EulerDiscreteScheduler", "Euler"),
    "euler-a": SchedulerChoice("EulerAncestralDiscreteScheduler", "Euler a", ancestral=True),
    "heun": SchedulerChoice("HeunDiscreteScheduler", "Heun"),
    "dpmpp-2m": SchedulerChoice("DPMSolverMultistepScheduler", "DPM++ 2M",
                                {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp-2m-karras": SchedulerChoice("DPMSolverMultistepScheduler", "DPM++ 2M Karras",
                                       {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "unipc": SchedulerChoice("UniPCMultistepScheduler", "UniPC"),
    "lms": SchedulerChoice("LMSDiscreteScheduler", "LMS"),
    # for few-step students (Latent Consistency Distillation); each step re-noises, like an ancestral sampler
    "lcm": SchedulerChoice("LCMScheduler", "LCM", ancestral=True),
}
LABELS = {choice.label: name for name, choice in SCHEDULERS.items()}


def check_scheduler(name: str) -> str:
    """Return a valid scheduler name or raise a one-line error listing the choices."""
    if name not in SCHEDULERS:
        raise LdmError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    return name


def scheduler_from_label(label: str) -> str:
    """Our scheduler name for an AUTOMATIC1111 sampler label (or our own name)."""
    if label in SCHEDULERS:
        return label
    if label not in LABELS:
        raise LdmError(f"unsupported sampler {label!r}: ldm knows {', '.join(LABELS)}")
    return LABELS[label]


def stock_scheduler_name(base_config) -> str | None:
    """Our name for the scheduler a folder ships with, when ours builds it exactly as stock diffusers does."""
    for name, choice in SCHEDULERS.items():
        if choice.class_name == base_config.get("_class_name") and not choice.options:
            return name
    return None


def make_scheduler(name: str, base_config):
    """A fresh scheduler of the named kind over a pipeline's noise schedule (betas, prediction type)."""
    choice = SCHEDULERS[check_scheduler(name)]
    # Training configs (DDPM) carry options like variance_type that other schedulers warn about; diffusers'
    # from_config drops keys a class does not take.
    return choice.cls.from_config(base_config, **choice.options)
