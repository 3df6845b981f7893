"""E4M3 tile quantization: Triton kernels vs references, error bounds (docs/design.md checks 9,
15, 16, 18), edge cases and launcher validation."""

from __future__ import annotations

import pytest
import torch

from kernels.fp8_quant import (
    AMAX_MIN,
    FP8_E4M3_MAX,
    act_quant,
    act_quant_ref,
    act_quant_t,
    act_quant_t_ref,
    dequant_ref,
    weight_quant,
    weight_quant_ref,
)

FMTS = (None, "ue8m0")
ELEM_REL = 2.0**-4  # E4M3 keeps 3 mantissa bits: RNE error <= 2^-4 relative (normal range)
ELEM_SUB = 2.0**-10  # half the subnormal step 2^-9, in units of the scale


def _wide(*shape: int) -> torch.Tensor:
    """Gaussian data whose magnitude spans 9 decades along the last dim."""
    return torch.randn(*shape) * torch.logspace(-6, 3, shape[-1])


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def _rel(err: torch.Tensor, ref: torch.Tensor) -> float:
    return (err.norm() / ref.norm()).item()


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("shape", [(256, 384), (3, 5, 200), (1, 130)])
def test_act_quant_matches_reference_bitwise(shape, fmt):
    x = _wide(*shape)
    q, s = act_quant(x, fmt)
    q_ref, s_ref = act_quant_ref(x, fmt)
    assert _same_bits(q, q_ref) and torch.equal(s, s_ref)


@pytest.mark.parametrize("fmt", FMTS)
def test_weight_and_transposed_quant_match_reference_bitwise(fmt):
    w = _wide(300, 200)
    q, s = weight_quant(w, fmt)
    q_ref, s_ref = weight_quant_ref(w, fmt)
    assert _same_bits(q, q_ref) and torch.equal(s, s_ref)
    q_t, s_t = act_quant_t(w, fmt)
    q_t_ref, s_t_ref = act_quant_t_ref(w, fmt)
    assert _same_bits(q_t, q_t_ref) and torch.equal(s_t, s_t_ref)
    # 128x1 tiles of x are 1x128 tiles of x^T
    q_rows, s_rows = act_quant(w.t().contiguous(), fmt)
    assert _same_bits(q_t, q_rows) and torch.equal(s_t, s_rows)


def test_rounding_edges_match_torch_cast():
    # values that round up into the next binade (the interpreter's own cast gets these wrong),
    # the max, subnormals, underflow and signed zeros
    specials = [448.0, 31.6, -31.6, 127.9, 2.0**-9, 3 * 2.0**-10, 2.0**-11, 1e-30, 0.0, -0.0]
    x = torch.tensor(specials + [0.0] * (128 - len(specials)))[None]
    q, s = act_quant(x)
    assert s.item() == FP8_E4M3_MAX / FP8_E4M3_MAX
    assert _same_bits(q, x.to(torch.float8_e4m3fn))


def test_act_quant_error_bounds_check_15():
    x = torch.randn(256, 384)
    q, s = act_quant(x)
    x_hat = dequant_ref(q, s)
    s_full = s.repeat_interleave(128, dim=-1)
    bound = torch.maximum(ELEM_REL * x.abs(), ELEM_SUB * s_full)
    assert ((x - x_hat).abs() <= bound).all()
    assert 0.02 < _rel(x - x_hat, x) < 0.03  # design.md check 15: ~0.025


def test_amax_element_round_trips():
    x = torch.randn(64, 384)
    q, s = act_quant(x)
    tiles = x.view(64, 3, 128)
    idx = tiles.abs().argmax(dim=-1, keepdim=True)
    q_at_amax = q.float().view(64, 3, 128).gather(-1, idx).squeeze(-1)
    assert (q_at_amax.abs() == FP8_E4M3_MAX).all()
    x_at_amax = tiles.gather(-1, idx).squeeze(-1)
    torch.testing.assert_close(q_at_amax * s, x_at_amax, rtol=1e-6, atol=0)


