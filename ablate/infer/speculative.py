"""Greedy speculative decoding with MTP drafters (DeepSeek-V3 §5.4.3), and MTP-free inference.

Each round the main model verifies [t_L, d_1..d_K] in one cached forward at positions L..L+K;
the longest prefix of drafts equal to its own argmax is kept, plus its next token, so the
output is token-for-token that of plain greedy decoding. The K MTP depths then draft
t_{L'+1}..t_{L'+K} from the main hidden state at L'-1. Every cache is position-indexed: a
rejected draft is rolled back by moving the position pointer, and its slot is overwritten.
Shapes (docs/design.md#shapes): B batch, T time, D width, V vocabulary, Y MTP depth. The
text and code here write the depth as a count K (drafts per round), not as a shape letter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ablate.infer.generate import generate, model_dtype

MTP_PREFIX = "mtp."  # state-dict keys of the MTP modules


@dataclass
class SpecStats:
    """Counters of one or more speculative generations.

    `proposed[k]` / `accepted[k]` count depth-(k+1) drafts; a draft is accepted when it and
    every shallower draft of its round equal the main model's own greedy token.
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
        """Tokens per main-model verify forward: 1 + the sum of per-depth acceptances."""
        return self.verify_tokens / self.verify_forwards if self.verify_forwards else float("nan")


def _drafter(model: nn.Module) -> nn.Module:
    mtp = getattr(model, "mtp", None)
    if not all(hasattr(mtp, a) for a in ("num_depths", "depth_hidden", "new_caches")):
        raise ValueError(
            "speculative='mtp' needs a model with MTP modules "
            "(model.mtp.name=mtp); this model has none"
        )
    return mtp


@torch.no_grad()
def speculative_generate(
    model: nn.Module,
    prompt_ids_BT: torch.Tensor,
    max_new_tokens: int,
    *,
    stats: SpecStats | None = None,
) -> torch.Tensor:
    """Greedy decoding with MTP drafts; returns (B, T + max_new_tokens) like `generate`.

    Rows are decoded one at a time (their acceptance differs). Needs
    T + max_new_tokens + K - 1 <= model.max_seq_len (the last verify looks K tokens ahead).
    """
    mtp = _drafter(model)
    B, T = prompt_ids_BT.shape
    K = mtp.num_depths
    if T == 0 or max_new_tokens < 0:
        raise ValueError("need a non-empty prompt and max_new_tokens >= 0")
    if T + max_new_tokens + K - 1 > model.cfg.max_seq_len:
        raise ValueError(
            f"prompt ({T}) + max_new_tokens ({max_new_tokens}) + MTP depth ({K}) "
            f"- 1 exceeds model.max_seq_len={model.cfg.max_seq_len}"
        )
    stats = stats if stats is not None else SpecStats()
    if not stats.proposed:
        stats.proposed, stats.accepted = [0] * K, [0] * K
    if max_new_tokens == 0:
        return prompt_ids_BT
    was_training = model.training
    model.eval()
    try:
        rows = [
            _decode_row(model, mtp, prompt_ids_BT[b : b + 1], max_new_tokens, stats)
            for b in range(B)
        ]
    finally:
        model.train(was_training)
    return torch.cat(rows)


