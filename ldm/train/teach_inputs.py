"""What a user gives a teach run, checked before anything loads (no torch here): the image files, and the new word
the concept is called by (checked alone, then against the encoder's tokenizer).

The name must be one new word: a word the encoder already knows would drag its meaning in (and teaching would
change what that word means elsewhere), and spaces or punctuation would split it into several words.
"""

from __future__ import annotations

import re
from pathlib import Path

from ldm.errors import LdmError

MAX_IMAGES = 50  # more is a dataset, not a concept: scripts/train_unet.py fine-tunes on folders
MAX_NAME = 32  # characters; a name is one word of a prompt
_WORD = re.compile(r"^[^\W_]+$")  # letters and digits of any script, nothing else


def check_name(name: str) -> str:
    """The name without surrounding spaces, refused in one line when empty, too long or not one word."""
    name = name.strip()
    if not name:
        raise LdmError("the concept needs a name (--name): one new word, e.g. zorbly")
    if len(name) > MAX_NAME:
        raise LdmError(f"the name is {len(name)} characters: keep it to {MAX_NAME} or fewer")
    if not _WORD.match(name):
        raise LdmError(f"the name {name!r} must be one word of letters and digits (no spaces or punctuation)")
    if name[0].isdigit():
        raise LdmError(f"the name {name!r} must start with a letter")
    return name


def check_new_word(tokenizer, name: str) -> str:
    """check_name, then refused when the tokenizer already holds it as one token (a word it knows, or a concept
    taught before); returns the name as the tokenizer normalises it (lower case for an uncased encoder)."""
    name = check_name(name)
    pieces = tokenizer.tokenize(name)
    known = pieces == [pieces[0]] and pieces[0] != tokenizer.unk_token
    if known or name in tokenizer.get_added_vocab() or name.lower() in tokenizer.get_added_vocab():
        raise LdmError(f"{name!r} is already a word the text encoder knows: pick a new word (e.g. {name}zy)")
    return name.lower() if getattr(tokenizer, "do_lower_case", False) else name


def image_paths(arguments: list[str]) -> list[Path]:
    """The image files named on a command line: files as given, folders as the image files directly inside them
    (sorted); refused in one line when there are none or more than MAX_IMAGES."""
    paths: list[Path] = []
    for arg in arguments:
        path = Path(arg).expanduser()
        if path.is_dir():
            from PIL import Image  # the suffixes Pillow reads; not ldm.data's image modules, which load torch

            known = Image.registered_extensions()
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in known and p.is_file())
        elif path.is_file():
            paths.append(path)
        else:
            raise LdmError(f"image not found: {arg}")
    paths = list(dict.fromkeys(p.resolve() for p in paths))
    if not paths:
        raise LdmError("no images: give 1 to 50 image files (or a folder of them)")
    if len(paths) > MAX_IMAGES:
        raise LdmError(f"{len(paths)} images: a concept is taught from 1 to {MAX_IMAGES} (fine-tune on a folder of "
                       "more with scripts/train_unet.py)")
    return paths
