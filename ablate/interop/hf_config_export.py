"""An ablate `ModelConfig` as a DeepSeek `config.json` (the inverse of `hf_config.to_ablate`)."""

from __future__ import annotations

from typing import Any

from ablate import registry
from ablate.interop.hf_config import HF_NORM_EPS


def from_ablate(m: Any, intermediate_size: int, moe_intermediate_size: int) -> dict:
    """The HF config.json of a built `ModelConfig` `m` (the FFN widths read off its weights).

    A sigmoid router gives a DeepSeek-V3 config, a softmax one a DeepSeek-V2 config.
    """
    a, ffn = m.attention, m.ffn
    if _name(a) != "mla" or _name(m.norm) != "rmsnorm" or m.norm.eps != HF_NORM_EPS:
        raise ValueError(
            "export-hf needs model.attention.name=mla and model.norm rmsnorm with eps "
            f"{HF_NORM_EPS} (got {_name(a)}, {_name(m.norm)})"
        )
    moe = _name(ffn) == "moe"
    router = ffn.router if moe else None
    v3 = router is None or _name(router) == "sigmoid_bias"
    hf = {
        "architectures": ["DeepseekV3ForCausalLM" if v3 else "DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v3" if v3 else "deepseek_v2",
        "vocab_size": m.vocab_size,
        "hidden_size": m.dim,
        "num_hidden_layers": m.num_layers,
        "num_attention_heads": m.num_heads,
        "num_key_value_heads": m.num_heads,
        "max_position_embeddings": m.max_seq_len,
        "tie_word_embeddings": m.tie_embeddings,
        "initializer_range": m.init_std,
        "rms_norm_eps": m.norm.eps,
        "hidden_act": "silu",
        "attention_bias": False,
        "q_lora_rank": a.q_lora_rank or None,
        "kv_lora_rank": a.kv_lora_rank,
        "qk_nope_head_dim": a.qk_nope_head_dim,
        "qk_rope_head_dim": a.qk_rope_head_dim,
        "v_head_dim": a.v_head_dim,
        "intermediate_size": intermediate_size,
        "moe_intermediate_size": moe_intermediate_size,
        "first_k_dense_replace": ffn.first_k_dense if moe else m.num_layers,
        "n_routed_experts": ffn.num_routed_experts if moe else 1,
        "n_shared_experts": ffn.num_shared_experts if moe else 0,
        "num_experts_per_tok": ffn.topk if moe else 1,
        "routed_scaling_factor": router.route_scale if moe else 1.0,
        "n_group": router.num_groups if moe else 1,
        "topk_group": router.topk_groups if moe else 1,
        "norm_topk_prob": v3,
        "num_nextn_predict_layers": m.mtp.depth if _name(m.mtp) == "mtp" else 0,
        "rope_parameters": _rope_out(m),
    }
    if v3:
        hf["rope_interleave"] = True
    else:
        hf["topk_method"] = "group_limited_greedy" if router.num_groups > 1 else "greedy"
    if _name(m.mtp) not in ("mtp", "none"):
        raise ValueError(f"export-hf: model.mtp.name={_name(m.mtp)} has no DeepSeek layout")
    return hf


def _name(component_cfg: Any) -> str:
    return registry.name_of(component_cfg)[1]


def _rope_out(m: Any) -> dict:
    a = m.attention
    if not (a.yarn and m.max_seq_len > a.original_seq_len):
        return {"rope_type": "default", "rope_theta": m.rope_theta}
    return {
        "rope_type": "yarn",
        "rope_theta": m.rope_theta,
        "factor": a.rope_factor,
        "original_max_position_embeddings": a.original_seq_len,
        "beta_fast": a.beta_fast,
        "beta_slow": a.beta_slow,
        "mscale": a.mscale,
        "mscale_all_dim": a.mscale,
        "attention_factor": 1.0,  # the harness never scales cos/sin
    }
