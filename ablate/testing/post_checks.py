"""Checks of the post-training groups: stages take steps on a tiny task model, rewards score.

Posttrain: on a tiny model over the first registered task dataset, a stage cut to 2 steps
starts, steps with finite logged numbers, changes the weights, and its `state_dict` restores
into a fresh instance. A stage that cannot start from an untrained model or from the default
config alone (a teacher to name, no correct sample to keep) is skipped with its reason.
Reward: on a task's trace, a malformed and an empty completion, values are floats in [0, 1],
the same twice, and the reference trace scores at least as high as the empty completion.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ablate import registry
from ablate.core.config import Config, DataConfig, PostConfig
from ablate.core.model import Transformer
from ablate.testing.configs import POST_NEW_TOKENS, task_host, tiny_model_config
from ablate.testing.contract import CheckSkipped, Subject

TRACE_LEN = 128  # model length for the checks: a task's prompt + reference trace fit


def _context(stage_cfg):
    from ablate.posttrain.context import PostContext

    task_cfg = task_host()
    task = registry.build(task_cfg)
    tokenizer = registry.build(DataConfig().tokenizer)
    tokenizer.fit(task.load_text())
    post = PostConfig(stages=(stage_cfg,), max_new_tokens=POST_NEW_TOKENS)
    model_cfg = tiny_model_config(vocab_size=tokenizer.vocab_size, max_seq_len=TRACE_LEN)
    cfg = Config(model=model_cfg, data=DataConfig(dataset=task_cfg), post=post)
    torch.manual_seed(0)
    model = Transformer(model_cfg)
    fp32 = registry.build(registry.get("precision", "fp32").Config(), torch.device("cpu"))
    ctx = PostContext.build(cfg, model, tokenizer, torch.device("cpu"), fp32)
    ctx.stage_cfg = stage_cfg
    ctx.opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return cfg, ctx


def stage_steps(s: Subject) -> None:
    """start(), two finite steps that change the weights, a state_dict that restores."""
    small = {"steps": 2, "batch_size": 2}
    for name, value in (("group_size", 2), ("num_prompts", 4), ("samples_per_prompt", 2)):
        if hasattr(s.default_config(), name):
            small[name] = value
    stage_cfg = dataclasses.replace(s.default_config(), **small)
    cfg, ctx = _context(stage_cfg)
    stage = registry.build(stage_cfg, ctx)
    if stage.num_steps == 0:
        return  # a stage that trains nothing (none)
    try:
        stage_cfg.check(cfg)
        stage.start()
    except ValueError as e:
        raise CheckSkipped(f"cannot start on an untrained tiny model: {e}") from None
    before = [p.detach().clone() for p in ctx.model.parameters()]
    for step in (1, 2):
        out = stage.step(step)
        s.expect(isinstance(out, dict), f"step() gave a {type(out).__name__}, not a dict")
        bad = {k: v for k, v in out.items() if not math.isfinite(float(v))}
        s.expect(not bad, f"step {step} logged non-finite numbers {bad}")
    changed = any(not torch.equal(a, b) for a, b in zip(before, ctx.model.parameters()))
    s.expect(changed, "two steps changed no weight")
    again = registry.build(stage_cfg, ctx)
    again.load_state_dict(stage.state_dict())
    s.expect(again.step(3) is not None, "a stage restored from state_dict() cannot step")


def reward_values(s: Subject) -> None:
    """Floats in [0, 1], deterministic; the reference trace scores >= an empty completion."""
    task = registry.build(task_host())
    reward = registry.build(s.default_config())
    problem = task.problems("train", 1, 0)[0]
    texts = (problem.trace, "<think>" + problem.trace, "")
    values = [reward(t, problem, task) for t in texts]
    for t, v in zip(texts, values):
        s.expect(isinstance(v, float) and 0 <= v <= 1, f"reward of {t!r} is {v!r}, not in [0, 1]")
    s.expect(values == [reward(t, problem, task) for t in texts], "rewards differ when repeated")
    s.expect(values[0] >= values[2], "the reference trace scores below an empty completion")
