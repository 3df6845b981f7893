"""RoPE: interleaved vs half-split (spec §6.14) and YaRN's correction range, frequency
multipliers and temperature (spec §1.2, §6.2-3) at DeepSeek-V3's values."""

from __future__ import annotations

import pytest
import torch

from ablate.nn.rope import (
    apply_rope,
    rope_table,
    yarn_correction_range,
    yarn_freqs,
    yarn_softmax_multiplier,
)

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
