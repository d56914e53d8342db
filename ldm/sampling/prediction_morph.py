"""Prompt morphs that blend the model's predictions instead of the prompts' embeddings (morph_mode 'predictions').

An embedding blend goes through the UNet's cross-attention, whose softmax turns a gradual change of text into
a sudden one: the image holds one prompt's look and then snaps to the other's within a frame or two. Blending
the two prompts' noise predictions at every step (a weighted sum of scores, as in composable diffusion) moves
the image a little with every change of the weight. It costs one more UNet row per morph frame: a guided
model runs three rows instead of two, a few-step student two instead of one.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class PredictionMorph:
    """The rows of a batch whose predictions are blended toward another prompt's, with that prompt's embedding
    and each row's weight; `attach` makes a UNet answer so for the duration of a denoising loop."""

    rows: list[int]  # image indices within the batch
    other: torch.Tensor  # (len(rows), tokens, dim): the morph-to prompt's conditioning
    weights: torch.Tensor  # (len(rows),): morph_t of each row

    @contextmanager
    def attach(self, unet: torch.nn.Module, images: int):
        """While inside, each UNet call on a batch of `images` (or twice that, guided: unconditional rows first,
        as diffusers' pipelines put them) also runs the morph rows on `other` and blends their predictions."""
        if not self.rows:
            yield
            return
        seen: dict[str, object] = {}

        def extend(module, args, kwargs):
            sample, timestep = args[0], args[1] if len(args) > 1 else kwargs["timestep"]
            n = sample.shape[0]
            index = torch.tensor(self.rows, device=sample.device) + (n - images)  # conditional rows come last
            seen.update(n=n, index=index)
            more = dict(kwargs)
            hidden = kwargs["encoder_hidden_states"]
            more["encoder_hidden_states"] = torch.cat([hidden, self.other.to(hidden)])
            if kwargs.get("timestep_cond") is not None:  # a student's guidance embedding, one row per image
                more["timestep_cond"] = _with_rows(kwargs["timestep_cond"], index)
            if torch.is_tensor(timestep) and timestep.ndim > 0 and timestep.shape[0] == n:
                timestep = _with_rows(timestep, index)
            if len(args) > 1:
                return (_with_rows(sample, index), timestep, *args[2:]), more
            more["timestep"] = timestep
            return (_with_rows(sample, index), *args[1:]), more

        def blend(module, args, kwargs, output):
            n, index = seen["n"], seen["index"]
            tuple_out = isinstance(output, tuple)
            pred = output[0] if tuple_out else output.sample
            mixed = pred[:n].clone()
            # lerp is exact at both ends and between equal predictions: a weight of 0 or 1, or a morph to the
            # same prompt, gives the plain prompt's image bit for bit
            mixed[index] = torch.lerp(pred[index], pred[n:], self.weights.to(pred)[:, None, None, None])
            if tuple_out:
                return (mixed, *output[1:])
            output.sample = mixed
            return output

        handles = [unet.register_forward_pre_hook(extend, with_kwargs=True),
                   unet.register_forward_hook(blend, with_kwargs=True)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _with_rows(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The tensor with its rows at `index` repeated at the end."""
    return torch.cat([tensor, tensor[index]])
