"""GQA / MQA: grouping equals MHA over repeated key/value heads; G = H is MHA; cached decoding;
causality; config errors for head counts that do not divide."""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.core.config import ConfigError, from_dict
from ablate.interfaces import BuildContext
from ablate.nn.attention import causal_attention, grouped_causal_attention
from tests.conftest import tiny_model_config


def build(name: str, **fields):
    cfg = registry.get("attention", name).Config(**fields)
    return registry.build(cfg, BuildContext(tiny_model_config(), 0)).eval()


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("start_pos,T", [(0, 7), (4, 3), (9, 1)])
def test_grouping_equals_repeated_kv_heads(groups, start_pos, T):
    H, K, S = 4, 8, start_pos + T
    q = torch.randn(2, H, T, K)
    k, v = torch.randn(2, groups, S, K), torch.randn(2, groups, S, 6)
    got = grouped_causal_attention(q, k, v, start_pos, K**-0.5)
    rep = H // groups  # query head h reads key/value head h // rep
    ref = causal_attention(
        q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), start_pos, K**-0.5
    )
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)


def test_all_kv_heads_is_mha():
    mha, gqa = build("mha"), build("gqa", num_kv_heads=4)
    inner = 64
    w = mha.wqkv.weight.detach()
    gqa.load_state_dict(
        {"wq.weight": w[:inner], "wkv.weight": w[inner:], "wo.weight": mha.wo.weight.detach()}
    )
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        torch.testing.assert_close(gqa(x), mha(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 2])
def test_cached_decoding_matches_full_forward(groups):
    attn = build("gqa", num_kv_heads=groups)
    x = torch.randn(2, 12, 64)
    cache = attn.new_cache(2, 12, torch.float32)
    assert cache["k"].shape == (2, 12, groups, 16)
    with torch.no_grad():
        full = attn(x)
        steps = [attn(x[:, :9], cache=cache)]
        steps += [attn(x[:, t : t + 1], start_pos=t, cache=cache) for t in range(9, 12)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_causal_mqa():
    attn = build("gqa", num_kv_heads=1)
    x = torch.randn(1, 10, 64)
    x2 = x.clone()
    x2[:, 6:] -= 2.0
    with torch.no_grad():
        a, b = attn(x), attn(x2)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize(
    "attention,needle",
    [
        (dict(num_kv_heads=3), "num_kv_heads=3 must be positive and divide model.num_heads=4"),
        (dict(num_kv_heads=0), "num_kv_heads=0"),
        (dict(num_kv_heads=2, head_dim=5), "head_dim must be positive and even"),
    ],
)
def test_bad_heads_are_config_errors(attention, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        from_dict({"model": {"num_heads": 4, "attention": {"name": "gqa", **attention}}})
    assert e.value.key == "model.attention"
