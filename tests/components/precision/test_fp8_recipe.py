"""fp8_block recipe parts one at a time: the gradient amax floor (underflow independent of the
loss scale), power-of-two scales for the 1x128 -> 128x1 re-tiling, tile granularity, limited
accumulation with and without promotion, and the config fields that select them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate.core.config import from_dict, to_dict
from ablate.nn.fp8_recipe import ACT_AMAX_MIN, QuantStats, Recipe, make_ops
from components.precision.fp8_block import FP8Block, FP8Linear
from kernels.fp8_accum import chop_mantissa, fp8_gemm_limited_ref
from kernels.fp8_gemm import fp8_gemm_ref
from kernels.fp8_quant import GRAD_AMAX_MIN

OPS = make_ops("emulation")
E4M3_MIN_NORMAL = 2.0**-6
FP8_REL_MAX = 0.06  # one FP8 GEMM vs fp32 (two E4M3 operands; typical 0.036)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _heavy(rows: int, cols: int, seed: int, spread: float = 1.5) -> torch.Tensor:
    """Gaussian values with a log-normal magnitude per element: a wide range inside each tile."""
    g = _gen(seed)
    return torch.randn(rows, cols, generator=g) * torch.exp(
        spread * torch.randn(rows, cols, generator=g)
    )


def _layer(lin: nn.Linear, recipe: Recipe) -> FP8Linear:
    return FP8Linear(
        lin,
        recipe.ops,
        backend="emulation",
        scale_fmt=None,
        cache_fp8=True,
        stats=QuantStats(),
        stats_every=1,
        recipe=recipe,
    )


def _grad_underflow(floor: float, loss_scale: float) -> float:
    """Fraction of nonzero output-gradient entries a Dgrad quantization flushes to zero."""
    layer = _layer(nn.Linear(256, 384, bias=False), Recipe(ops=OPS, grad_amax_min=floor))
    dy = _heavy(512, 384, seed=1) * 1e-6 * loss_scale  # small-model gradients are ~1e-6
    layer(torch.randn(512, 256, generator=_gen(0), requires_grad=True)).backward(dy)
    return layer.stats.summary()["grad_underflow_mean"]


def test_gradient_underflow_does_not_depend_on_the_loss_scale():
    unscaled, scaled = _grad_underflow(GRAD_AMAX_MIN, 1.0), _grad_underflow(GRAD_AMAX_MIN, 1e-3)
    assert 0 < unscaled < 1e-3
    assert abs(scaled - unscaled) <= 0.05 * unscaled  # same fraction, within rounding noise
    # the activation floor pins the scale of tiny tiles: underflow follows the loss scale
    assert _grad_underflow(ACT_AMAX_MIN, 1e-3) > 100 * unscaled


def _retile(fmt: str | None, x_NI: torch.Tensor):
    """x's cached 1x128 copy, that copy re-tiled to 128x1, and the 128x1 scales per element."""
    r = Recipe(ops=OPS, act_fmt=fmt)
    q, s = r.act(x_NI)
    cached_NI = r.dequant(q, s)
    q_t, s_t = r.act_t(cached_NI)
    retiled_NI = r.dequant(q_t, s_t).t()
    s_elem_NI = s_t.repeat_interleave(128, dim=1)[:, : x_NI.shape[0]].t()
    return cached_NI, retiled_NI, s_elem_NI


@pytest.mark.parametrize("spread", [0.0, 1.5])
def test_pow2_scales_make_the_retiling_exact(spread):
    x_NI = _heavy(512, 384, seed=2, spread=spread)
    cached, retiled, s_new = _retile("ue8m0", x_NI)
    # every element the 128x1 tile represents in E4M3's normal range survives bit for bit;
    # only those below it in the new tile (which any 128x1 quantization rounds) may move
    normal = cached.abs() >= E4M3_MIN_NORMAL * s_new
    assert normal.float().mean() > 0.99
    assert torch.equal(retiled[normal], cached[normal])
    assert ((retiled - cached).abs() <= s_new * 2.0**-10).all()
    assert (retiled - cached).norm() / cached.norm() < 1e-4
    cached, retiled, _ = _retile(None, x_NI)  # fp32 scales: a second rounding of most values
    assert (retiled != cached).float().mean() > 0.9
    assert (retiled - cached).norm() / cached.norm() > 0.005


