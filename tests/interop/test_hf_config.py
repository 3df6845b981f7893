"""The released DeepSeek-V3 and V2-Lite config.json field sets map completely (no weights)."""

from __future__ import annotations

import pytest

from ablate import registry
from ablate.core.config import from_dict
from ablate.interop.hf_config import to_ablate

V3 = {  # every field of deepseek-ai/DeepSeek-V3's config.json, values as released
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"},
    "aux_loss_alpha": 0.001,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 3,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "initializer_range": 0.02,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "pretraining_tp": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 129280,
}
V2_LITE = {
    **{k: v for k, v in V3.items() if k != "quantization_config"},
    "architectures": ["DeepseekV2ForCausalLM"],
    "model_type": "deepseek_v2",
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "first_k_dense_replace": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "n_group": 1,
    "topk_group": 1,
    "q_lora_rank": None,
    "norm_topk_prob": False,
    "routed_scaling_factor": 1.0,
    "scoring_func": "softmax",
    "topk_method": "greedy",
    "vocab_size": 102400,
    "rope_scaling": {**V3["rope_scaling"], "mscale": 0.707, "mscale_all_dim": 0.707},
}
V2_LITE.pop("num_nextn_predict_layers")


@pytest.mark.parametrize("hf", [V3, V2_LITE], ids=["v3", "v2_lite"])
def test_released_configs_map_and_validate(hf):
    cfg = from_dict(to_ablate(hf))
    m = cfg.model
    assert (m.dim, m.num_layers, m.max_seq_len) == (
        hf["hidden_size"],
        hf["num_hidden_layers"],
        163840,
    )
    assert m.attention.yarn and m.attention.rope_factor == 40.0
    assert m.attention.mscale == hf["rope_scaling"]["mscale_all_dim"]
    assert m.attention.q_lora_rank == (hf["q_lora_rank"] or 0)
    assert m.ffn.first_k_dense == hf["first_k_dense_replace"]
    router = registry.name_of(m.ffn.router)[1]
    assert router == ("sigmoid_bias" if hf["scoring_func"] == "sigmoid" else "softmax_aux")
    assert registry.name_of(m.mtp)[1] == ("mtp" if "num_nextn_predict_layers" in hf else "none")


def test_yarn_with_a_cos_sin_factor_is_refused():
    hf = {**V3, "rope_scaling": {**V3["rope_scaling"], "mscale": 0.8}}
    with pytest.raises(ValueError, match="attention_factor"):
        to_ablate(hf)
