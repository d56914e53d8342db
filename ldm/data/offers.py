"""What a dataset offers its evaluation beyond its images and captions, as the dataset declares it (no torch).

Every dataset's images and captions are its evaluation's reference (ldm.evaluate.Reference): a dataset that
declares nothing more (the procedural shapes, a user's image folder) gets the measures those support, and the
evaluation names the ones it skips. A dataset may also offer wordings held out of training with the caption family
each must land in (generalisation), prompts with many right answers (variety) and the prompts that probe diversity
and walks. An image folder declares such a set by name in its dataset_info.json (`"evaluation": "emoji"`, written
by ldm.data.emoji); the set's tables live with their dataset and are imported only for a folder that names them,
so generic code (ldm.evaluate, ldm.train) reads an EvaluationOffer and never a dataset's own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ldm.config import DataConfig
from ldm.errors import LdmError, quoted
from ldm.folders import read_json

INFO_NAME = "dataset_info.json"


def caption_key(text: str) -> str:
    """How captions are compared for sameness: case and hyphens do not count."""
    return " ".join(text.casefold().replace("-", " ").split())


@dataclass(frozen=True)
class EvaluationOffer:
    """What a dataset offers its evaluation beyond its images and captions (by default nothing)."""

    name: str = ""  # the declared set, as dataset_info.json names it ("" for none)
    # wordings held out of training (no caption and no distillation solve may be one) -> lower-case keywords of the
    # caption family each must land in: a caption belongs when it contains any of them
    paraphrases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # prompts with many right answers ("a fruit") -> keywords of their family, as for the paraphrases
    general_prompts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # prompts for the diversity and walk measures; none: the dataset's own first distinct captions
    probe_prompts: tuple[str, ...] = ()
    noun: str = "images"  # what the table calls the dataset images a prompt lands on

    def heldout_wordings(self) -> frozenset[str]:
        """The paraphrases' caption_keys: wordings that training never uses, so that they measure generalisation."""
        return frozenset(caption_key(p) for p in self.paraphrases)


NOTHING = EvaluationOffer()


def _emoji() -> EvaluationOffer:
    from ldm.data.emoji_eval import EMOJI_OFFER  # the emoji tables load only for a folder that names them

    return EMOJI_OFFER


# the sets a dataset_info.json may name, each loaded from its dataset's own module
DECLARED: dict[str, Callable[[], EvaluationOffer]] = {"emoji": _emoji}


def evaluation_offer(data: DataConfig) -> EvaluationOffer:
    """What the configured dataset declares for its evaluation (NOTHING where it declares nothing)."""
    if data.source != "files" or not data.path:
        return NOTHING  # the procedural shapes: their own captions are all they offer
    info_file = Path(data.path).expanduser() / INFO_NAME
    if not info_file.is_file():
        return NOTHING
    info = read_json(info_file)
    if not isinstance(info, dict):  # not ours to judge: another tool's file of that name
        return NOTHING
    name = info.get("evaluation")
    if name is None and {"font", "caption_sources"} <= info.keys():
        # an emoji folder built before the builder wrote "evaluation" keeps the evaluation it was made for
        name = "emoji"
    if name is None:
        return NOTHING
    if not isinstance(name, str) or name not in DECLARED:
        raise LdmError(f"{info_file}: \"evaluation\" names {quoted(name)}, not one of: {', '.join(DECLARED)}")
    return DECLARED[name]()
