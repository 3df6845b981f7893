"""State-dict names between HF DeepSeek checkpoints and the harness's model; FP8 dequantization.

HF keeps one Linear per projection (gate_proj, up_proj, experts.<e>.*); the harness fuses gate
and up into `w13` and stacks the routed experts into (E, 2F, D) and (E, D, F) tensors. The MTP
module of depth k is HF layer `num_layers + k`; its `embed_tokens` and `shared_head.head`
are the trunk's (shared), written on export and dropped on import. Shapes: O/I a matrix's
out/in widths, H heads, Z/R per-head nope/RoPE dims.
"""

from __future__ import annotations

import re

import torch

DEFAULT_FP8_BLOCK = (128, 128)  # DeepSeek-V3's weight_block_size
SCALE_SUFFIX = "_scale_inv"  # `<name>.weight_scale_inv` holds `<name>.weight`'s block scales
LAYER_KEY = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|e_score_correction_bias)$")
TOP = {"model.embed_tokens": "tok_emb", "model.norm": "final_norm", "lm_head": "head"}
RENAME = {  # per-block module names, HF -> ablate (the dense MLP's prefix is filled in)
    "self_attn.q_proj": "attn.wq",
    "self_attn.q_a_proj": "attn.wq_a",
    "self_attn.q_a_layernorm": "attn.q_norm",
    "self_attn.q_b_proj": "attn.wq_b",
    "self_attn.kv_a_proj_with_mqa": "attn.wkv_a",
    "self_attn.kv_a_layernorm": "attn.kv_norm",
    "self_attn.kv_b_proj": "attn.wkv_b",
    "self_attn.o_proj": "attn.wo",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate": "ffn.router",
    "mlp.down_proj": "{dense}.w2",
    "mlp.shared_experts.down_proj": "ffn.shared.w2",
}
FUSED = {"mlp": "{dense}.w13", "mlp.shared_experts": "ffn.shared.w13"}  # gate_proj ++ up_proj
MTP_OWN = {
    "enorm": "enorm",
    "hnorm": "hnorm",
    "eh_proj": "eh_proj",
    "shared_head.norm": "final_norm",
}
MTP_SHARED = ("embed_tokens", "shared_head.head")
EXPERT = re.compile(r"mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)$")


def dequant_fp8_block(w_OI: torch.Tensor, scale_inv: torch.Tensor, block=DEFAULT_FP8_BLOCK):
    """fp32 weight of an FP8 one: each (block[0], block[1]) tile times its scale (edge tiles
    cropped), as DeepSeek-V3's `weight_dequant`."""
    out_dim, in_dim = w_OI.shape
    s_OI = scale_inv.float().repeat_interleave(block[0], 0)[:out_dim]
    return w_OI.float() * s_OI.repeat_interleave(block[1], 1)[:, :in_dim]


def dequantize(state: dict[str, torch.Tensor], block=DEFAULT_FP8_BLOCK) -> dict:
    """Replace every `X.weight` that has an `X.weight_scale_inv` by its fp32 dequantization."""
    out = {}
    for key, t in state.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(key + SCALE_SUFFIX)
        out[key] = t if scale is None else dequant_fp8_block(t, scale, block)
    return out


def _prefix(idx: int, num_layers: int, depth: int) -> str:
    if idx < num_layers:
        return f"blocks.{idx}."
    if idx < num_layers + depth:
        return f"mtp.depths.{idx - num_layers}.block."
    raise ValueError(
        f"checkpoint: layer {idx} is past the {num_layers} layers and {depth} MTP module(s) "
        "of config.json"
    )


