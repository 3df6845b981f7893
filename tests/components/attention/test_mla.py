"""MLA: docs/design.md#mla equations vs an independent reference, naive vs absorbed (check 10),
RoPE convention (check 14), relative positions, causality, YaRN scale (check 2), config errors."""

from __future__ import annotations

import math

import pytest
import torch

from ablate import registry
from ablate.core.config import ConfigError, ModelConfig, from_dict, load_config
from ablate.interfaces import BuildContext
from ablate.nn.rope import apply_rope
from tests.conftest import tiny_model_config

SMALL = dict(kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12)
EPS = 1e-6  # RMSNorm eps of the default norm


def build_mla(model_cfg: ModelConfig | None = None, **fields):
    model_cfg = model_cfg or tiny_model_config()
    cfg = registry.get("attention", "mla").Config(**{**SMALL, **fields})
    return registry.build(cfg, BuildContext(model_cfg, 0)).eval()


def rms(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * weight


def rotate(x_BTHR, layout: str, theta: float = 10000.0):
    """RoPE as in design.md#rope-and-yarn: interleaved = DS-code's complex form; half = Llama's."""
    T, R = x_BTHR.shape[1], x_BTHR.shape[-1]
    freqs = theta ** (-torch.arange(0, R, 2, dtype=torch.float64) / R)
    angles_T1P = torch.outer(torch.arange(T, dtype=torch.float64), freqs)[:, None, :]
    if layout == "interleaved":
        xc = torch.view_as_complex(x_BTHR.double().reshape(*x_BTHR.shape[:-1], R // 2, 2))
        return torch.view_as_real(xc * torch.exp(1j * angles_T1P)).flatten(-2).float()
    x1, x2 = x_BTHR.double().chunk(2, dim=-1)
    cos, sin = angles_T1P.cos(), angles_T1P.sin()
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).float()


def reference(attn, x_BTD, layout="interleaved"):
    """Spec §1.1 per head, with explicit loops over nothing but einsums: independent code."""
    c = attn.cfg
    B, T, _ = x_BTD.shape
    H, N, R, V, C = (
        attn.num_heads,
        c.qk_nope_head_dim,
        c.qk_rope_head_dim,
        c.v_head_dim,
        c.kv_lora_rank,
    )
    if c.q_lora_rank:
        q = rms(x_BTD @ attn.wq_a.weight.T, attn.q_norm.weight) @ attn.wq_b.weight.T
    else:
        q = x_BTD @ attn.wq.weight.T
    q = q.view(B, T, H, N + R)
    q_c, q_r = q[..., :N], rotate(q[..., N:], layout)
    kv = x_BTD @ attn.wkv_a.weight.T
    c_kv, k_r = rms(kv[..., :C], attn.kv_norm.weight), rotate(kv[..., None, C:], layout)[:, :, 0]
    up = (c_kv @ attn.wkv_b.weight.T).view(B, T, H, N + V)
    k_c, v = up[..., :N], up[..., N:]
    scores = (
        torch.einsum("bthn,bshn->bhts", q_c, k_c) + torch.einsum("bthr,bsr->bhts", q_r, k_r)
    ) / math.sqrt(N + R)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.einsum("bhts,bshv->bthv", scores.softmax(-1), v)
    return o.flatten(2) @ attn.wo.weight.T


@pytest.mark.parametrize("q_lora_rank", [0, 20])
def test_matches_spec_reference_and_interleaved_is_not_half(q_lora_rank):
    attn = build_mla(q_lora_rank=q_lora_rank)
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        out, ref = attn(x), reference(attn, x)
        half = reference(attn, x, layout="half")
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    assert (out - half).abs().max() > 100 * (out - ref).abs().max() + 1e-4


def prefill_and_decode(attn, x_BTD, prefill: int):
    cache = attn.new_cache(x_BTD.shape[0], x_BTD.shape[1], torch.float32)
    outs = [attn(x_BTD[:, :prefill], cache=cache)]
    outs += [
        attn(x_BTD[:, t : t + 1], start_pos=t, cache=cache) for t in range(prefill, x_BTD.shape[1])
    ]
    return torch.cat(outs, dim=1)


EQUAL_DIMS = dict(
    qk_nope_head_dim=12, v_head_dim=12
)  # d_h = d_v: a W^UK / W^UV mix-up keeps shapes


@pytest.mark.parametrize(
    "fields",
    [dict(), dict(q_lora_rank=20), dict(yarn=True, original_seq_len=8), EQUAL_DIMS],
)
def test_naive_absorbed_and_full_forward_agree(fields):
    absorbed = build_mla(**fields, cache_impl="absorbed")
    naive = build_mla(**fields, cache_impl="naive")
    naive.load_state_dict(absorbed.state_dict())
    x = torch.randn(2, 13, 64)  # 10-token prefill, 3 decode steps (as in docs/design.md check 10)
    with torch.no_grad():
        full = absorbed(x)  # no cache: the training (materialised) path
        a, n = prefill_and_decode(absorbed, x, 10), prefill_and_decode(naive, x, 10)
    torch.testing.assert_close(a, n, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(n, full, atol=1e-5, rtol=1e-5)
    assert full.abs().max() > 1e-2  # the comparison is not between near-zero outputs


@pytest.mark.parametrize("impl", ["naive", "absorbed"])
@pytest.mark.parametrize("dims", [SMALL, {**SMALL, **EQUAL_DIMS}], ids=["unequal", "equal"])
def test_cached_decoding_matches_spec_reference(impl, dims):
    """Both cache paths, prefill then decode, vs the independent reference: with d_h = d_v a
    swapped up-projection is caught by values, not by a shape error."""
    attn = build_mla(**dims, q_lora_rank=20, cache_impl=impl)
    x = torch.randn(2, 11, 64)
    with torch.no_grad():
        got, ref = prefill_and_decode(attn, x, 7), reference(attn, x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert ref.abs().max() > 1e-2


def test_bf16_paths_stay_close():
    """Spec §6.10: in BF16 the two paths agree with fp32 to a relative error of ~2e-2."""
    absorbed, naive = build_mla(cache_impl="absorbed"), build_mla(cache_impl="naive")
    naive.load_state_dict(absorbed.state_dict())
    x = torch.randn(2, 12, 64)
    with torch.no_grad():
        ref = absorbed(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs = [prefill_and_decode(m, x, 9).float() for m in (absorbed, naive)]
    for out in outs:
        assert (out - ref).norm() / ref.norm() < 2e-2


def test_absorbed_cache_is_exactly_latent_and_rope_key():
    attn = build_mla(cache_impl="absorbed")
    x = torch.randn(1, 5, 64)
    cache = attn.new_cache(1, 8, torch.float32)
    assert {k: tuple(v.shape) for k, v in cache.items()} == {"latent_pe": (1, 8, 24 + 8)}
    with torch.no_grad():
        attn(x, cache=cache)
        latent, k_pe = attn.wkv_a(x).split((24, 8), dim=-1)
        expected = torch.cat(
            (attn.kv_norm(latent), apply_rope(k_pe[:, :, None], attn.rope_TP[:5])[:, :, 0]), -1
        )
    torch.testing.assert_close(cache["latent_pe"][:, :5], expected)  # normed, then rotated
    assert not cache["latent_pe"][:, 5:].any()


def test_rope_scores_depend_only_on_relative_position():
    attn = build_mla(yarn=True, original_seq_len=8)  # holds with YaRN frequencies as well
    q_11R, k_11R = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        q = apply_rope(q_11R, attn.rope_TP[m : m + 1])
        k = apply_rope(k_11R, attn.rope_TP[n : n + 1])
        return (q * k).sum()

    for shift in (1, 7, 20):
        torch.testing.assert_close(score(5 + shift, 2 + shift), score(5, 2))
    assert not torch.allclose(score(5, 2), score(6, 2))


@pytest.mark.parametrize("impl", ["naive", "absorbed"])
def test_causal(impl):
    attn = build_mla(q_lora_rank=20, cache_impl=impl)
    x = torch.randn(2, 12, 64)
    x2 = x.clone()
    x2[:, 8:] += 1.0
    with torch.no_grad():
        for run in (
            lambda z: attn(z),
            lambda z: attn(z, cache=attn.new_cache(2, 12, torch.float32)),
        ):
            a, b = run(x), run(x2)
            torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-6, rtol=1e-6)
            assert not torch.allclose(a[:, 8:], b[:, 8:])


V3_MLA = dict(
    q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128
)


@pytest.mark.parametrize(
    "max_len,yarn,mscale,expected",
    [
        (4096, False, 1.0, 0.07216878),  # 1/sqrt(192)
        (16384, False, 1.0, 0.07216878),  # YaRN only when asked
        (16384, True, 1.0, 0.07216878 * 1.8738542),  # V3: 0.1352346
        (16384, True, 0.707, 0.07216878 * 1.5896),  # 16B: mscale 0.707
    ],
)
def test_softmax_scale(max_len, yarn, mscale, expected):
    mcfg = ModelConfig(dim=7168, num_heads=128, max_seq_len=max_len)
    with torch.device("meta"):
        attn = build_mla(mcfg, **V3_MLA, yarn=yarn, mscale=mscale)
    assert attn.softmax_scale == pytest.approx(expected, rel=5e-5)  # design.md check 2 rounds m^2


def test_yarn_off_when_max_len_within_original():
    mcfg = ModelConfig(dim=7168, num_heads=128, max_seq_len=4096)
    with pytest.warns(UserWarning, match="YaRN skipped"), torch.device("meta"):
        attn = build_mla(mcfg, **V3_MLA, yarn=True)
    assert attn.softmax_scale == pytest.approx(192**-0.5)


@pytest.mark.parametrize(
    "attention,needle",
    [
        (dict(qk_rope_head_dim=7), "qk_rope_head_dim=7 must be even"),
        (dict(kv_lora_rank=0), "kv_lora_rank=0 must be positive"),
        (dict(q_lora_rank=-1), "q_lora_rank=-1"),
        (dict(cache_impl="flash"), "must be one of"),
    ],
)
def test_bad_dims_are_config_errors(attention, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        from_dict({"model": {"attention": {"name": "mla", **attention}}})
    assert "model.attention" in str(e.value)


def test_bad_dims_in_yaml_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  attention: {name: mla, qk_rope_head_dim: 5}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.source == str(path) and e.value.key == "model.attention"
