"""ffn/moe: vectorized dispatch vs a naive per-token reference, fused shared experts, dense
leading layers, balance metrics per mode, config validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ablate import registry
from ablate.core.config import ConfigError, load_config
from ablate.interfaces import BuildContext
from ablate.nn.balance import expert_counts, maxvio
from ablate.nn.swiglu import SwiGLU
from components.ffn.moe import grouped_linear, looped_linear
from tests.conftest import REPO, tiny_model_config

DIM = 32


def make(layer_idx: int = 1, **cfg):
    cls = registry.get("ffn", "moe")
    return cls(cls.Config(**cfg), BuildContext(tiny_model_config(dim=DIM), layer_idx))


def naive(moe, x_BTD):
    """One token and one chosen expert at a time, straight from the layer equation."""
    x_ND = x_BTD.reshape(-1, DIM)
    weights, ids = moe.router(x_ND)
    rows = []
    for n in range(x_ND.shape[0]):
        y = moe.shared(x_ND[n]) if moe.shared is not None else torch.zeros(DIM)
        for k in range(ids.shape[1]):
            e = ids[n, k]
            gate, up = (moe.w13[e] @ x_ND[n]).chunk(2)
            y = y + weights[n, k] * (moe.w2[e] @ (F.silu(gate) * up))
        rows.append(y)
    return torch.stack(rows).view_as(x_BTD)


@pytest.mark.parametrize("router", ["sigmoid_bias", "softmax_aux"])
def test_dispatch_matches_naive_reference_values_and_grads(router):
    cfg_cls = registry.get("router", router).Config
    moe = make(num_routed_experts=8, topk=3, expert_dim=24, router=cfg_cls())
    x = torch.randn(2, 8, DIM, requires_grad=True)
    got = moe(x)
    want = naive(moe, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(got.square().sum(), [x, moe.w13, moe.w2])
    ref = torch.autograd.grad(want.square().sum(), [x, moe.w13, moe.w2])
    for g, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_dispatch_with_empty_experts():
    moe = make(num_routed_experts=8, topk=2, num_shared_experts=0)
    moe.router.bias[:2] = 10.0  # experts 2..7 receive no token
    x = torch.randn(2, 6, DIM)
    torch.testing.assert_close(moe(x), naive(moe, x), rtol=1e-5, atol=1e-6)


def test_grouped_and_looped_linear_agree():
    x = torch.randn(20, 16)
    w = torch.randn(5, 12, 16)
    ends = torch.tensor([3, 3, 11, 20, 20])  # two empty experts
    torch.testing.assert_close(grouped_linear(x, w, ends), looped_linear(x, w, ends))


def test_fused_shared_experts_equal_separate_ones():
    num_shared, hidden = 3, 8
    moe = make(num_shared_experts=num_shared, expert_dim=hidden)
    x = torch.randn(2, 5, DIM)
    fused = moe.shared(x)
    total = torch.zeros_like(fused)
    gate_w, up_w = moe.shared.w13.weight.chunk(2, dim=0)
    for j in range(num_shared):
        part = slice(j * hidden, (j + 1) * hidden)
        expert = SwiGLU(DIM, hidden)
        expert.w13.weight.data = torch.cat([gate_w[part], up_w[part]])
        expert.w2.weight.data = moe.shared.w2.weight[:, part]
        total = total + expert(x)
    torch.testing.assert_close(fused, total, rtol=1e-6, atol=1e-7)


def test_first_k_dense_layers_use_dense_swiglu():
    dense = make(layer_idx=0, first_k_dense=1, dense_hidden_dim=48)
    assert dense.dense.w2.weight.shape == (DIM, 48)
    assert not hasattr(dense, "router")
    moe = make(layer_idx=1, first_k_dense=1)
    assert moe.dense is None and moe.router is not None
    assert dense.metrics() == {}


def test_default_expert_width_matches_dense_activation():
    moe = make(num_shared_experts=1, topk=2)
    hidden = moe.w2.shape[-1]
    assert moe.shared.w2.weight.shape[-1] == hidden
    assert moe.w13.shape == (8, 2 * hidden, DIM)


def test_metrics_per_mode():
    moe = make(num_routed_experts=8, topk=2)
    step_loads = []
    for _ in range(2):
        x = torch.randn(3, 10, DIM)
        moe(x)
        step_loads.append(expert_counts(moe.router(x.reshape(-1, DIM))[1], 8))
        moe.after_optimizer_step()
    out = moe.metrics()
    want = sum(maxvio(loads).item() for loads in step_loads) / 2
    assert out["maxvio_batch"] == pytest.approx(want)
    loads = [out[f"expert_load/{i}"] for i in range(8)]
    assert sum(loads) / 8 == pytest.approx(1.0)
    total = step_loads[0] + step_loads[1]
    assert loads == pytest.approx((total / total.double().mean()).tolist())
    assert out["maxvio_seq"] >= 0 and moe.metrics() == {}
    moe.eval()
    eval_loads = torch.zeros(8, dtype=torch.int64)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(4, 10, DIM)
            moe(x)
            eval_loads += expert_counts(moe.router(x.reshape(-1, DIM))[1], 8)
    out = moe.metrics()
    assert set(out) == {"maxvio_global", "maxvio_seq"}
    assert out["maxvio_global"] == pytest.approx(maxvio(eval_loads).item())


def test_runs_under_bf16_autocast_and_casts():
    moe = make()
    moe.to(torch.bfloat16).float()
    assert moe.seq_vio.dtype == torch.float64 and moe.router.bias.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moe(torch.randn(2, 4, DIM))
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize(
    "override,key",
    [
        ("model.ffn.topk=9", "topk"),
        ("model.ffn.router.num_groups=3", "num_groups"),
        ("model.ffn.first_k_dense=2", "first_k_dense"),
    ],
)
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"model.ffn.*{key}"):
        load_config(REPO / "sweeps" / "base" / "tiny.yaml", ["model.ffn.name=moe", override])
