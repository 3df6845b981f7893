"""Greedy speculative decoding with whichever model component offers a `Drafter`.

Each round the main model verifies [t_L, d_1..d_K] in one cached forward at positions L..L+K;
the longest prefix of drafts equal to its own argmax is kept, plus its next token, so the
output is token-for-token that of plain greedy decoding. The loop never names the drafting
component: it asks every component's `drafter(model)` hook (`ablate.interfaces`). The main
cache is position-indexed: a rejected draft is rolled back by moving the position pointer,
and its slot is overwritten. Shapes (docs/design.md#shapes): B batch, T time, D width;
K in the text is a count, the drafts per round (Y, the MTP depth, for MTP drafters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ablate.infer.sampling import context_start, default_context_shift, model_dtype
from ablate.interfaces import Drafter, components


@dataclass
class SpecStats:
    """Counters of one or more speculative generations.

    `proposed[k]` / `accepted[k]` count the (k+1)-th drafts of the rounds; a draft is accepted
    when it and every earlier draft of its round equal the main model's own greedy token.
    `rounds` logs (L, drafts) per verify forward for inspection.
    """

    proposed: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    verify_forwards: int = 0
    verify_tokens: int = 0  # tokens the verify forwards produced (before trimming to length)
    rounds: list[tuple[int, list[int]]] = field(default_factory=list)

    def acceptance(self) -> list[float]:
        return [a / p if p else float("nan") for a, p in zip(self.accepted, self.proposed)]

    def tokens_per_forward(self) -> float:
        """Tokens per main-model verify forward: 1 + the sum of per-draft acceptances."""
        return self.verify_tokens / self.verify_forwards if self.verify_forwards else float("nan")


def find_drafter(model: nn.Module, name: str | None = None) -> Drafter:
    """The first drafter a component of `model` offers.

    Args:
        name: only ask components of this registry group or name (e.g. the CLI's `mtp`).
    """
    for c in components(model):
        names = (getattr(c, "registry_group", None), getattr(c, "registry_name", None))
        if name is None or name in names:
            drafter = c.drafter(model)
            if drafter is not None:
                return drafter
    which = "" if name is None else f" ({name!r})"
    raise ValueError(
        f"speculative decoding{which} needs a component that offers a drafter, such as "
        "MTP modules (model.mtp.name=mtp); this model has none"
    )


@torch.no_grad()
def speculative_generate(
    model: nn.Module,
    prompt_ids_BT: torch.Tensor,
    max_new_tokens: int,
    *,
    stats: SpecStats | None = None,
    drafter: Drafter | None = None,
    context_shift: int | None = None,
) -> torch.Tensor:
    """Greedy decoding with drafts; returns (B, T + max_new_tokens) like `generate`.

    Rows are decoded one at a time (their acceptance differs). Past `model.cfg.max_seq_len`
    the context window slides as in `generate` (same `context_shift`): a round drafts only as
    many tokens as fit before the window would move, and when it moves the main cache and the
    drafter restart from the window's first token. `drafter` defaults to `find_drafter(model)`.
    """
    drafter = drafter if drafter is not None else find_drafter(model)
    B, T = prompt_ids_BT.shape
    M = model.cfg.max_seq_len
    shift = default_context_shift(M) if context_shift is None else context_shift
    context_start(0, M, shift)  # checks shift
    if T == 0 or max_new_tokens < 0:
        raise ValueError("need a non-empty prompt and max_new_tokens >= 0")
    stats = stats if stats is not None else SpecStats()
    if not stats.proposed:
        stats.proposed, stats.accepted = [0] * drafter.num_drafts, [0] * drafter.num_drafts
    if max_new_tokens == 0:
        return prompt_ids_BT
    was_training = model.training
    model.eval()
    try:
        rows = [
            _decode_row(model, drafter, prompt_ids_BT[b : b + 1], max_new_tokens, stats, shift)
            for b in range(B)
        ]
    finally:
        model.train(was_training)
    return torch.cat(rows)


def _decode_row(
    model: nn.Module,
    drafter: Drafter,
    prompt_1T: torch.Tensor,
    max_new: int,
    stats: SpecStats,
    shift: int,
) -> torch.Tensor:
    P, K, M, device = (
        prompt_1T.shape[1],
        drafter.num_drafts,
        model.cfg.max_seq_len,
        prompt_1T.device,
    )
    cache_len = min(P + max_new + K, M)  # positions within the window: 0 .. cache_len-1
    dtype = model_dtype(model)
    caches = model.new_caches(1, cache_len, dtype, device)
    toks_1T = torch.zeros(1, P + max_new + K + 1, dtype=torch.long, device=device)  # ids, drafts
    toks_1T[:, :P] = prompt_1T
    start = context_start(P - 1, M, shift)
    h_1TD = model.trunk(prompt_1T[:, start:], caches=caches)
    toks_1T[:, P] = model.logits(h_1TD[:, -1:])[:, -1].argmax(-1)
    drafter.reset(cache_len, dtype, device)
    drafter.observe(h_1TD, 0)
    L = P  # index of the newest committed token; its main KV entry is not written yet
    while max_new > L - P + 1:
        if context_start(L, M, shift) != start:  # the window moved: re-prefill up to t_{L-1}
            start = context_start(L, M, shift)
            h_1TD = model.trunk(toks_1T[:, start:L], caches=caches)
            drafter.reset(cache_len, dtype, device)
            drafter.observe(h_1TD, 0)
        k = min(K, M - 1 - (L - start))  # drafts whose verify logits stay in this window
        if k:
            toks_1T[:, L + 1 : L + k + 1] = drafter.propose(toks_1T[:, start : L + 1])[:, :k]
        h_1TD = model.trunk(toks_1T[:, L : L + k + 1], start_pos=L - start, caches=caches)
        pred_1T = model.logits(h_1TD).argmax(-1)  # pred[j]: main's token for position L+j+1
        drafts = toks_1T[0, L + 1 : L + k + 1]
        num_ok = int((pred_1T[0, :k] == drafts).long().cumprod(0).sum())
        stats.rounds.append((L, drafts.tolist()))
        for j in range(k):
            stats.proposed[j] += 1
            stats.accepted[j] += int(j < num_ok)
        stats.verify_forwards += 1
        stats.verify_tokens += num_ok + 1
        toks_1T[:, L + 1 : L + num_ok + 2] = pred_1T[:, : num_ok + 1]
        drafter.observe(h_1TD[:, : num_ok + 1], L - start)
        L += num_ok + 1
    return toks_1T[:, : P + max_new]
