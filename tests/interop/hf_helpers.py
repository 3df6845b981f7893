"""Tiny DeepSeek-V2/V3 models built by transformers from configs only (never the hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

HF_SKIP = "transformers not installed (pip install -e '.[hf]')"
VOCAB = 256  # the byte tokenizer's, so imported models can generate and evaluate text


def transformers_or_skip():
    return pytest.importorskip("transformers", reason=HF_SKIP)


def tiny_v3(**changes) -> dict:
    """V3 architecture: q compression, sigmoid gate with groups, 1 dense layer then MoE."""
    cfg = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_shared_experts=1,
        n_routed_experts=8,
        n_group=4,
        topk_group=2,
        num_experts_per_tok=3,
        first_k_dense_replace=1,
        routed_scaling_factor=2.5,
        q_lora_rank=32,
        kv_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=12,
        max_position_embeddings=64,
        initializer_range=0.1,  # peaky scores: routing and attention matter to the logits
        num_nextn_predict_layers=0,
    )
    return {**cfg, **changes}


def tiny_v2_lite(**changes) -> dict:
    """V2-Lite architecture: no q compression, softmax gate, raw top-k, 2 shared experts."""
    cfg = tiny_v3(q_lora_rank=None, n_shared_experts=2, routed_scaling_factor=1.0)
    for key in ("n_group", "topk_group", "num_nextn_predict_layers"):
        cfg.pop(key)
    return {**cfg, "topk_method": "greedy", "norm_topk_prob": False, **changes}


def build_hf(kind: str, cfg: dict, seed: int = 0):
    """A random transformers model of `kind` ("v3" or "v2") in eval mode, fp32."""
    tr = transformers_or_skip()
    config_cls, model_cls = {
        "v3": (tr.DeepseekV3Config, tr.DeepseekV3ForCausalLM),
        "v2": (tr.DeepseekV2Config, tr.DeepseekV2ForCausalLM),
    }[kind]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**cfg)).eval()
    with torch.no_grad():  # a trained-looking routing bias (zeros would hide its mapping)
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.normal_(0.0, 0.05)
    return model


def save_hf(model, path: Path) -> Path:
    model.save_pretrained(path, safe_serialization=True)
    return path


def hf_logits(model, ids_BT: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids_BT).logits
