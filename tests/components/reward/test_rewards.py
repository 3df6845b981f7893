"""The rule rewards on crafted completions: well-formed, malformed, right, wrong, mixed."""

from __future__ import annotations

import pytest

from ablate import registry
from ablate.posttrain.bases import Problem
from ablate.posttrain.format import parse

PROBLEM = Problem("12+34=", "46", "<think>2+4+0=6 1+3+0=4</think><answer>46</answer>")
RIGHT = "<think>2+4+0=6 1+3+0=4</think><answer>46</answer>"
WRONG = "<think>2+4+0=6 1+3+0=5</think><answer>56</answer>"
NO_THINK = "<answer>46</answer>"
UNCLOSED = "<think>2+4+0=6<answer>46</answer>"
TRAILING = RIGHT + "46"
NESTED = "<think>x<think></think><answer>46</answer>"
MIXED = "<think>c+e+a=g 1+3+0=4</think><answer>46</answer>"  # 4 of 15 are letters


def _task():
    return registry.build(registry.get("dataset", "addition").Config())


def _reward(name, **fields):
    return registry.build(registry.get("reward", name).Config(**fields))


@pytest.mark.parametrize(
    "text,fmt,acc,acc_strict",
    [
        (RIGHT, 1, 1, 1),
        (WRONG, 1, 0, 0),
        (NO_THINK, 0, 1, 0),
        (UNCLOSED, 0, 1, 0),
        (TRAILING, 0, 1, 0),
        (NESTED, 0, 1, 0),
        ("46", 0, 0, 0),
        ("", 0, 0, 0),
        ("<think>2+4</think><answer> 46</answer>", 1, 0, 0),  # exact: no stripping
    ],
)
def test_format_and_accuracy(text, fmt, acc, acc_strict):
    task = _task()
    assert _reward("format")(text, PROBLEM, task) == fmt
    assert (parse(text) is not None) == bool(fmt)
    assert _reward("accuracy")(text, PROBLEM, task) == acc
    assert _reward("accuracy", require_format=True)(text, PROBLEM, task) == acc_strict


def test_consistency_is_the_share_of_prescribed_reasoning_characters():
    task = _task()
    r = _reward("consistency")
    assert r(RIGHT, PROBLEM, task) == 1.0
    assert r(MIXED, PROBLEM, task) == pytest.approx(11 / 15)
    assert r(NO_THINK, PROBLEM, task) == 0.0
    assert r("<think></think><answer>46</answer>", PROBLEM, task) == 0.0
    letters = _reward("consistency", vocabulary="abcdefg+=")  # digits and space excluded
    assert letters(MIXED, PROBLEM, task) == pytest.approx(10 / 15)


def test_weights_sum_into_the_reward():
    import torch

    from ablate.core.config import Config, PostConfig
    from ablate.posttrain.context import PostContext
    from ablate.posttrain.rollout import Rollout

    rewards = (_reward("accuracy", weight=2.0).cfg, _reward("format", weight=0.5).cfg)
    cfg = Config(post=PostConfig(rewards=rewards))
    ctx = PostContext.build(cfg, None, None, torch.device("cpu"), None)
    ro = Rollout([PROBLEM] * 3, [RIGHT, WRONG, NO_THINK], torch.zeros(3, 1), torch.zeros(3, 1))
    total, parts = ctx.score(ro)
    assert total.tolist() == [2.5, 0.5, 2.0]
    assert parts["format"].tolist() == [1.0, 1.0, 0.0]