@pytest.mark.parametrize("fmt", FMTS)
def test_all_zero_tiles(fmt):
    x = torch.randn(4, 384)
    x[1] = 0.0
    x[:, 128:256] = 0.0
    q, s = act_quant(x, fmt)
    zero_tiles = torch.zeros(4, 3, dtype=torch.bool)
    zero_tiles[1], zero_tiles[:, 1] = True, True
    assert torch.isfinite(q.float()).all() and torch.isfinite(s).all()
    assert (q.float().view(4, 3, 128)[zero_tiles] == 0).all()
    if fmt is None:
        assert (s[zero_tiles] == torch.tensor(AMAX_MIN) / FP8_E4M3_MAX).all()
    w_q, w_s = weight_quant(torch.zeros(130, 130), fmt)
    assert (w_q.float() == 0).all() and torch.isfinite(w_s).all() and (w_s > 0).all()


def test_ue8m0_scales_are_powers_of_two():
    x = _wide(32, 256)
    q, s = act_quant(x, "ue8m0")
    mantissa, _ = torch.frexp(s)
    assert (mantissa == 0.5).all()
    assert q.float().abs().max() <= FP8_E4M3_MAX
    amax = x.view(32, 2, 128).abs().amax(-1).clamp_min(AMAX_MIN)
    assert (s >= amax / FP8_E4M3_MAX).all() and (s < 2 * amax / FP8_E4M3_MAX).all()


def test_scale_shapes_check_9():
    assert act_quant(torch.randn(2, 3, 1000))[1].shape == (2, 3, 8)
    assert act_quant(torch.randn(5, 129))[1].shape == (5, 2)
    assert weight_quant(torch.randn(130, 129))[1].shape == (2, 2)
    assert weight_quant(torch.randn(576, 300))[1].shape == (5, 3)
    q_t, s_t = act_quant_t(torch.randn(129, 200))
    assert q_t.shape == (200, 129) and s_t.shape == (200, 2)
    # DeepSeek-V3 wkv_a (576, 7168) has (5, 56) block scales (reference only: big for the CPU)
    assert weight_quant_ref(torch.randn(576, 7168))[1].shape == (5, 56)


def test_weight_quant_check_18():
    w = torch.randn(256, 384) * 0.02
    q, s = weight_quant(w)
    amax = w.view(2, 128, 3, 128).abs().amax(dim=(1, 3))
    assert torch.equal(s, amax / FP8_E4M3_MAX)
    err = _rel(w - dequant_ref(q, s, (128, 128)), w)
    assert 0.02 < err < 0.032  # design.md check 18: ~0.026


def _per_tensor_quant(x: torch.Tensor) -> torch.Tensor:
    """Dequantized per-tensor E4M3 (one scale for the whole tensor), the baseline of check 16."""
    s = x.abs().max() / FP8_E4M3_MAX
    return (x / s).to(torch.float8_e4m3fn).float() * s


def test_outlier_robustness_check_16():
    x = torch.randn(512, 1024)
    x[7, 100] = 1e5
    others = torch.ones(512, dtype=torch.bool)
    others[7] = False
    q, s = act_quant(x)
    tiled = dequant_ref(q, s)[others]
    per_tensor = _per_tensor_quant(x)[others]
    ref = x[others]
    err_tensor, err_tiles = _rel(per_tensor - ref, ref), _rel(tiled - ref, ref)
    zeros_tensor = (per_tensor == 0).float().mean().item()
    zeros_tiles = (tiled == 0).float().mean().item()
    assert 0.10 < err_tensor < 0.15 and 0.14 < zeros_tensor < 0.20  # design.md check 16: 0.126, 17%
    assert err_tiles < 0.03 and zeros_tiles < 1e-3  # design.md check 16: 0.026, 0.005%


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: act_quant(torch.randn(4, 256).t()), "contiguous"),
        (lambda: act_quant(torch.ones(4, 128, dtype=torch.int32)), "float32"),
        (lambda: act_quant(torch.randn(4, 128), "e8m0"), "scale_fmt"),
        (lambda: weight_quant(torch.randn(2, 4, 128)), "2-D"),
        (lambda: act_quant_t(torch.randn(128)), "2-D"),
        (lambda: act_quant(torch.randn(0, 128)), "non-empty"),
    ],
)
def test_launchers_reject_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
