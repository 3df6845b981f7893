"""FLOPs per token: matmuls from the activated parameters, attention scores measured on meta.

Forward FLOPs per token at context L = 2 * (activated parameters that multiply: every group
but the embedding lookup and the norms) + sum over attention layers of their score/value
FLOPs at L: from the layer's `score_flops_per_token` where it states them, otherwise measured
with no assumption about the component: one forward of each attention
module on the meta device (B = 1, T0 tokens) under `FlopCounterMode` with the math SDPA
kernel, minus its projections (2 * its own parameters per token), scaled by L / T0 (linear in
L). Like `FlopCounterMode` and PaLM's 6N + 12 n_layers H Q L, the full L x L square is counted
(no causal halving). Training = 3 x forward (backward = 2 x forward).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ablate.accounting.params import EMBEDDING, Part, build_meta, count_params, totals
from ablate.interfaces import MTP, Attention, own_parameters

NOT_MATMUL = (EMBEDDING, "norm")  # groups whose parameters are read, not multiplied
MAX_PROBE_TOKENS = 128  # T0: the attention probe's length (at most the model's max_seq_len)
TRAIN_FACTOR = 3  # forward + backward (2 x forward: input and weight gradients)


@dataclass(frozen=True)
class Flops:
    """Per-token FLOPs of one section (main trunk or MTP) at a context length."""

    matmul: float  # projections, FFN, router, head
    attention: float  # scores q.k and the weighted sum of values
    context: int

    @property
    def forward(self) -> float:
        return self.matmul + self.attention

    @property
    def train(self) -> float:
        return TRAIN_FACTOR * self.forward


def _grouped_mm_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """aten._grouped_mm (A, I) x (E, I, O) over row groups: 2 * A * I * O."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[-1]


def flop_counter() -> FlopCounterMode:
    """`FlopCounterMode` that also counts grouped GEMMs (use with the math SDPA kernel)."""
    return FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten._grouped_mm: _grouped_mm_flops}
    )


def attention_flops_per_token(attn: Attention, model_cfg, context: int) -> float:
    """Score and value FLOPs per token of one attention layer over `context` positions."""
    stated = attn.score_flops_per_token(context)
    if stated is not None:
        return float(stated)
    probe = min(MAX_PROBE_TOKENS, context, model_cfg.max_seq_len)
    x_BTD = torch.zeros(1, probe, model_cfg.dim, device="meta")
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), flop_counter() as fc:
        attn(x_BTD)
    projections = 2 * probe * sum(p.numel() for p in own_parameters(attn))
    return (fc.get_total_flops() - projections) / probe * context / probe


def count_flops(model: nn.Module, parts: list[Part], context: int) -> dict[str, Flops]:
    """Per-token FLOPs of each section (`main`, and `mtp` when present) at `context`."""
    in_mtp = {id(m) for c in model.modules() if isinstance(c, MTP) for m in c.modules()}
    attn: dict[str, float] = {"main": 0.0, "mtp": 0.0}
    for m in model.modules():
        if isinstance(m, Attention):
            attn["mtp" if id(m) in in_mtp else "main"] += attention_flops_per_token(
                m, model.cfg, context
            )
    out = {}
    for section in ("main", "mtp"):
        rows = [p for p in parts if p.section == section]
        if rows:
            matmul = 2 * sum(p.active for p in rows if p.group not in NOT_MATMUL)
            out[section] = Flops(matmul, attn[section], context)
    return out


def trial_flops(cfg, tokens: int) -> dict[str, float]:
    """Training FLOPs of a trial: per token at context `data.seq_len` (main and MTP sections,
    forward + backward) and that times `tokens` trained, with the activated parameters per
    token they come from. `cfg.model.vocab_size` must be set.

    {} with a warning where the model cannot be counted on the meta device (a plugin whose
    build or forward needs real tensors): a finished trial keeps its results either way.
    """
    try:
        model = build_meta(cfg)
        parts = count_params(model)
        fl = count_flops(model, parts, cfg.data.seq_len)
    except (RuntimeError, NotImplementedError, ValueError) as e:
        warnings.warn(f"training FLOPs not counted (meta-device build failed: {e})", stacklevel=2)
        return {}
    per_token = sum(f.train for f in fl.values())
    return {
        "activated_params": totals(parts)[1],  # main section, as `ablate inspect` counts them
        "train_flops_per_token": per_token,
        "train_flops": per_token * tokens,
    }