def to_ablate(hf: dict[str, torch.Tensor], num_layers: int, depth: int, dense: str) -> dict:
    """Ablate state dict of HF tensors; `dense` is the dense MLP's module ("ffn.mlp" or
    "ffn.dense"). Unknown keys raise ValueError naming them."""
    out, gate_up, experts = {}, {}, {}
    for key, t in hf.items():
        base = key.removesuffix(".weight")
        if base in TOP:
            out[TOP[base] + ".weight"] = t
            continue
        m = LAYER_KEY.match(key)
        if m is None:
            raise ValueError(f"checkpoint: unknown tensor {key}")
        idx, name, kind = int(m[1]), m[2], m[3]
        pre = _prefix(idx, num_layers, depth)
        if kind == "e_score_correction_bias":
            out[pre + "ffn.router.bias"] = t
        elif idx >= num_layers and name in MTP_OWN:
            out[pre.removesuffix("block.") + MTP_OWN[name] + ".weight"] = t
        elif idx >= num_layers and name in MTP_SHARED:
            continue  # the trunk's embedding and head
        elif name in RENAME:
            out[pre + RENAME[name].format(dense=dense) + ".weight"] = t
        elif (e := EXPERT.match(name)) is not None:
            experts.setdefault(pre, {})[(int(e[1]), e[2])] = t
        elif name.rsplit(".", 1)[-1] in ("gate_proj", "up_proj"):
            owner, proj = name.rsplit(".", 1)
            if owner not in FUSED:
                raise ValueError(f"checkpoint: unknown tensor {key}")
            gate_up.setdefault(pre + FUSED[owner].format(dense=dense), {})[proj] = t
        else:
            raise ValueError(f"checkpoint: unknown tensor {key}")
    for name, parts in gate_up.items():
        out[name + ".weight"] = torch.cat((parts["gate_proj"], parts["up_proj"]))
    for pre, parts in experts.items():
        E = 1 + max(e for e, _ in parts)
        out[pre + "ffn.w13"] = torch.stack(
            [torch.cat((parts[(e, "gate_proj")], parts[(e, "up_proj")])) for e in range(E)]
        )
        out[pre + "ffn.w2"] = torch.stack([parts[(e, "down_proj")] for e in range(E)])
    return out


def to_hf(sd: dict[str, torch.Tensor], num_layers: int, dense: str) -> dict:
    """HF DeepSeek tensors of an ablate state dict (inverse of `to_ablate`)."""
    top = {v + ".weight": k + ".weight" for k, v in TOP.items()}
    rename = {v.format(dense=dense) + ".weight": k for k, v in RENAME.items()}
    fused = {v.format(dense=dense) + ".weight": k for k, v in FUSED.items()}
    out = {}
    for key, t in sd.items():
        if key in top:
            out[top[key]] = t
            continue
        m = re.match(r"(blocks\.(\d+)\.|mtp\.depths\.(\d+)\.)(block\.)?(.+)$", key)
        if m is None:
            raise ValueError(f"export-hf: no DeepSeek name for {key}")
        idx = int(m[2]) if m[2] is not None else num_layers + int(m[3])
        pre, rest = f"model.layers.{idx}.", m[5]
        own = {v + ".weight": k for k, v in MTP_OWN.items()}
        if m[3] is not None and m[4] is None and rest in own:
            out[pre + own[rest] + ".weight"] = t
        elif rest == "ffn.router.bias":
            out[pre + "mlp.gate.e_score_correction_bias"] = t
        elif rest in rename:
            out[pre + rename[rest] + ".weight"] = t
        elif rest in fused:
            gate, up = t.chunk(2)
            out[pre + fused[rest] + ".gate_proj.weight"] = gate
            out[pre + fused[rest] + ".up_proj.weight"] = up
        elif rest in ("ffn.w13", "ffn.w2"):
            for e, w in enumerate(t):
                names = ("gate_proj", "up_proj") if rest == "ffn.w13" else ("down_proj",)
                for name, part in zip(names, w.chunk(len(names)), strict=True):
                    out[pre + f"mlp.experts.{e}.{name}.weight"] = part
        else:
            raise ValueError(f"export-hf: no DeepSeek name for {key}")
        if m[3] is not None and rest == "enorm.weight":
            out[pre + "embed_tokens.weight"] = sd["tok_emb.weight"]
            out[pre + "shared_head.head.weight"] = sd["head.weight"]
    return out


def rope_rows(R: int) -> torch.Tensor:
    """Row order taking the half-split RoPE layout (x_i, x_{i+R/2}) to interleaved pairs."""
    half = torch.arange(R // 2)
    return torch.stack((half, half + R // 2), dim=1).flatten()


def interleave_rope(out: dict, num_heads: int, Z: int, R: int) -> None:
    """In place: permute the RoPE rows of every query and shared-key projection so that the
    harness's interleaved RoPE computes what a half-split (`rope_interleave: false`) one did;
    q.k is unchanged since queries and keys get the same order."""
    perm = rope_rows(R)
    for key, w in out.items():
        if key.endswith(("attn.wq.weight", "attn.wq_b.weight")):
            w_HKI = w.view(num_heads, Z + R, -1).clone()
            w_HKI[:, Z:] = w_HKI[:, Z:][:, perm]
            out[key] = w_HKI.view_as(w)
        elif key.endswith("attn.wkv_a.weight"):
            C = w.shape[0] - R
            out[key] = torch.cat((w[:C], w[C:][perm]))
