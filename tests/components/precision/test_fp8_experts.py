"""FP8 routed-expert GEMMs: FP8GroupedLinear against a per-expert reference (each expert's
GEMMs as one FP8Linear over its own tokens), the Triton path, and the model transform."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from ablate.core.config import load_config
from ablate.core.model import Transformer
from ablate.nn.fp8_grouped import FP8GroupedLinear
from ablate.nn.fp8_recipe import QuantStats, Recipe, make_ops
from ablate.nn.grouped import GroupedLinear, grouped_linear
from components.precision.fp8_block import FP8Block, FP8Linear
from tests.conftest import REPO, tiny_model_config

EXACT_REL = 1e-6  # same quantized operands, different fp32 accumulation order
COUNTS = (130, 0, 64, 200)  # per-expert assignments: a partial tile, an idle expert, two tiles


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _inputs(i: int = 256, o: int = 384, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_AI = torch.randn(sum(COUNTS), i, generator=g)
    w_EOI = torch.randn(len(COUNTS), o, i, generator=g) * 0.02
    dy_AO = torch.randn(sum(COUNTS), o, generator=g)
    return x_AI, w_EOI, dy_AO, torch.tensor(COUNTS).cumsum(0)


def _grouped(recipe: Recipe, x_AI, w_EOI, dy_AO, ends_E):
    layer = FP8GroupedLinear(
        recipe, backend="emulation", cache_fp8=True, stats=QuantStats(), stats_every=1
    )
    x, w = x_AI.clone().requires_grad_(), w_EOI.clone().requires_grad_()
    y = layer(x, w, ends_E)
    y.backward(dy_AO)
    return y.detach(), x.grad, w.grad, layer.stats


def _per_expert(recipe: Recipe, x_AI, w_EOI, dy_AO, ends_E):
    """Each expert separately: an FP8Linear holding w[e], over rows ends[e-1]:ends[e]."""
    ys, dxs, dws = [], [], []
    for e, (s, t) in enumerate(zip([0, *ends_E[:-1].tolist()], ends_E.tolist(), strict=True)):
        lin = nn.Linear(w_EOI.shape[2], w_EOI.shape[1], bias=False)
        lin.weight.data = w_EOI[e].clone()
        layer = FP8Linear(
            lin,
            recipe.ops,
            backend="emulation",
            scale_fmt=None,
            cache_fp8=True,
            stats=QuantStats(),
            stats_every=0,
            recipe=recipe,
        )
        x = x_AI[s:t].clone().requires_grad_()
        if t > s:
            y = layer(x)
            y.backward(dy_AO[s:t])
            ys.append(y.detach())
            dxs.append(x.grad)
        dws.append(lin.weight.grad if t > s else torch.zeros_like(w_EOI[e]))
    return torch.cat(ys), torch.cat(dxs), torch.stack(dws)


@pytest.mark.parametrize("gran,fmt", [("block", None), ("block", "ue8m0"), ("per_token", None)])
def test_grouped_fp8_matches_per_expert_reference(gran, fmt):
    recipe = Recipe(ops=make_ops("emulation"), granularity=gran, act_fmt=fmt)
    inputs = _inputs()
    *got, stats = _grouped(recipe, *inputs)
    want = _per_expert(recipe, *inputs)
    for g, w in zip(got, want, strict=True):
        assert _rel(g, w) <= EXACT_REL
    assert torch.equal(got[2][1], torch.zeros_like(got[2][1]))  # the idle expert
    y_ref = grouped_linear(inputs[0], inputs[1], inputs[3])
    assert 0.01 < _rel(got[0], y_ref) < 0.06  # FP8, not the bf16/fp32 GEMM
    assert {"act_rel_err_mean", "grad_rel_err_mean", "weight_rel_err_mean"} <= set(stats.summary())


def test_grouped_triton_matches_emulation():
    inputs = _inputs(i=256, o=128, seed=1)
    emulated = _grouped(Recipe(ops=make_ops("emulation")), *inputs)[:3]
    kernels = _grouped(Recipe(ops=make_ops("triton")), *inputs)[:3]
    for g, w in zip(kernels, emulated, strict=True):
        assert _rel(g, w) <= EXACT_REL


def _moe_model() -> Transformer:
    moe = ["model.dim=128", "model.ffn.name=moe", "model.ffn.num_routed_experts=4"]
    cfg = load_config(REPO / "sweeps" / "base" / "tiny.yaml", moe).model
    return Transformer(tiny_model_config(ffn=cfg.ffn, dim=128))


def test_transform_runs_routed_experts_in_fp8():
    model, prec = _moe_model(), FP8Block(FP8Block.Config(backend="emulation"), torch.device("cpu"))
    keys = set(model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prec.apply(model)
    grouped = {n: type(m) for n, m in model.named_modules() if n.endswith("_gemm")}
    assert grouped and set(grouped.values()) == {FP8GroupedLinear}
    assert prec.summary()["num_fp8_grouped"] == 2 * model.cfg.num_layers
    assert set(model.state_dict()) == keys
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 16))
    with prec.autocast():
        loss = model(tokens, tokens)[1]
    loss.backward()
    moe = model.blocks[0].ffn
    assert moe.w13.grad is not None and torch.isfinite(moe.w13.grad).all()
    assert moe.w2.grad.abs().sum() > 0


def test_skip_keeps_an_expert_gemm_in_high_precision():
    model = _moe_model()
    cfg = FP8Block.Config(backend="emulation", skip=("*.w2_gemm",))
    with pytest.warns(UserWarning, match="w2_gemm"):
        FP8Block(cfg, torch.device("cpu")).apply(model)
    assert type(model.blocks[0].ffn.w2_gemm) is GroupedLinear
    assert type(model.blocks[0].ffn.w13_gemm) is FP8GroupedLinear
