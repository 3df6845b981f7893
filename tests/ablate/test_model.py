"""Transformer skeleton: shapes, parameter counts, tying, RoPE convention, cached decode."""

from __future__ import annotations

import pytest
import torch

from ablate.core.model import Transformer
from ablate.nn.rope import apply_rope, rope_table
from tests.conftest import tiny_model_config


def test_shapes_and_loss():
    model = Transformer(tiny_model_config())
    idx = torch.randint(0, 37, (3, 10))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 10, 37) and loss.shape == ()
    assert model(idx)[1] is None


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_counts_closed_form(tie):
    cfg = tiny_model_config(tie_embeddings=tie)
    model = Transformer(cfg)
    D, V, L = cfg.dim, cfg.vocab_size, cfg.num_layers
    hidden = 32 * -(-(8 * D // 3) // 32)  # SwiGLU default width
    per_layer = 4 * D * D + 3 * D * hidden + 2 * D  # qkv+o, w1/w3/w2, two norm gains
    expect = V * D + L * per_layer + D + (0 if tie else V * D)
    assert model.num_params() == expect
    assert model.num_params(non_embedding=True) == L * per_layer + D
    assert (model.head.weight is model.tok_emb.weight) == tie


def test_init_std():
    model = Transformer(tiny_model_config(init_std=0.006, dim=256, num_heads=4))
    w = model.blocks[0].attn.wqkv.weight
    assert abs(w.std().item() - 0.006) < 3e-4
    assert torch.equal(model.blocks[0].attn_norm.weight, torch.ones(256))


def test_rope_interleaved_pairs_and_relative_positions():
    rot = rope_table(8, 16, 10000.0)
    q = torch.randn(1, 1, 1, 8)
    # pair 0 is (x0, x1): rotating position 1 by angle 1 rad mixes exactly those two dims
    out = apply_rope(q, rot[1:2])
    c, s = torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(1.0))
    assert torch.allclose(out[..., 0], q[..., 0] * c - q[..., 1] * s, atol=1e-6)
    assert not torch.allclose(apply_rope(q, rot[3:4]), apply_rope(q, rot[3:4], layout="half"))
    k = torch.randn(1, 1, 1, 8)
    s1 = (apply_rope(q, rot[5:6]) * apply_rope(k, rot[2:3])).sum()
    s2 = (apply_rope(q, rot[12:13]) * apply_rope(k, rot[9:10])).sum()
    assert torch.allclose(s1, s2, atol=1e-5)  # depends only on the distance 3


def test_cached_decode_matches_full_forward():
    model = Transformer(tiny_model_config()).eval()
    idx = torch.randint(0, 37, (2, 12))
    with torch.no_grad():
        full = model(idx)[0]
        caches = model.new_caches(2, 12)
        parts = [model(idx[:, :5], caches=caches)[0]]
        parts += [model(idx[:, t : t + 1], start_pos=t, caches=caches)[0] for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


def test_vocab_size_required():
    with pytest.raises(ValueError, match="vocab_size"):
        Transformer(tiny_model_config(vocab_size=0))


def test_rope_table_survives_a_dtype_cast():
    model = Transformer(tiny_model_config()).eval()
    idx = torch.randint(0, 37, (2, 12))
    with torch.no_grad():
        ref = model(idx)[0]
        out = model.to(torch.bfloat16)(idx)[0].float()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