def test_granularity_outlier_robustness_check_16():
    x_NI = torch.randn(512, 1024, generator=_gen(3))
    x_NI[7, 11] = 1e5
    others = torch.ones_like(x_NI, dtype=torch.bool)
    others[7] = False  # the outlier's own token
    errs = {}
    for gran in ("block", "per_token", "per_tensor"):
        r = Recipe(ops=OPS, granularity=gran)
        x_hat = r.dequant(*r.act(x_NI))
        errs[gran] = ((x_hat - x_NI)[others].norm() / x_NI[others].norm()).item()
    assert errs["block"] == pytest.approx(errs["per_token"], rel=0.05)  # others' rows unaffected
    assert 0.02 < errs["block"] < 0.03 and errs["per_tensor"] > 0.1


@pytest.mark.parametrize("gran", ["per_token", "per_tensor"])
def test_coarse_granularities_train_within_fp8_error(gran):
    lin = nn.Linear(256, 384, bias=False)
    x = torch.randn(200, 256, generator=_gen(4), requires_grad=True)
    dy = torch.randn(200, 384, generator=_gen(5))
    recipe = Recipe(ops=OPS, granularity=gran)
    _layer(lin, recipe)(x).backward(dy)
    got = (x.grad.clone(), lin.weight.grad.clone())
    x.grad, lin.weight.grad = None, None
    F.linear(x, lin.weight).backward(dy)
    for g, want in zip(got, (x.grad, lin.weight.grad), strict=True):
        assert 0.01 < ((g - want).norm() / want.norm()).item() < FP8_REL_MAX
    q, s = recipe.act(x.detach())
    assert (s == s[:, :1]).all()  # one scale along the inner dim, repeated per 128-block


def _gemm_operands(k: int, seed: int):
    r = Recipe(ops=OPS)
    qa, sa = r.act(torch.randn(64, k, generator=_gen(seed)))
    qb, sb, _ = r.weight(torch.randn(96, k, generator=_gen(seed + 1)) * 0.02)
    return qa, sa, qb, sb


def test_limited_accumulation_promotion_k4096():
    a, a_s, b, b_s = _gemm_operands(4096, seed=6)
    ref = fp8_gemm_ref(a, a_s, b, b_s, 128, torch.float32)

    def err(**kw) -> float:
        c = fp8_gemm_limited_ref(a, a_s, b, b_s, 128, torch.float32, **kw)
        return ((c - ref).norm() / ref.norm()).item()

    no_promotion, promoted = err(promote_every=0), err(promote_every=128)
    assert no_promotion > 4 * promoted > 0
    assert err(mantissa_bits=23, promote_every=128) < 1e-6  # full fp32: the reference
    ideal = Recipe(ops=OPS).gemm(a, a_s, b, b_s, 128, torch.float32)
    assert torch.equal(ideal, ref)


def test_chop_mantissa_rounds_toward_zero():
    x = torch.tensor([1.0 + 2.0**-10 + 2.0**-14, -3.0 - 2.0**-12, 0.0])
    assert chop_mantissa(x, 10).tolist() == [1.0 + 2.0**-10, -3.0, 0.0]
    with pytest.raises(ValueError, match="bits"):
        chop_mantissa(x, 24)


def test_recipe_fields_are_config_fields():
    raw = {
        "name": "fp8_block",
        "granularity": "per_tensor",
        "cached_scale_fmt": "fp32",
        "grad_amax_min": 1e-10,
        "accum": "limited",
        "promote_every": 0,
    }
    cfg = from_dict({"train": {"precision": raw}})
    assert to_dict(cfg)["train"]["precision"]["granularity"] == "per_tensor"
    recipe = FP8Block(cfg.train.precision, torch.device("cpu")).recipe()
    assert (recipe.granularity, recipe.act_fmt, recipe.grad_amax_min) == ("per_tensor", None, 1e-10)
    assert (recipe.accum, recipe.promote_every) == ("limited", 0)
    default = FP8Block(FP8Block.Config(backend="emulation"), torch.device("cpu")).recipe()
    assert (default.act_fmt, default.weight_fmt, default.grad_fmt) == ("ue8m0", None, None)
    for key, bad in (("promote_every", 100), ("grad_amax_min", 0.0), ("granularity", "rows")):
        with pytest.raises(ValueError, match=key):
            from_dict({"train": {"precision": {"name": "fp8_block", key: bad}}})
