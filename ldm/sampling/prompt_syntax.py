"""AUTOMATIC1111's prompt syntax, parsed into plain text runs with weights, per denoising step.

    (word)  (word:1.3)  [word]      emphasis: x1.1, x1.3, /1.1 (nested brackets multiply)
    [from:to:when]  [to:when]  [from::when]
                                    prompt editing: `from` up to step `when`, then `to`; a number with a
                                    '.' is a fraction of the steps (0.5: half-way), one without is a step
    [a|b|c]                         alternation: a on step 1, b on step 2, c on step 3, a on step 4...
    \\( \\) \\[ \\] \\: \\| \\\\        the character itself

A ':' outside brackets is plain text ("flag: Japan"), so is a prompt with none of the characters above.
Bad syntax is a one-line LdmError that names the position (1-based character).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ldm.errors import LdmError

EMPHASIS = 1.1  # A1111's multiplier for one pair of round brackets (its inverse for square ones)
SPECIAL = set("()[]:|\\")
MAX_WEIGHT = 100.0  # emphasis beyond this is a typo (A1111 users write 0.5-1.5)

Runs = tuple[tuple[str, float], ...]  # plain text pieces and their weights; one key of the embedding cache


@dataclass(frozen=True)
class _Emphasis:
    parts: tuple
    weight: float


@dataclass(frozen=True)
class _Edit:
    before: tuple
    after: tuple
    when: str  # as typed: its '.' decides fraction or step number


@dataclass(frozen=True)
class _Alternation:
    options: tuple[tuple, ...]


class _Parser:
    """Recursive descent over the prompt; each node is text (str), _Emphasis, _Edit or _Alternation."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def fail(self, message: str, pos: int | None = None):
        where = self.pos if pos is None else pos
        raise LdmError(f"prompt syntax: {message} at character {where + 1} of {self.text!r}")

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def sequence(self, stops: str) -> tuple:
        """Nodes up to (not including) the first unescaped character of `stops` or the end."""
        parts, plain = [], []
        while (c := self.peek()) is not None and c not in stops:
            if c == "\\":
                if self.pos + 1 < len(self.text) and self.text[self.pos + 1] in SPECIAL:
                    plain.append(self.text[self.pos + 1])
                    self.pos += 2
                else:  # a lone backslash before an ordinary character is itself (A1111 does the same)
                    plain.append(c)
                    self.pos += 1
            elif c in "([":
                if plain:
                    parts.append("".join(plain))
                    plain = []
                parts.append(self.round() if c == "(" else self.square())
            elif c in ")]":
                self.fail(f"'{c}' closes nothing")
            else:  # ':' and '|' outside brackets are text
                plain.append(c)
                self.pos += 1
        if plain:
            parts.append("".join(plain))
        return tuple(parts)

    def close(self, opened: int, char: str) -> None:
        if self.peek() != char:
            self.fail(f"'{self.text[opened]}' is never closed", opened)
        self.pos += 1

    def round(self):
        opened = self.pos
        self.pos += 1
        parts = list(self.sequence(")"))
        self.close(opened, ")")
        # (text:1.3): the number after the last ':' of the last text piece is the weight
        if parts and isinstance(parts[-1], str) and ":" in parts[-1]:
            text, _, number = parts[-1].rpartition(":")
            try:
                weight = float(number)
            except ValueError:
                return _Emphasis(tuple(parts), EMPHASIS)  # "(a: b)": the colon is text
            if not 0 <= weight <= MAX_WEIGHT:
                self.fail(f"emphasis weight {number.strip()} is outside 0-{MAX_WEIGHT:g}", opened)
            parts[-1] = text
            return _Emphasis(tuple(p for p in parts if p != ""), weight)
        return _Emphasis(tuple(parts), EMPHASIS)

    def square(self):
        opened = self.pos
        self.pos += 1
        pieces, seps = [self.sequence(":|]")], []
        while self.peek() in (":", "|"):
            seps.append(self.peek())
            self.pos += 1
            pieces.append(self.sequence(":|]"))
        self.close(opened, "]")
        if not seps:
            return _Emphasis(pieces[0], 1 / EMPHASIS)
        if "|" in seps:
            if ":" in seps:
                self.fail("'[...]' mixes ':' (prompt editing) and '|' (alternation)", opened)
            return _Alternation(tuple(pieces))
        if len(pieces) > 3:
            self.fail("prompt editing takes [from:to:when] or [to:when]", opened)
        when = pieces[-1]
        if len(when) != 1 or not isinstance(when[0], str) or not _is_number(when[0]):
            self.fail("prompt editing needs a number after its last ':'", opened)
        before, after = (pieces[0], pieces[1]) if len(pieces) == 3 else ((), pieces[0])
        return _Edit(before, after, when[0].strip())


def _is_number(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def switch_step(when: str, steps: int) -> int:
    """The last 1-based step of an edit's `from` part: a fraction of `steps` when `when` has a '.', else a step."""
    value = float(when) * steps if "." in when else float(when)
    return min(steps, int(value))


@dataclass(frozen=True)
class Prompt:
    """A parsed prompt: its runs of plain text and weights at any denoising step."""

    source: str
    parts: tuple

    @property
    def is_plain(self) -> bool:
        """True when the prompt uses none of the syntax (its one run is the prompt itself at weight 1)."""
        return self.parts in ((), (self.source,))

    @property
    def changes(self) -> bool:
        """True when the text differs between steps (prompt editing or alternation)."""
        return _changes(self.parts)

    def runs_at(self, step: int, steps: int) -> Runs:
        """Plain text runs and weights at 1-based `step` of `steps`, neighbours of equal weight merged."""
        runs: list[list] = []
        _render(self.parts, 1.0, step, steps, runs)
        return tuple((text, weight) for text, weight in runs if text)

    def schedule(self, steps: int) -> list[tuple[int, Runs]]:
        """[(last 1-based step, runs)] covering steps 1..steps, one entry per change of text."""
        out: list[tuple[int, Runs]] = []
        for step in range(1, max(steps, 1) + 1):
            runs = self.runs_at(step, steps)
            if out and out[-1][1] == runs:
                out[-1] = (step, runs)
            else:
                out.append((step, runs))
        return out


def _changes(parts: tuple) -> bool:
    for part in parts:
        if isinstance(part, (_Edit, _Alternation)):
            return True
        if isinstance(part, _Emphasis) and _changes(part.parts):
            return True
    return False


def _render(parts: tuple, weight: float, step: int, steps: int, runs: list[list]) -> None:
    for part in parts:
        if isinstance(part, str):
            if runs and runs[-1][1] == weight:
                runs[-1][0] += part
            else:
                runs.append([part, weight])
        elif isinstance(part, _Emphasis):
            _render(part.parts, weight * part.weight, step, steps, runs)
        elif isinstance(part, _Edit):
            _render(part.before if step <= switch_step(part.when, steps) else part.after, weight, step, steps, runs)
        else:
            _render(part.options[(step - 1) % len(part.options)], weight, step, steps, runs)


@functools.lru_cache(maxsize=1024)
def parse_prompt(prompt: str) -> Prompt:
    """Parse a prompt, raising a one-line LdmError that names the position of bad syntax."""
    return Prompt(prompt, _Parser(prompt).sequence(""))


def plain_text(runs: Runs) -> str:
    """The text the tokenizer sees: the runs joined, markup gone."""
    return "".join(text for text, _ in runs)


def escape(text: str) -> str:
    """`text` with every syntax character escaped, so that it parses back to itself at weight 1."""
    return "".join("\\" + c if c in SPECIAL else c for c in text)
