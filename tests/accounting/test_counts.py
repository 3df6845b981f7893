"""Inspect's counts against closed forms and a FLOP counter on real forwards of small models."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ablate.accounting.flops import count_flops, flop_counter, trial_flops
from ablate.accounting.params import build_meta, count_params, totals
from ablate.core.config import from_dict
from ablate.core.model import Transformer

V, D, L, H, T = 37, 64, 3, 4, 16
BASE = {"vocab_size": V, "dim": D, "num_layers": L, "num_heads": H, "max_seq_len": 32}
MLA = {
    "name": "mla",
    "q_lora_rank": 24,
    "kv_lora_rank": 16,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8,
    "v_head_dim": 16,
}  # v = nope + rope: the forward pads nothing
MOE = {
    "name": "moe",
    "num_routed_experts": 8,
    "num_shared_experts": 1,
    "topk": 2,
    "expert_dim": 16,
    "first_k_dense": 1,
    "dense_hidden_dim": 96,
    "router": {"name": "sigmoid_bias", "num_groups": 2, "topk_groups": 1},
}
CONFIGS = {
    "mha_dense": {},
    "gqa_dense_untied": {"attention": {"name": "gqa", "num_kv_heads": 2}, "tie_embeddings": False},
    "mla_moe": {"attention": MLA, "ffn": MOE},
    "mla_moe_mtp": {"attention": MLA, "ffn": MOE, "mtp": {"name": "mtp", "depth": 1}},
}


def cfg_of(name: str):
    return from_dict({"model": {**BASE, **CONFIGS[name]}, "data": {"seq_len": T}})


def test_mla_moe_closed_form():
    parts = count_params(build_meta(cfg_of("mla_moe")))
    g = {p.group: p for p in parts}
    mla = D * 24 + 24 * H * 16 + D * (16 + 8) + 16 * H * (8 + 16) + H * 16 * D  # wq_a..wo
    assert g["attention"].params == L * mla
    assert g["norm"].params == L * (2 * D + 24 + 16) + D  # block norms, q/kv norms, final
    assert g["ffn.dense"].params == 3 * D * 96
    assert g["ffn.shared_experts"].params == (L - 1) * 3 * D * 16
    assert g["ffn.routed_experts"].params == (L - 1) * 8 * 3 * D * 16
    assert g["ffn.routed_experts"].active == (L - 1) * 2 * 3 * D * 16
    assert g["router"].params == (L - 1) * 8 * D
    assert g["embedding"].active == D and "head" in g and g["head"].params == 0
    total, active = totals(parts)
    model = Transformer(cfg_of("mla_moe").model)
    assert total == sum(p.numel() for p in model.parameters())
    assert active == total - V * D + D + V * D - (L - 1) * 6 * 3 * D * 16  # tied head used


def test_mha_attention_flops_closed_form():
    model = build_meta(cfg_of("mha_dense"))
    f = count_flops(model, count_params(model), 4096)["main"]
    assert f.attention == L * 2 * 2 * D * 4096  # q.k and p.v over 4096 keys, H * d_h = D
    f_mla = count_flops(m := build_meta(cfg_of("mla_moe")), count_params(m), 100)["main"]
    assert f_mla.attention == L * 2 * H * (8 + 8 + 16) * 100


@pytest.mark.parametrize("name", ["mha_dense", "gqa_dense_untied", "mla_moe"])
def test_forward_flops_equal_a_flop_counter(name):
    """One real forward (B=2, T) counted op by op equals 2 x active matmul params + attention."""
    cfg = cfg_of(name)
    model = Transformer(cfg.model).eval()
    idx_BT = torch.randint(0, V, (2, T))
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), flop_counter() as fc:
        model(idx_BT)
    meta = build_meta(cfg)
    expected = count_flops(meta, count_params(meta), T)["main"].forward
    assert fc.get_total_flops() == pytest.approx(2 * T * expected, rel=1e-9)


def test_mtp_section_counted_apart():
    parts = count_params(build_meta(cfg_of("mla_moe_mtp")))
    main, _ = totals(parts)
    mtp, mtp_active = totals(parts, "mtp")
    assert main == totals(count_params(build_meta(cfg_of("mla_moe"))))[0]
    # one more MoE block (like trunk block 1), eh_proj (2D -> D) and enorm, hnorm, final norm
    moe_block = Transformer(cfg_of("mla_moe").model).blocks[1]
    assert mtp == sum(p.numel() for p in moe_block.parameters()) + 2 * D * D + 3 * D
    assert 0 < mtp_active < mtp


def test_trial_flops_are_train_flops_per_token_times_tokens():
    cfg = cfg_of("mla_moe_mtp")
    meta = build_meta(cfg)
    per_token = sum(f.train for f in count_flops(meta, count_params(meta), T).values())
    assert trial_flops(cfg, 1000) == {
        "activated_params": totals(count_params(meta))[1],
        "train_flops_per_token": per_token,
        "train_flops": per_token * 1000,
    }
    assert per_token > count_flops(meta, count_params(meta), T)["main"].train  # MTP counted


def test_trial_flops_warn_and_record_nothing_when_the_model_cannot_be_counted():
    cfg = from_dict({"model": {**BASE, "vocab_size": 0}, "data": {"seq_len": T}})
    with pytest.warns(UserWarning, match="training FLOPs not counted"):
        assert trial_flops(cfg, 1000) == {}
