"""The emoji model's evaluation tables: paraphrase prompts with the emoji families they must land in, and
the prompts that probe diversity and walks.

Keywords are lower-case pieces of the emoji dataset's CLDR captions (see ldm/data/emoji.py); a caption
belongs to a family when it contains any of its keywords.
"""

from __future__ import annotations

# Paraphrases, not captions: each must land in an emoji family named by any of its keywords.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "burger": ("hamburger",),
    "sleepy face": ("sleeping face", "sleepy face"),
    "bunch of grapes": ("grapes",),
    "cheeseburger with fries": ("hamburger", "french fries"),
    "a slice of pizza": ("pizza",),
    "red heart shape": ("red heart",),
    "laughing so hard I cry": ("tears of joy", "rolling on the floor laughing"),
    "smiling face wearing sunglasses": ("sunglasses",),
    "kitty": ("cat",),
    "puppy face": ("dog face",),
    "flame": ("fire",),
    "space rocket": ("rocket",),
    "thumbs up gesture": ("thumbs up",),
    "japanese flag": ("flag: japan",),
    "american flag": ("flag: united states",),
    "banana fruit": ("banana",),
    "ripe strawberry": ("strawberry",),
    "glass of beer": ("beer",),
    "cup of coffee": ("hot beverage", "coffee"),
    "yellow star": ("star",),
    "crescent moon at night": ("moon",),
    "sunny weather": ("sun",),
    "rain cloud": ("cloud with rain", "rain"),
    "snowman in winter": ("snowman",),
    "angry red face": ("angry face", "enraged face", "pouting face"),
    "crying face with tears": ("crying face", "loudly crying face"),
    "frog face": ("frog",),
    "panda bear": ("panda",),
    "birthday cake": ("birthday cake", "cake"),
    "soccer ball": ("soccer ball",),
    "musical note": ("musical note", "musical notes"),
    "ghost": ("ghost",),
    "skull and bones": ("skull",),
    "alarm clock": ("alarm clock",),
    "light bulb idea": ("light bulb",),
    "red apple fruit": ("red apple",),
}

# Emoji captions for the diversity and walk measures; other datasets are probed with their own captions.
DIVERSITY_PROMPTS = ("grinning face", "red apple", "cat face", "thumbs up", "rocket")
