"""The teach benchmark's composition measure, on made-up feature changes."""

import torch

from benchmarks.teach import modifier_word, specific_moves


def test_modifier_words_are_the_words_their_directions_come_from():
    assert [modifier_word(m) for m in ("blue {}", "{}: dark skin tone", "{} face", "Red {}")] == \
        ["blue", "dark", "face", "red"]


def test_a_modifier_composes_only_when_it_moves_along_its_own_direction_more_than_the_others_do():
    directions = torch.eye(3)
    follows = directions[:, None, :].repeat(1, 4, 1)  # each modifier's change is its own direction, every seed
    assert specific_moves(follows, directions).all()
    ignored = torch.zeros(3, 4, 3)  # the name overrides every modifier: nothing moves
    assert not specific_moves(ignored, directions).any()
    broken = torch.ones(3, 4, 3)  # every modifier makes the same change: none of them is the modifier's doing
    assert not specific_moves(broken, directions).any()
    swapped = follows.roll(1, dims=0)  # each modifier moves along the next one's direction
    assert not specific_moves(swapped, directions).any()
    mixed = follows.clone()
    mixed[1, 2] = 0  # one seed of the second modifier lost it
    moves = specific_moves(mixed, directions)
    assert moves.shape == (3, 4) and moves.sum() == 11 and not moves[1, 2]
