"""Pure interpolation helpers: slerp/lerp endpoints and norms, keyframe paths, re-spacing."""

import pytest
import torch

from ldm.sampling.interpolate import lerp, max_jump_ratio, path_positions, point_at, respace, slerp


def test_slerp_endpoints_are_exact_and_midpoints_keep_gaussian_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mid_s, mid_l = slerp(a, b, 0.5), lerp(a, b, 0.5)
    norm = a.flatten(1).norm(dim=1)
    # two independent Gaussians are nearly orthogonal: lerp shrinks the norm by ~sqrt(2), slerp does not
    assert torch.allclose(mid_s.flatten(1).norm(dim=1), norm, rtol=0.1)
    assert (mid_l.flatten(1).norm(dim=1) < 0.8 * norm).all()


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    a = torch.ones(1, 16)
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)


def test_open_path_hits_every_keyframe_once_with_no_duplicates():
    positions = path_positions(7, 3)
    points = [point_at(u, 3) for u in positions]
    assert [(p.index, round(p.t, 6)) for p in points] == [
        (0, 0), (0, 0.333333), (0, 0.666667), (1, 0), (1, 0.333333), (1, 0.666667), (2, 0)]


def test_loop_path_never_returns_to_the_first_frame():
    positions = path_positions(6, 2, loop=True)
    points = [point_at(u, 2, loop=True) for u in positions]
    assert [(p.index, p.t) for p in points][:1] == [(0, 0.0)]
    assert [p.keys(2) for p in points][-1] == (1, 0)  # last segment heads back to keyframe 0
    assert all(p.t < 1 for p in points)
    assert [(p.index, p.t) for p in points].count((1, 0.0)) == 1
    # the point at the loop's full length (a live slider's right end) is the first keyframe again
    assert (point_at(2.0, 2, loop=True).index, point_at(2.0, 2, loop=True).t) == (0, 0.0)


def test_bad_frame_counts_are_refused():
    with pytest.raises(ValueError):
        path_positions(1, 2)


def test_respace_crowds_frames_where_the_images_jumped():
    positions = [0.0, 0.25, 0.5, 0.75, 1.0]
    distances = [1.0, 1.0, 10.0, 1.0]  # a jump between 0.5 and 0.75
    new = respace(positions, distances, 5)
    assert new[0] == 0.0 and new[-1] == 1.0
    inside_jump = [u for u in new if 0.5 < u < 0.75]
    assert len(inside_jump) >= 2


def test_max_jump_ratio_flags_a_jump():
    smooth = torch.linspace(0, 1, 8)[:, None, None, None].expand(8, 3, 4, 4)
    jumpy = smooth.clone()
    jumpy[4:] += 0.5
    assert max_jump_ratio(smooth) == pytest.approx(1.0, abs=1e-4)
    assert max_jump_ratio(jumpy) > 3
