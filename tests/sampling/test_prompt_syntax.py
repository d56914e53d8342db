"""AUTOMATIC1111's prompt syntax: emphasis, prompt editing, alternation, escapes and their errors."""

import pytest

from ldm.errors import LdmError
from ldm.sampling.prompt_syntax import EMPHASIS, escape, parse_prompt, plain_text, switch_step


def runs(prompt, step=1, steps=10):
    return parse_prompt(prompt).runs_at(step, steps)


@pytest.mark.parametrize("prompt", ["a red apple", "flag: Japan", "woman firefighter: medium skin tone", "a | b", ""])
def test_prompts_without_the_syntax_are_themselves_at_weight_one(prompt):
    parsed = parse_prompt(prompt)
    assert parsed.is_plain and not parsed.changes
    assert runs(prompt) == (((prompt, 1.0),) if prompt else ())
    assert parsed.schedule(14) == [(14, runs(prompt, 1, 14))]


@pytest.mark.parametrize("prompt, expected", [
    ("(cat)", (("cat", EMPHASIS),)),
    ("((cat))", (("cat", EMPHASIS ** 2),)),
    ("[cat]", (("cat", 1 / EMPHASIS),)),
    ("(cat:1.3)", (("cat", 1.3),)),
    ("a (red apple:0.5) on a table", (("a ", 1.0), ("red apple", 0.5), (" on a table", 1.0))),
    ("((cat):1.2) face", (("cat", 1.2 * EMPHASIS), (" face", 1.0))),
    ("(cat: a face)", (("cat: a face", EMPHASIS),)),  # no number after the colon: it is text
    ("(cat:1.0)", (("cat", 1.0),)),
])
def test_emphasis_weights_multiply_when_nested(prompt, expected):
    got = runs(prompt)
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])
    assert not parse_prompt(prompt).is_plain


def test_escapes_are_the_characters_themselves():
    assert runs(r"a \(red\) \[b\] \: \| \\ c") == (("a (red) [b] : | \\ c", 1.0),)
    text = r"A button (blood type) [x:y:1] a|b \ end"
    assert runs(escape(text)) == ((text, 1.0),)
    assert runs(escape("flag: Cocos (Keeling) Islands"), 3, 5) == (("flag: Cocos (Keeling) Islands", 1.0),)


def test_prompt_editing_switches_at_a_fraction_or_a_step():
    prompt = "a [cat:dog:0.5] face"
    assert [plain_text(runs(prompt, s)) for s in range(1, 11)] == ["a cat face"] * 5 + ["a dog face"] * 5
    assert [end for end, _ in parse_prompt(prompt).schedule(10)] == [5, 10]
    assert [plain_text(runs("a [cat:dog:3] face", s)) for s in (3, 4)] == ["a cat face", "a dog face"]
    assert [plain_text(runs("a [big :2]cat", s)) for s in (2, 3)] == ["a cat", "a big cat"]  # added at step 3
    assert [plain_text(runs("a [big ::2]cat", s)) for s in (2, 3)] == ["a big cat", "a cat"]  # removed after 2
    # when 0: the second text from the start; when 1.0 (a fraction): the first text throughout
    assert {plain_text(runs("[cat:dog:0]", s)) for s in range(1, 11)} == {"dog"}
    assert {plain_text(runs("[cat:dog:1.0]", s)) for s in range(1, 11)} == {"cat"}
    assert switch_step("0.25", 14) == 3 and switch_step("4", 14) == 4 and switch_step("40", 14) == 14


def test_alternation_cycles_through_its_options_and_nests():
    assert [plain_text(runs("[cat|dog|] face", s)) for s in range(1, 5)] == ["cat face", "dog face", " face",
                                                                            "cat face"]
    nested = "[(cat:1.5)|dog] and [a:b:2]"
    assert runs(nested, 1) == (("cat", 1.5), (" and a", 1.0))
    assert runs(nested, 4) == (("dog and b", 1.0),)
    assert parse_prompt(nested).changes


@pytest.mark.parametrize("prompt, message", [
    ("a (red apple", "'(' is never closed at character 3"),
    ("a red apple)", "')' closes nothing at character 12"),
    ("[cat", "'[' is never closed at character 1"),
    ("(cat]", "']' closes nothing at character 5"),
    ("a [cat:dog] face", "prompt editing needs a number after its last ':' at character 3"),
    ("[cat:dog:-1]", "needs a number"),
    ("[a:b:c:1]", "prompt editing takes [from:to:when] or [to:when] at character 1"),
    ("[a|b:1]", "mixes ':' (prompt editing) and '|' (alternation)"),
    ("(cat:1000)", "emphasis weight 1000 is outside 0-100 at character 1"),
])
def test_bad_syntax_is_a_one_line_error_naming_the_position(prompt, message):
    with pytest.raises(LdmError, match="prompt syntax") as error:
        parse_prompt(prompt)
    assert message in str(error.value) and "\n" not in str(error.value)
