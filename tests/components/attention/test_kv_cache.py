"""KV-cache bytes per token from the real cache buffers vs the closed forms of docs/design.md#mla
(and #reference-values check 1),
and cache contents position by position after prefill and each decode step.

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
from tests.rope_ref import plain_freqs, rotate_ref

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
    # Attention parameters per layer (docs/design.md#mla): 187.1 M for V3.
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


# --------------------------------------------------------------- cache contents, by position

PREFILL, DECODE, SPARE = 5, 3, 2  # tokens prefilled, decode steps, cache slots never written
CASES = [("mha", {}), ("gqa", {}), ("gqa", {"num_kv_heads": 1})]
CASES += [
    ("mla", {"cache_impl": impl, "q_lora_rank": q})
    for impl in ("naive", "absorbed")
    for q in (0, 20)
]


def _build(name: str, fields: dict):
    mcfg = tiny_model_config()
    attn = registry.build(attn_cfg(name, **fields), BuildContext(mcfg, 0)).eval()
    with torch.no_grad():  # non-trivial norm gains, so a skipped or misplaced norm shows
        for p in attn.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return attn


def _rms(x, norm):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight


def _expected_cache(attn, x_BLD: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cache entries of positions 0..L-1 written from the weights alone (positions 0..)."""
    B, L, _ = x_BLD.shape
    name, pos, theta = attn.registry_name, list(range(L)), tiny_model_config().rope_theta
    if name in ("mha", "gqa"):
        K = attn.head_dim
        if name == "mha":
            k, v = (x_BLD @ attn.wqkv.weight.T).view(B, L, 3, -1, K)[:, :, 1:].unbind(2)
        else:
            k, v = (x_BLD @ attn.wkv.weight.T).view(B, L, 2, -1, K).unbind(2)
        return {"k": rotate_ref(k, pos, plain_freqs(K, theta)), "v": v}
    c = attn.cfg
    C, N, R, V = c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
    kv = x_BLD @ attn.wkv_a.weight.T
    latent = _rms(kv[..., :C], attn.kv_norm)
    k_pe = rotate_ref(kv[:, :, None, C:], pos, plain_freqs(R, theta))
    if c.cache_impl == "absorbed":
        return {"latent_pe": torch.cat((latent, k_pe[:, :, 0]), dim=-1)}
    up = (latent @ attn.wkv_b.weight.T).view(B, L, attn.num_heads, N + V)
    k = torch.cat((up[..., :N], k_pe.expand(-1, -1, attn.num_heads, -1)), dim=-1)
    return {"k": k, "v": up[..., N:]}


def _prefill_then_decode(attn, x_BLD, check=None):
    """Prefill PREFILL tokens, then decode one at a time; `check(cache, filled)` after each."""
    cache = attn.new_cache(x_BLD.shape[0], x_BLD.shape[1] + SPARE, torch.float32)
    outs = [attn(x_BLD[:, :PREFILL], cache=cache)]
    check and check(cache, PREFILL)
    for t in range(PREFILL, x_BLD.shape[1]):
        outs.append(attn(x_BLD[:, t : t + 1], start_pos=t, cache=cache))
        check and check(cache, t + 1)
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("name,fields", CASES, ids=lambda v: str(v))
def test_cache_holds_each_positions_keys_and_values(name, fields):
    attn = _build(name, fields)
    x = torch.randn(2, PREFILL + DECODE, attn.wo.out_features)
    with torch.no_grad():
        want = _expected_cache(attn, x)

        def check(cache, filled):
            assert set(cache) == set(want)
            for key, buf in cache.items():
                for p in range(filled):  # every written position holds its own entry
                    torch.testing.assert_close(buf[:, p], want[key][:, p], atol=1e-5, rtol=1e-5)
                assert not buf[:, filled:].any(), f"{key}: a position past {filled} was written"

        _prefill_then_decode(attn, x, check)


def test_every_registered_attention_has_a_cache_reference():
    missing = set(registry.names("attention")) - {name for name, _ in CASES}
    assert not missing, f"add {missing} to CASES and _expected_cache (its cache layout)"


@pytest.mark.parametrize("name", registry.names("attention"))
def test_cached_decoding_equals_the_full_forward(name):
    """Any registered attention, default config: decode outputs and the cache equal those of
    one uncached forward and one prefill of the whole sequence."""
    attn = _build(name, {})
    x = torch.randn(2, PREFILL + DECODE, attn.wo.out_features)
    with torch.no_grad():
        full = attn(x)
        stepped, cache = _prefill_then_decode(attn, x)
        once = attn.new_cache(2, x.shape[1] + SPARE, torch.float32)
        torch.testing.assert_close(attn(x, cache=once), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    for key in cache:
        torch.testing.assert_close(cache[key], once[key], atol=1e-5, rtol=1e-5)
    assert full.abs().max() > 1e-2
