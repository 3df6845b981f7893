"""Sampling completions with the KV-cached decoder, packing them, and per-token log-probs.

Rows of a rollout are grouped by problem: the G samples of problem i are rows i*G .. i*G+G-1.
A completion ends at its first end marker (`bases.END`, kept as its last scored token) or after
`max_new_tokens`. Shapes (docs/design.md#shapes): B rows (prompts x samples), T positions,
V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.infer.generate import generate
from ablate.posttrain.bases import END, Problem
from ablate.posttrain.format import answer_of, parse


@dataclass
class Rollout:
    """Sampled (or given) completions of `problems`, packed into right-padded rows."""

    problems: list[Problem]  # one per row
    texts: list[str]  # completion text before the end marker
    ids_BT: torch.Tensor  # prompt + completion token ids, right-padded with 0
    mask_BT: torch.Tensor  # float: 1 where ids_BT[b, t] is a scored completion token

    @property
    def lengths_B(self) -> torch.Tensor:
        return self.mask_BT.sum(1)

    def correct_B(self) -> torch.Tensor:
        """1 where the answer inside <answer>...</answer> is exactly the reference."""
        ok = [answer_of(t) == p.answer for t, p in zip(self.texts, self.problems)]
        return torch.tensor(ok, dtype=torch.float32)

    def formatted_B(self) -> torch.Tensor:
        """1 where the whole completion is well-formed."""
        return torch.tensor([parse(t) is not None for t in self.texts], dtype=torch.float32)


def cut(completion: list[int], end_id: int) -> list[int]:
    """Completion ids up to and including the first end marker."""
    return completion[: completion.index(end_id) + 1] if end_id in completion else completion


def pack(
    problems: list[Problem], prompts: list[list[int]], completions: list[list[int]], tokenizer
) -> Rollout:
    """Rows prompt + completion, right-padded; the mask covers the completion tokens."""
    T = max(len(p) + len(c) for p, c in zip(prompts, completions))
    ids_BT = torch.zeros(len(prompts), T, dtype=torch.long)
    mask_BT = torch.zeros(len(prompts), T)
    end_id = tokenizer.encode(END)[0]
    texts = []
    for b, (p, c) in enumerate(zip(prompts, completions)):
        ids_BT[b, : len(p) + len(c)] = torch.tensor(p + c)
        mask_BT[b, len(p) : len(p) + len(c)] = 1.0
        texts.append(tokenizer.decode(c[:-1] if c and c[-1] == end_id else c))
    return Rollout(problems, texts, ids_BT, mask_BT)


def traces(problems: list[Problem], tokenizer) -> Rollout:
    """The task's reference traces of `problems` as a rollout (for supervised fine-tuning)."""
    prompts = [tokenizer.encode(p.prompt) for p in problems]
    return pack(problems, prompts, [tokenizer.encode(p.trace + END) for p in problems], tokenizer)


@torch.no_grad()
def sample(
    model: nn.Module,
    tokenizer,
    problems: list[Problem],
    num_samples: int,
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    device: torch.device,
) -> Rollout:
    """`num_samples` completions of every problem (prompts of one length decode together)."""
    rows = [p for p in problems for _ in range(num_samples)]
    prompts = [tokenizer.encode(p.prompt) for p in rows]
    end_id = tokenizer.encode(END)[0]
    completions: list[list[int]] = [[] for _ in rows]
    by_len: dict[int, list[int]] = {}
    for b, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(b)
    for k, (n, idx) in enumerate(sorted(by_len.items())):
        prompt_BT = torch.tensor([prompts[b] for b in idx], device=device)
        out_BT = generate(
            model, prompt_BT, max_new_tokens, temperature=temperature, seed=seed * 1009 + k
        )
        for b, row in zip(idx, out_BT[:, n:].tolist()):
            completions[b] = cut(row, end_id)
    return pack(rows, prompts, completions, tokenizer)


def token_logprobs(
    model: nn.Module, ids_BT: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log p(ids[b, t] | ids[b, :t]) at every position (0 at t = 0), logits / temperature."""
    logits_BTV, _ = model(ids_BT)
    if temperature > 0:
        logits_BTV = logits_BTV / temperature
    logp_BTV = F.log_softmax(logits_BTV[:, :-1].float(), dim=-1)
    logp_BT = logp_BTV.gather(-1, ids_BT[:, 1:, None]).squeeze(-1)
    return F.pad(logp_BT, (1, 0))


def supervised_loss(model: nn.Module, rollout: Rollout, device: torch.device) -> torch.Tensor:
    """Mean negative log-likelihood over the scored completion tokens of all rows."""
    mask_BT = rollout.mask_BT.to(device)
    logp_BT = token_logprobs(model, rollout.ids_BT.to(device))
    return -(logp_BT * mask_BT).sum() / mask_BT.sum().clamp(min=1)
