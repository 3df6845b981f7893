"""One cached decode step (a single new token attending to a 256-token context) for MHA, GQA
and MLA (naive and absorbed caches) at base/small.yaml's width with mla_vs_mha's MLA dims."""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.core.config import ModelConfig
from ablate.core.model import Transformer

WIDTH = dict(dim=128, num_layers=4, num_heads=4, vocab_size=256)
MLA = dict(kv_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32)
ARMS = {
    "mha": ("mha", {}),
    "gqa2": ("gqa", dict(num_kv_heads=2)),
    "mla_naive": ("mla", dict(MLA, cache_impl="naive")),
    "mla_absorbed": ("mla", dict(MLA, cache_impl="absorbed")),
}
BATCH, CONTEXT = 4, 256


@pytest.mark.parametrize("arm", list(ARMS))
def test_decode_step(benchmark, arm):
    import components  # noqa: F401  (registers the components)

    name, fields = ARMS[arm]
    attention = registry.get("attention", name).Config(**fields)
    model = Transformer(ModelConfig(**WIDTH, max_seq_len=CONTEXT + 1, attention=attention)).eval()
    ids_BS = torch.randint(0, WIDTH["vocab_size"], (BATCH, CONTEXT + 1))
    caches = model.new_caches(BATCH, CONTEXT + 1)
    with torch.inference_mode():
        model(ids_BS[:, :CONTEXT], caches=caches)  # prefill once; each round rewrites one slot

        def step():
            return model(ids_BS[:, CONTEXT:], start_pos=CONTEXT, caches=caches)

        out = benchmark(step)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape[:2] == (BATCH, 1) and torch.isfinite(logits).all()
