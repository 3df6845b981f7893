"""RoPE: interleaved vs half-split (docs/design.md check 14), rotations vs the closed form
computed without the table (plain and YaRN), and YaRN's correction range, frequency
multipliers and temperature (docs/design.md#rope-and-yarn, checks 2-3) at DeepSeek-V3's values."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.nn.rope import (
    apply_rope,
    rope_table,
    yarn_correction_range,
    yarn_freqs,
    yarn_softmax_multiplier,
)
from tests.rope_ref import plain_freqs, rotate_ref, yarn_freqs_ref

V3_YARN = dict(rot_dim=64, theta=1e4, factor=40.0, original_len=4096, beta_fast=32.0, beta_slow=1.0)


def test_interleaved_differs_from_half_and_matches_complex_form():
    x = torch.randn(2, 5, 3, 8)
    rot = rope_table(8, 5, 1e4)
    inter, half = apply_rope(x, rot, "interleaved"), apply_rope(x, rot, "half")
    assert (inter - half).abs().max() > 1e-2
    cis = torch.view_as_complex(rot)[:, None, :]
    pairs = torch.complex(x[..., 0::2], x[..., 1::2]) * cis  # DS-code's form
    torch.testing.assert_close(inter[..., 0::2], pairs.real, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(inter[..., 1::2], pairs.imag, atol=1e-6, rtol=1e-6)


def test_yarn_correction_range_v3():
    kw = {k: v for k, v in V3_YARN.items() if k != "factor"}
    assert yarn_correction_range(**kw) == (10, 23)


def test_yarn_frequency_multipliers_v3():
    plain_P = 1e4 ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    mult_P = yarn_freqs(**V3_YARN) / plain_P
    torch.testing.assert_close(mult_P[:11], torch.ones(11, dtype=torch.float64))
    torch.testing.assert_close(mult_P[23:], torch.full((9,), 1 / 40, dtype=torch.float64))
    for pair, expected in [(11, 0.925), (16, 0.55), (22, 0.1)]:
        assert mult_P[pair].item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("mscale,expected", [(1.0, 1.8738542), (0.707, 1.5896)])
def test_yarn_temperature(mscale, expected):
    assert yarn_softmax_multiplier(40.0, mscale) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("rot_dim,theta,start", [(8, 1e4, 0), (16, 5e5, 37), (2, 10.0, 3)])
def test_rotation_matches_closed_form(rot_dim, theta, start):
    T = 6
    x = torch.randn(2, T, 3, rot_dim)
    table = rope_table(rot_dim, start + T, theta)
    got = apply_rope(x, table[start:])
    want = rotate_ref(x, list(range(start, start + T)), plain_freqs(rot_dim, theta))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the table itself: pair i at position p holds (cos, sin) of p * theta^(-2i/R)
    p, i = start + T - 1, rot_dim // 2 - 1
    angle = p * theta ** (-2 * i / rot_dim)
    torch.testing.assert_close(table[p, i], torch.tensor([math.cos(angle), math.sin(angle)]))


def test_yarn_rotation_matches_closed_form():
    V3 = dict(rot_dim=64, theta=1e4)
    T, start = 4, 5000  # beyond the 4096 positions the frequencies were trained at
    table = rope_table(64, start + T, 1e4, yarn_freqs(**V3_YARN))
    x = torch.randn(1, T, 2, 64)
    freqs = yarn_freqs_ref(**V3, factor=40.0, low=10, high=23)  # V3's correction range
    want = rotate_ref(x, list(range(start, start + T)), freqs)
    torch.testing.assert_close(apply_rope(x, table[start:]), want, atol=1e-4, rtol=1e-4)
    plain = rotate_ref(x, list(range(start, start + T)), plain_freqs(**V3))
    assert (want - plain).abs().max() > 0.1  # YaRN really moved the slow pairs