def _decode_row(
    model: nn.Module, mtp: nn.Module, prompt_1T: torch.Tensor, max_new: int, stats: SpecStats
) -> torch.Tensor:
    P, K, device = prompt_1T.shape[1], mtp.num_depths, prompt_1T.device
    max_len = P + max_new + K
    dtype = model_dtype(model)
    caches = model.new_caches(1, max_len, dtype, device)
    mtp_caches = mtp.new_caches(1, max_len, dtype, device)
    # hid[k][:, i] = h^k_i (h^0: main hidden as MTP sees it); toks: committed ids, then drafts
    hid = [torch.zeros(1, max_len, model.cfg.dim, dtype=dtype, device=device) for _ in range(K)]
    toks_1T = torch.zeros(1, max_len + K + 1, dtype=torch.long, device=device)
    toks_1T[:, :P] = prompt_1T
    exact = [0] * K  # depth k: cache entries at positions < exact[k-1] used committed ids only

    def draft(L: int) -> None:
        """Draft t_{L+1}..t_{L+K} from position q = L-1; first refresh stale MTP entries."""
        q = L - 1
        for k in range(1, K + 1):
            a = exact[k - 1]  # entries from here on may hold drafted ids: recompute them
            h_1TD = mtp.depth_hidden(
                k,
                hid[k - 1][:, a : q + 1],
                toks_1T[:, a + k : q + k + 1],
                model,
                start_pos=a,
                cache=mtp_caches[k - 1],
            )
            if k < K:
                hid[k][:, a : q + 1] = h_1TD
            toks_1T[:, L + k] = mtp.depth_logits(k, h_1TD[:, -1:], model)[:, -1].argmax(-1)
            exact[k - 1] = max(0, L - k + 1)  # position i embedded t_{i+k}, committed iff <= L

    h_1TD = model.trunk(prompt_1T, caches=caches)
    toks_1T[:, P] = model.logits(h_1TD[:, -1:])[:, -1].argmax(-1)
    hid[0][:, :P] = mtp.main_hidden(h_1TD, model)
    L = P  # index of the newest committed token; its main KV entry is not written yet
    while max_new > L - P + 1:
        draft(L)
        h_1TD = model.trunk(toks_1T[:, L : L + K + 1], start_pos=L, caches=caches)
        pred_1T = model.logits(h_1TD).argmax(-1)  # pred[j]: main's token for position L+j+1
        drafts = toks_1T[0, L + 1 : L + K + 1]
        num_ok = int((pred_1T[0, :K] == drafts).long().cumprod(0).sum())
        stats.rounds.append((L, drafts.tolist()))
        for k in range(K):
            stats.proposed[k] += 1
            stats.accepted[k] += int(k < num_ok)
        stats.verify_forwards += 1
        stats.verify_tokens += num_ok + 1
        toks_1T[:, L + 1 : L + num_ok + 2] = pred_1T[:, : num_ok + 1]
        hid[0][:, L : L + num_ok + 1] = mtp.main_hidden(h_1TD[:, : num_ok + 1], model)
        L += num_ok + 1
    return toks_1T[:, : P + max_new]


@torch.no_grad()
def compare_decoding(
    model: nn.Module, prompts_BT: torch.Tensor, max_new_tokens: int
) -> dict[str, float]:
    """Plain vs MTP-speculative greedy decoding of each prompt (batch 1), timed in one run.

    Returns per-depth acceptance `spec_accept_d<k>`, `spec_tokens_per_forward`, decode
    tokens/s of both, their ratio `spec_speedup` and `spec_identical` (1.0 when every
    speculative output equals the plain greedy one, as it must).
    """

    def sync() -> None:  # GPU work is asynchronous: wait for it before reading the clock
        if prompts_BT.is_cuda:
            torch.cuda.synchronize(prompts_BT.device)

    warm_1T = prompts_BT[:1, : min(4, prompts_BT.shape[1])]
    generate(model, warm_1T, 2)  # first-call allocations out of the timings
    speculative_generate(model, warm_1T, 2)
    sync()
    t0 = time.perf_counter()
    plain = [generate(model, p[None], max_new_tokens) for p in prompts_BT]
    sync()
    plain_s = time.perf_counter() - t0
    stats = SpecStats()
    t0 = time.perf_counter()
    spec = [speculative_generate(model, p[None], max_new_tokens, stats=stats) for p in prompts_BT]
    sync()
    spec_s = time.perf_counter() - t0
    num_tokens = len(prompts_BT) * max_new_tokens
    out = {f"spec_accept_d{k + 1}": a for k, a in enumerate(stats.acceptance())}
    out.update(
        {
            "spec_tokens_per_forward": stats.tokens_per_forward(),
            "plain_decode_tokens_per_s": num_tokens / plain_s,
            "spec_decode_tokens_per_s": num_tokens / spec_s,
            "spec_speedup": plain_s / spec_s,
            "spec_identical": float(all(torch.equal(a, b) for a, b in zip(plain, spec))),
        }
    )
    return out


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
