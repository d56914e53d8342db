"""Early stop when the preview stops changing: a run whose fixed-seed previews look the same twice in a row has
learnt what it will learn at this rate."""

from __future__ import annotations

import torch


def preview_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean absolute pixel change between two previews of the same seeds (images in [0, 1])."""
    return float((after.float() - before.float()).abs().mean())


class PreviewSettle:
    """Whether the last `patience` previews each moved less than `tolerance` from the one before (patience 0:
    never)."""

    def __init__(self, patience: int, tolerance: float):
        self.patience, self.tolerance = patience, tolerance
        self.last: torch.Tensor | None = None
        self.changes: list[float] = []  # each preview's change from the one before

    def update(self, images: torch.Tensor) -> bool:
        """Record a preview; True once the run has settled."""
        if self.last is not None:
            self.changes.append(preview_change(self.last, images))
        self.last = images.detach().cpu()
        recent = self.changes[-self.patience:]
        return self.patience > 0 and len(recent) == self.patience and max(recent) < self.tolerance


class SettlesOnPreviews:
    """A teach Target's early stop (mixed in before its Target class): settled() once teach.settle_patience
    previews in a row each moved less than teach.settle_tolerance."""

    _settle: PreviewSettle | None = None

    def settled(self, preview: torch.Tensor) -> bool:
        """Whether the previews stopped changing."""
        if self._settle is None:
            t = self.cfg.teach
            self._settle = PreviewSettle(t.settle_patience, t.settle_tolerance)
        return self._settle.update(preview)
