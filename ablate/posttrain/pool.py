"""A pool of sampled completions kept by a filter, for supervised stages (rejection sampling,
distillation), and loading another trial's final model as a sampler (a teacher).

The pool is built once when its stage starts and saved with the stage's state, so a resumed
stage trains on the same samples. Batches are drawn with replacement, seeded by the step.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ablate.posttrain.bases import Problem
from ablate.posttrain.context import PostContext
from ablate.posttrain.rollout import Rollout, pack


class Pool:
    """Kept (problem, prompt ids, completion ids) rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[Problem, list[int], list[int]]] = []
        self.num_sampled = 0

    def build(
        self,
        ctx: PostContext,
        sampler: nn.Module,
        *,
        num_prompts: int,
        num_samples: int,
        temperature: float,
        keep_correct: bool,
        chunk: int = 16,
    ) -> None:
        """Sample `num_samples` completions of `num_prompts` training prompts from `sampler`;
        keep the distinct ones that are correct and well-formed (all, unless `keep_correct`)."""
        problems = ctx.task.problems("train", num_prompts, ctx.draw_seed(0, salt=1))
        seen = set()
        for i in range(0, num_prompts, chunk):
            ro = ctx.sample(problems[i : i + chunk], num_samples, temperature, i, model=sampler)
            good = (ro.correct_B() * ro.formatted_B()).bool().tolist()
            for b, problem in enumerate(ro.problems):
                n = int(ro.mask_BT[b].sum())
                ids = ro.ids_BT[b].tolist()
                first = int(ro.mask_BT[b].argmax()) if n else len(ids)
                prompt, completion = ids[:first], ids[first : first + n]
                key = (problem.prompt, tuple(completion))
                if (good[b] or not keep_correct) and key not in seen:
                    seen.add(key)
                    self.rows.append((problem, prompt, completion))
            self.num_sampled += len(ro.problems)

    def batch(self, ctx: PostContext, step: int, size: int) -> Rollout:
        g = torch.Generator().manual_seed(ctx.draw_seed(step))
        idx = torch.randint(len(self.rows), (size,), generator=g).tolist()
        rows = [self.rows[i] for i in idx]
        return pack([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], ctx.tokenizer)

    def state_dict(self) -> dict:
        rows = [(dataclasses.astuple(p), a, b) for p, a, b in self.rows]
        return {"rows": rows, "num_sampled": self.num_sampled}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [(Problem(*p), a, b) for p, a, b in state["rows"]]
        self.num_sampled = state["num_sampled"]


def load_sampler(trial: str, ctx: PostContext) -> nn.Module:
    """The final model of a trial directory or `trial:<id>` reference (post-trained weights
    when it has them), eval mode.

    Raises:
        ValueError: no such trial, or its tokenizer is not the student's (ids would differ).
    """
    from ablate.core import stages
    from ablate.core.config import load_config
    from ablate.core.trial import build
    from ablate.interop.convert import trial_weights
    from ablate.posttrain.stage import final_weights

    if stages.is_ref(trial) and ctx.trial_dir is None:
        raise ValueError(f"teacher={trial}: a trial reference needs the student's trial directory")
    root = stages.resolve_dir(trial, ctx.trial_dir or ".", key="teacher")  # a path: unchanged
    if not (root / "config.yaml").is_file():
        raise ValueError(f"teacher={trial}: no trial directory (config.yaml) there")
    cfg = load_config(root / "config.yaml")
    corpus, model, _ = build(cfg, ctx.device)
    vocab = ctx.tokenizer.vocab_size
    same = corpus.tokenizer.vocab_size == vocab and corpus.tokenizer.decode(
        list(range(vocab))
    ) == ctx.tokenizer.decode(list(range(vocab)))
    if not same:
        raise ValueError(f"teacher={trial}: its tokenizer differs from this trial's")
    weights = final_weights(root)
    model.load_state_dict(weights if weights is not None else trial_weights(root))
    return model.eval().requires_grad_(False)
