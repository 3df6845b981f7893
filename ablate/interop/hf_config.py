"""DeepSeek-V2/V3 `config.json` fields <-> the harness's components (mla, moe, routers, mtp).

Every field of an imported config is either mapped, checked against the one value the harness
implements, or on the explicit list of fields with no effect on the forward pass; anything
else is refused with a ValueError naming it, so a checkpoint never loads half-understood.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

from ablate.core.config import DataConfig

MODEL_TYPES = ("deepseek_v2", "deepseek_v3")
HF_NORM_EPS = 1e-6  # transformers builds the MLA latent norms with this eps, whatever the config
# Fields with no effect on the logits (bookkeeping, training-only, derived or generation).
IGNORABLE = frozenset(
    {
        "_name_or_path",
        "architectures",
        "attention_dropout",
        "auto_map",
        "bos_token_id",
        "dtype",
        "eos_token_id",
        "ep_size",
        "head_dim",
        "num_key_value_heads",  # MLA: every head reads the one latent
        "output_router_logits",
        "pad_token_id",
        "qk_head_dim",
        "router_aux_loss_coef",
        "tokenizer_class",
        "torch_dtype",
        "transformers_version",
        "use_cache",
    }
)
MOE_FIELDS = (
    "aux_loss_alpha",
    "moe_intermediate_size",
    "n_group",
    "n_shared_experts",
    "norm_topk_prob",
    "num_experts_per_tok",
    "routed_scaling_factor",
    "scoring_func",
    "seq_aux",
    "topk_group",
    "topk_method",
)
# Fields that must hold the value the harness implements (absent is fine).
REQUIRED = {
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "moe_layer_freq": 1,
    "pretraining_tp": 1,
}


class Fields:
    """An HF config being read: every key taken is recorded, the rest checked at the end."""

    def __init__(self, hf: dict) -> None:
        self.hf, self.used = hf, set()

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        value = self.hf.get(key, default)
        return default if value is None else value

    def need(self, key: str) -> Any:
        if self.hf.get(key) is None:
            raise ValueError(f"config.json: {key} is required")
        return self.get(key)

    def refuse(self, key: str, why: str) -> NoReturn:
        raise ValueError(f"config.json: {key}={self.hf.get(key)!r} is not supported: {why}")

    def finish(self) -> None:
        for key, want in REQUIRED.items():
            if self.get(key, want) != want:
                self.refuse(key, f"the harness implements only {want!r}")
        unknown = sorted(set(self.hf) - self.used - IGNORABLE)
        if unknown:
            raise ValueError(
                f"config.json: unknown or unsupported field(s) {', '.join(unknown)} "
                "(not mapped to any ablate component; refusing rather than guessing)"
            )


def to_ablate(hf: dict) -> dict:
    """The raw ablate config (`model` and `data` sections) of an HF DeepSeek config.json."""
    f = Fields(hf)
    if f.get("model_type") not in MODEL_TYPES:
        f.refuse("model_type", f"expected one of {', '.join(MODEL_TYPES)}")
    eps = f.get("rms_norm_eps", HF_NORM_EPS)
    if eps != HF_NORM_EPS:
        f.refuse("rms_norm_eps", f"the latent norms use {HF_NORM_EPS} in transformers")
    max_len = f.need("max_position_embeddings")
    model = {
        "vocab_size": f.need("vocab_size"),
        "dim": f.need("hidden_size"),
        "num_layers": f.need("num_hidden_layers"),
        "num_heads": f.need("num_attention_heads"),
        "max_seq_len": max_len,
        "tie_embeddings": f.get("tie_word_embeddings", False),
        "init_std": f.get("initializer_range", 0.02),
        "norm": {"name": "rmsnorm", "eps": eps},
        "attention": _mla(f),
        "ffn": _ffn(f),
    }
    theta, yarn = _rope(f, max_len)
    model["rope_theta"] = theta
    model["attention"].update(yarn)
    fp8_block(hf)
    f.get("quantization_config")
    depth = f.get("num_nextn_predict_layers", 0)
    model["mtp"] = {"name": "mtp", "depth": depth} if depth else {"name": "none"}
    f.finish()
    # bytes: the harness has no BPE tokenizer; windows no longer than the model's context
    data = {"tokenizer": {"name": "byte"}, "seq_len": min(max_len, DataConfig().seq_len)}
    return {"model": model, "data": data}


def fp8_block(hf: dict) -> tuple[int, int] | None:
    """The FP8 weight block of a `quantization_config` (None when the weights are not FP8)."""
    q = hf.get("quantization_config")
    if q is None:
        return None
    method, fmt = q.get("quant_method"), q.get("fmt", "e4m3")
    if method != "fp8" or fmt != "e4m3" or q.get("activation_scheme", "dynamic") != "dynamic":
        raise ValueError(
            f"config.json: quantization_config {q} is not supported: only quant_method fp8, "
            "fmt e4m3, dynamic activations (block-scaled weights)"
        )
    block = tuple(q.get("weight_block_size") or (128, 128))
    if len(block) != 2:
        raise ValueError(f"config.json: quantization_config.weight_block_size={block}: need 2")
    return block


def _mla(f: Fields) -> dict:
    if f.get("rope_interleave", True) is not True and f.hf.get("model_type") != "deepseek_v3":
        f.refuse("rope_interleave", "only DeepSeek-V3 configs define it")
    return {
        "name": "mla",
        "q_lora_rank": f.get("q_lora_rank", 0),  # null: no query compression
        "kv_lora_rank": f.need("kv_lora_rank"),
        "qk_nope_head_dim": f.need("qk_nope_head_dim"),
        "qk_rope_head_dim": f.need("qk_rope_head_dim"),
        "v_head_dim": f.need("v_head_dim"),
    }


def _ffn(f: Fields) -> dict:
    experts = f.get("n_routed_experts", 0)
    dense_width = f.need("intermediate_size")
    first_dense = f.get("first_k_dense_replace", 0)
    if not experts or first_dense >= f.hf.get("num_hidden_layers", 0):
        for key in MOE_FIELDS:  # no MoE layer: the routing fields have no effect
            f.get(key)
        return {"name": "dense", "hidden_dim": dense_width}
    return {
        "name": "moe",
        "num_routed_experts": experts,
        "num_shared_experts": f.get("n_shared_experts", 0),
        "topk": f.need("num_experts_per_tok"),
        "expert_dim": f.need("moe_intermediate_size"),
        "first_k_dense": first_dense,
        "dense_hidden_dim": dense_width,
        "router": _router(f),
    }


def _router(f: Fields) -> dict:
    """V3: sigmoid scores, normalised top-k, bias-corrected group choice (noaux_tc); V2:
    softmax scores, raw top-k, greedy or group-limited (max per group) choice."""
    v3 = f.hf.get("model_type") == "deepseek_v3"
    scoring = f.get("scoring_func", "sigmoid" if v3 else "softmax")
    method = f.get("topk_method", "noaux_tc" if v3 else "greedy")
    groups, topk_groups = f.get("n_group", 1), f.get("topk_group", 1)
    norm = f.get("norm_topk_prob", v3)
    alpha = f.get("aux_loss_alpha", 0.0)
    f.get("seq_aux")
    scale = f.get("routed_scaling_factor", 1.0)
    if scoring == "sigmoid" and method == "noaux_tc":
        if norm is not True and f.get("num_experts_per_tok") > 1:
            f.refuse("norm_topk_prob", "the sigmoid router always normalises its top-k weights")
        return {
            "name": "sigmoid_bias",
            "route_scale": scale,
            "seq_aux_alpha": alpha,
            "num_groups": groups,
            "topk_groups": topk_groups,
        }
    if scoring == "softmax" and method in ("greedy", "group_limited_greedy"):
        if norm and f.get("num_experts_per_tok") > 1:
            f.refuse("norm_topk_prob", "the softmax router never renormalises its top-k weights")
        limited = method == "group_limited_greedy"
        return {
            "name": "softmax_aux",
            "route_scale": scale,
            "alpha": alpha,
            "num_groups": groups if limited else 1,
            "topk_groups": topk_groups if limited else 1,
        }
    f.refuse(
        "topk_method",
        f"with scoring_func={scoring!r}; supported: sigmoid + noaux_tc, "
        "softmax + greedy or group_limited_greedy",
    )


def _rope(f: Fields, max_len: int) -> tuple[float, dict]:
    """rope_theta and the MLA YaRN fields from `rope_parameters` (transformers 5) or the
    legacy `rope_theta` + `rope_scaling` pair."""
    params = dict(f.get("rope_parameters") or {})
    params.update(f.get("rope_scaling") or {})
    theta = params.pop("rope_theta", None) or f.get("rope_theta", 10000.0)
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    if kind == "default":
        if params:
            f.refuse("rope_scaling", f"fields {sorted(params)} for the default RoPE")
        return theta, {}
    if kind != "yarn":
        f.refuse("rope_scaling", f"rope type {kind!r}; supported: default, yarn")
    orig = params.pop("original_max_position_embeddings")
    factor = params.pop("factor", None) or max_len / orig
    mscale, mscale_all = params.pop("mscale", 0), params.pop("mscale_all_dim", 0)
    attn_factor = params.pop("attention_factor", None)
    if attn_factor is None:  # transformers' rule for the factor multiplying cos and sin
        m = (lambda s: 0.1 * s * math.log(factor) + 1.0) if factor > 1 else (lambda s: 1.0)
        attn_factor = m(mscale) / m(mscale_all) if mscale and mscale_all else m(1.0)
    if abs(attn_factor - 1.0) > 1e-12:
        f.refuse("rope_scaling", f"attention_factor {attn_factor} (needs mscale == mscale_all_dim)")
    if not params.pop("truncate", True) or params.pop("partial_rotary_factor", 1.0) != 1.0:
        f.refuse("rope_scaling", "truncate must be true and partial_rotary_factor 1")
    if max_len <= orig:
        f.refuse("max_position_embeddings", f"YaRN needs it above {orig} in the harness")
    yarn = {
        "yarn": True,
        "rope_factor": float(factor),
        "original_seq_len": orig,
        "beta_fast": float(params.pop("beta_fast", None) or 32.0),
        "beta_slow": float(params.pop("beta_slow", None) or 1.0),
        "mscale": float(mscale_all),
    }
    if params:
        f.refuse("rope_scaling", f"unknown YaRN fields {sorted(params)}")
    return theta, yarn
