"""Autoregressive generation: prefill the prompt into the KV caches, then decode token by token.

Works with any attention that implements `new_cache` (see `ablate.interfaces.Attention`).
A cache slot at position p is only read by queries at positions >= p and is overwritten when
p is decoded again, so a caller that discards drafted tokens (speculative decoding) only has
to move `start_pos` back: no cache rollback is needed. Also loads trained trials for
inference. Shapes: B batch, T time, V vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ablate.infer.sampling import context_start, default_context_shift, model_dtype, sample_next
from ablate.infer.speculative import find_drafter, speculative_generate

MTP_PREFIX = "mtp."  # state-dict keys of the model's `mtp` slot


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt_ids_BT: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    seed: int | None = None,
    use_cache: bool = True,
    speculative: bool | str | None = None,
    context_shift: int | None = None,
) -> torch.Tensor:
    """Extend `prompt_ids_BT` by `max_new_tokens` tokens; returns (B, T + max_new_tokens).

    Generation may run past `model.cfg.max_seq_len`: each token is then predicted from the
    last tokens of a window that slides forward `context_shift` tokens at a time (see
    `context_start`); the cache is re-prefilled from the window's first token when it moves.

    Args:
        model: an `ablate.core.model.Transformer` (or anything with its `forward`/`new_caches`).
        prompt_ids_BT: prompt token ids, at least one per row (a longer prompt than the
            context keeps its last tokens as context).
        max_new_tokens: tokens to append.
        temperature, top_k: see `sample_next`; temperature 0 is greedy.
        seed: seeds the sampling generator (None: torch's global generator).
        use_cache: prefill + one-token decode steps with KV caches; False recomputes the
            whole window each step (the reference the cached path must match).
        speculative: True drafts with the drafter a model component offers and verifies the
            drafts in one main forward (greedy only; output identical to plain greedy
            decoding); a string asks only components of that registry group or name ("mtp").
        context_shift: tokens the window moves past the context (default: a quarter of
            max_seq_len; 1 keeps exactly the last max_seq_len tokens, re-prefilling every token).
    """
    M = model.cfg.max_seq_len
    shift = default_context_shift(M) if context_shift is None else context_shift
    context_start(0, M, shift)  # checks shift
    if speculative:
        if temperature != 0:
            raise ValueError(f"speculative={speculative!r} needs temperature 0 (greedy only)")
        name = speculative if isinstance(speculative, str) else None
        drafter = find_drafter(model, name)
        return speculative_generate(
            model, prompt_ids_BT, max_new_tokens, drafter=drafter, context_shift=shift
        )
    B, T = prompt_ids_BT.shape
    if T == 0 or max_new_tokens < 0:
        raise ValueError("need a non-empty prompt and max_new_tokens >= 0")
    device = prompt_ids_BT.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    ids_BT = prompt_ids_BT
    cache_len = min(T + max_new_tokens, M)
    caches = model.new_caches(B, cache_len, model_dtype(model), device) if use_cache else None
    start = context_start(T - 1, M, shift)
    try:
        logits_BTV, _ = model(ids_BT[:, start:], caches=caches)
        for step in range(max_new_tokens):
            next_B = sample_next(
                logits_BTV[:, -1], temperature=temperature, top_k=top_k, generator=generator
            )
            pos = ids_BT.shape[1]
            ids_BT = torch.cat((ids_BT, next_B[:, None]), dim=1)
            if step + 1 == max_new_tokens:
                break  # the last token needs no logits
            window = context_start(pos, M, shift)
            if use_cache and window == start:
                logits_BTV, _ = model(ids_BT[:, pos:], start_pos=pos - start, caches=caches)
            else:  # no cache, or the window moved: (re-)prefill it from its first token
                start = window
                logits_BTV, _ = model(ids_BT[:, start:], caches=caches)
    finally:
        model.train(was_training)
    return ids_BT


def load_trial(trial_dir: str | Path, device: str = "cpu"):
    """The trained model (eval mode) and tokenizer of a trial directory's last checkpoint (or
    of an imported one's model.safetensors, or of an HF DeepSeek checkpoint directory)."""
    from ablate import registry
    from ablate.core.checkpoint import CHECKPOINT
    from ablate.core.config import load_config
    from ablate.core.trial import build
    from ablate.interop.convert import WEIGHTS, load_hf, trial_weights

    trial = Path(trial_dir)
    if not (trial / "config.yaml").is_file() and (trial / "config.json").is_file():
        cfg, model = load_hf(trial, device=device)  # an HF checkpoint: byte tokenizer
        return model, registry.build(cfg.data.tokenizer)
    if not (trial / CHECKPOINT).is_file() and not (trial / WEIGHTS).is_file():
        raise ValueError(f"{trial}: no {CHECKPOINT} or {WEIGHTS} (is this a trial directory?)")
    cfg = load_config(trial / "config.yaml")
    corpus, model, _ = build(cfg, torch.device(device))
    model.load_state_dict(trial_weights(trial))
    return model.eval(), corpus.tokenizer


def drop_mtp(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model state dict without its MTP modules (for a model built with `mtp: none`)."""
    return {k: v for k, v in state_dict.items() if not k.startswith(MTP_PREFIX)}


def load_without_mtp(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load a checkpoint trained with MTP into `model` (built without it); strict otherwise.

    `state_dict` is a model state dict or a trainer checkpoint (with key "model").
    """
    state = state_dict.get("model", state_dict)
    model.load_state_dict(drop_mtp(state), strict=True)
    return model
