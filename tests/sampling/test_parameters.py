"""AUTOMATIC1111 `parameters` text: formatting, quoting and parsing round-trips."""

import contextlib
import time

import pytest

from ldm.errors import LdmError
from ldm.sampling.parameters import (
    MAX_PARAMETERS_CHARS,
    format_parameters,
    parse_fields,
    parse_parameters,
    png_info,
    read_png_parameters,
)


def test_round_trip_with_negative_prompt_and_quoted_values():
    fields = {"Steps": 20, "Sampler": "DPM++ 2M Karras", "CFG scale": 3.5, "Seed": 42, "Size": "64x64",
              "Morph to": 'flag: Japan, "red" sun', "Morph t": 0.1 + 0.2}
    text = format_parameters("a red apple, shiny", "blurry, dark", fields)
    assert text.splitlines()[0] == "a red apple, shiny"
    assert text.splitlines()[1] == "Negative prompt: blurry, dark"
    prompt, negative, parsed = parse_parameters(text)
    assert (prompt, negative) == ("a red apple, shiny", "blurry, dark")
    assert parsed["Morph to"] == 'flag: Japan, "red" sun'
    assert float(parsed["Morph t"]) == 0.1 + 0.2  # repr round-trips floats exactly
    assert parsed["Sampler"] == "DPM++ 2M Karras" and parsed["Seed"] == "42"


def test_parses_an_automatic1111_chunk():
    text = ("masterpiece, a cat\nNegative prompt: lowres\nSteps: 28, Sampler: Euler a, CFG scale: 7, "
            "Seed: 123, Size: 512x512, Model hash: 6ce0161689, Model: v1-5, Version: v1.9.0")
    prompt, negative, fields = parse_parameters(text)
    assert prompt == "masterpiece, a cat" and negative == "lowres"
    assert fields["Sampler"] == "Euler a" and fields["Model hash"] == "6ce0161689" and fields["Size"] == "512x512"


def test_text_without_settings_is_refused():
    with pytest.raises(LdmError, match="Steps"):
        parse_parameters("just a caption")


def test_png_without_chunk_is_a_one_line_error(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(LdmError, match="no generation parameters"):
        read_png_parameters(tmp_path / "plain.png")
    with pytest.raises(LdmError, match="not found"):
        read_png_parameters(tmp_path / "missing.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "tagged.png", pnginfo=png_info("x\nSteps: 1"))
    assert read_png_parameters(tmp_path / "tagged.png") == "x\nSteps: 1"


def _fastest(fn, arg, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with contextlib.suppress(LdmError):  # an unclosed quote is refused, after reading it once
            fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("tail", ["a", "b:a", 'b: "a', 'b: "\\a'], ids=["text", "key", "open-quote", "escapes"])
def test_settings_are_read_in_linear_time(tail):
    # a long run without a comma at the end of the settings line made the old pattern backtrack over every
    # start (7 MB held a server thread for over 11 minutes): a megabyte must cost about 1000x a kilobyte
    def line(size):
        return "Steps: 20, Seed: 1, " + tail + "a" * size

    small, large = _fastest(parse_fields, line(1_000), 200), _fastest(parse_fields, line(1_000_000), 3)
    assert large / max(small, 1e-7) < 20_000  # a square would be 1,000,000x


def test_overlong_parameters_are_refused_in_one_line():
    text = "a cat\nSteps: 20, Seed: 1, Note: " + "x" * MAX_PARAMETERS_CHARS
    with pytest.raises(LdmError, match=r"characters long; ldm reads at most 65,536"):
        parse_parameters(text)


def test_quoting_and_stray_text_in_the_settings_line():
    fields = parse_fields('Steps: 4, stray text, Note: "a, \\"b\\": c", Size: 64x64')
    assert fields == {"Steps": "4", "Note": 'a, "b": c', "Size": "64x64"}
    with pytest.raises(LdmError, match="badly quoted value for 'Note'"):
        parse_fields('Steps: 4, Note: "never closed')


def test_a_bomb_or_a_file_that_is_no_image_is_one_line_of_ours(tmp_path):
    from PIL import Image

    Image.new("1", (40000, 40000)).save(tmp_path / "huge.png")  # 1.6 Gpx, 190 KB on disk
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(LdmError, match=r"huge.png: decompression bomb \(too many pixels to open\)$"):
        read_png_parameters(tmp_path / "huge.png")
    with pytest.raises(LdmError, match=r"notes.png: not an image$"):
        read_png_parameters(tmp_path / "notes.png")
