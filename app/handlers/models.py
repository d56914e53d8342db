"""The models a server holds: the main one, the live one, each by the name a request picks it by, and LoRAs."""

from __future__ import annotations

from app.handlers.checks import choice, largest_side
from ldm.errors import LdmError
from ldm.sampling.sampler import SamplingModel

NO_LORA = "none"
# Live images take at most this many of a few-step student's steps: the shipped student renders one in 60 ms at
# 2 steps against 95 ms at its default 4 (2 cores), with the same top-1 fidelity (0.835; generalisation
# 0.53 against 0.61). The full render stays one click away.
LIVE_STEPS = 2


class Models:
    """The loaded models and LoRAs, and which of them a request means."""

    def __init__(self, main: SamplingModel, live: SamplingModel | None = None, loras: dict[str, str] | None = None):
        self.main = main
        # what the live controls render with: a few-step student when there is one, else the model itself
        self.live = live or main
        # what Generate may render with, by name: the model (full quality) and a live student (fast)
        self.by_name = {main.name: main}
        if self.live is not main:
            self.by_name[self.live.name if self.live.name != main.name else f"{main.name} (student)"] = self.live
        self.loras = loras or {}  # name shown in the picker -> file

    @property
    def largest_side(self) -> int:
        """The widest or tallest image a request may ask for, in pixels (a multiple of the size step)."""
        return largest_side(self.main)

    @property
    def live_steps(self) -> int:
        """Steps of a live image: a student's default up to LIVE_STEPS; another model's own default."""
        steps = self.live.defaults.steps
        return min(steps, LIVE_STEPS) if self.live.is_student else steps

    def pick(self, name: str | None) -> SamplingModel:
        """The loaded model of that name (None: the main one), or a one-line refusal."""
        if name is None:
            return self.main
        if choice("model", name) not in self.by_name:
            raise LdmError(f"unknown model {name!r}: this server has {', '.join(map(repr, self.by_name))}")
        return self.by_name[name]

    def lora(self, model: SamplingModel, name: str | None) -> str | None:
        """The file of the LoRA a request names for `model` (None for none), or a one-line refusal."""
        if name in (None, NO_LORA):
            return None
        if model is not self.main and model is not self.live:  # the live student is the main model's: its LoRAs fit
            raise LdmError(f"the LoRAs here are for {self.main.name}; pick that model to use one")
        if choice("LoRA", name) not in self.loras:
            raise LdmError(f"unknown LoRA {name!r}")
        return self.loras[name]

    def that_made(self, fields: dict[str, str]) -> str:
        """The name of the model that a PNG's fields name (by its hash, else its name), else the main one."""
        for name, model in self.by_name.items():
            if fields.get("Model hash") == model.model_hash:
                return name
        return fields["Model"] if fields.get("Model") in self.by_name else self.main.name
