"""KV-cache bytes per token from the real cache buffers vs the closed forms of spec §1.3 / §6.1.

Paper-scale models are built on the meta device (no memory, no compute).
"""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.core.config import ModelConfig
from ablate.core.model import Transformer
from ablate.core.trainer import collect_metrics
from ablate.interfaces import BuildContext
from tests.conftest import tiny_model_config

BF16_BYTES, FP32_BYTES = 2, 4
V3 = dict(vocab_size=129280, dim=7168, num_layers=61, num_heads=128, max_seq_len=4096)
V3_MLA = dict(
    q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128
)
LITE_MLA = dict(V3_MLA, q_lora_rank=0)  # 16B / V2-Lite shape


def attn_cfg(name: str, **fields):
    return registry.get("attention", name).Config(**fields)


def layer_elems(model_kw: dict, name: str, **fields) -> int:
    """Elements one token occupies in one layer's cache, from an attention built on meta."""
    mcfg = ModelConfig(**{**model_kw, "attention": attn_cfg(name, **fields)})
    with torch.device("meta"):
        attn = registry.build(mcfg.attention, BuildContext(mcfg, 0))
    return attn.kv_cache_bytes_per_token(torch.bfloat16) // BF16_BYTES


@pytest.mark.parametrize(
    "heads,layers,impl,expected",
    [
        (128, 61, "absorbed", 35_136),  # V3: (512 + 64) * 61
        (128, 60, "absorbed", 34_560),  # V2-236B: "34.6K" in V2 Table 9
        (16, 27, "absorbed", 15_552),  # 16B / V2-Lite: "15.6K" in V2 Table 9
        (128, 61, "naive", 2_498_560),  # V3 with materialised k, v: 128 * (192 + 128) * 61
    ],
)
def test_mla_closed_forms(heads, layers, impl, expected):
    model_kw = dict(V3, num_heads=heads, num_layers=layers)
    per_layer = layer_elems(model_kw, "mla", **V3_MLA, cache_impl=impl)
    assert per_layer * layers == expected
    d_c, d_r = V3_MLA["kv_lora_rank"], V3_MLA["qk_rope_head_dim"]
    if impl == "absorbed":
        assert per_layer == d_c + d_r  # exactly the latent plus the shared RoPE key


def test_mha_gqa_mqa_closed_forms():
    kw = dict(V3, dim=2048, num_heads=16, num_layers=27)  # 16 heads x 128 dims x 27 layers
    n_h, d_h, L = 16, 128, 27
    assert layer_elems(kw, "mha") * L == 2 * n_h * d_h * L == 110_592  # V2 Table 9 "110.6K"
    for n_g in (1, 2, 8, 16):  # MQA, two GQA sizes, and GQA with n_g = n_h (= MHA)
        assert layer_elems(kw, "gqa", num_kv_heads=n_g) * L == 2 * n_g * d_h * L


# `Module.to(bf16)` also casts the complex RoPE table; only cache shapes matter here.
@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_v3_whole_model_metrics_on_meta():
    """DeepSeek-V3's dims: 70,272 bytes per token in BF16 over 61 layers, via `metrics()`."""
    mcfg = ModelConfig(**V3, attention=attn_cfg("mla", **V3_MLA))
    with torch.device("meta"):
        model = Transformer(mcfg).to(torch.bfloat16)
    got = collect_metrics(model)
    assert got["kv_cache_bytes_per_token"] == 70_272
    assert got["kv_cache_bf16_bytes_per_token"] == 70_272
    assert got["kv_cache_elems_per_token"] == 35_136
    assert got["kv_cache_bytes_per_token_per_layer"] == 576 * BF16_BYTES
    # Attention parameters per layer (spec §1.3): 187.1 M for V3.
    d, q, n_h, d_h, d_r, d_v, d_c = 7168, 1536, 128, 128, 64, 128, 512
    closed = (
        d * q
        + q
        + q * n_h * (d_h + d_r)
        + d * (d_c + d_r)
        + d_c
        + d_c * n_h * (d_h + d_v)
        + n_h * d_v * d
    )
    n_attn = sum(p.numel() for p in model.blocks[0].attn.parameters())
    assert n_attn == closed and round(n_attn / 1e6, 1) == 187.1


@pytest.mark.parametrize(
    "attention,elems",
    [
        (dict(name="mha"), 2 * 64),  # 2 * n_h * d_h = 2 * dim
        (dict(name="gqa", num_kv_heads=1), 2 * 16),
        (dict(name="mla", kv_lora_rank=24, qk_rope_head_dim=8), 24 + 8),
        (
            dict(
                name="mla",
                kv_lora_rank=24,
                qk_rope_head_dim=8,
                qk_nope_head_dim=16,
                v_head_dim=12,
                cache_impl="naive",
            ),
            4 * (16 + 8 + 12),
        ),
    ],
)
def test_metrics_at_run_dtype_fp32(attention, elems):
    fields = {k: v for k, v in attention.items() if k != "name"}
    model = Transformer(tiny_model_config(attention=attn_cfg(attention["name"], **fields)))
    got = collect_metrics(model)
    layers = model.cfg.num_layers
    assert got["kv_cache_elems_per_token"] == elems * layers
    assert got["kv_cache_bytes_per_token"] == elems * layers * FP32_BYTES  # fp32 weights
    assert got["kv_cache_bytes_per_token_per_layer"] == elems * FP32_BYTES
    assert got["kv_cache_bf16_bytes_per_token"] == elems * layers * BF16_BYTES
    # The metric equals what a real decode allocates.
    real = sum(t.nbytes for c in model.new_caches(1, 1) for t in c.values())
    assert real == got["kv_cache_bytes_per_token"]


@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_metrics_follow_weight_dtype():
    model = Transformer(tiny_model_config()).to(torch.bfloat16)
    got = collect_metrics(model)
    assert got["kv_cache_bytes_per_token"] == got["kv_cache_bf16_bytes_per_token"]
