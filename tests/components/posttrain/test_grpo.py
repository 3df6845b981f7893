"""GRPO's advantages, KL estimator and loss against hand computations on a fixed small batch."""

from __future__ import annotations

import math

import pytest
import torch

from components.posttrain.grpo import group_advantages, grpo_loss, k3


def test_group_advantages_by_hand():
    # two groups of G = 3: rewards (1, 0, 0.5) and (2, 2, 2)
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.5, 2.0, 2.0, 2.0]), 3, eps=1e-4)
    # group 1: mean 0.5, sample std sqrt(((.5)^2 + (.5)^2 + 0) / 2) = 0.5
    want = [0.5 / 0.5001, -0.5 / 0.5001, 0.0, 0.0, 0.0, 0.0]
    assert adv.tolist() == pytest.approx(want, abs=1e-6)


def test_k3_non_negative_and_zero_for_identical_policies():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 7, generator=g) * 5
    ref = -torch.rand(4, 7, generator=g) * 5
    assert (k3(logp, ref) >= 0).all()
    assert torch.equal(k3(logp, logp), torch.zeros(4, 7))
    # one value by hand: ref - logp = 0.5 -> e^0.5 - 0.5 - 1
    assert k3(torch.tensor([-1.0]), torch.tensor([-0.5])).item() == pytest.approx(
        math.exp(0.5) - 1.5
    )


def test_grpo_loss_by_hand():
    # 2 completions; completion 0 has 2 scored tokens, completion 1 has 1 (then padding)
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    old = torch.tensor([[0.0, -1.0, -2.0], [0.0, -1.0, -3.0]])
    logp = torch.tensor([[0.0, -0.5, -2.0], [0.0, -1.5, -9.0]])  # ratios e^.5, 1; e^-.5
    ref = torch.tensor([[0.0, -1.0, -1.0], [0.0, -1.5, -9.0]])
    adv = torch.tensor([1.0, -2.0])
    eps, beta = 0.2, 0.1
    loss, stats = grpo_loss(logp, old, ref, adv, mask, eps, beta)
    r1, r3 = math.exp(0.5), math.exp(-0.5)
    kl = lambda d: math.exp(d) - d - 1  # noqa: E731  (d = ref - logp)
    # completion 0: token 1 min(r1*1, 1.2*1) = 1.2, kl(-0.5); token 2 ratio 1 -> 1, kl(1)
    tok1 = -(min(r1, 1.2) - beta * kl(-0.5))
    tok2 = -(1.0 - beta * kl(1.0))
    # completion 1: token 1 A = -2: min(r3*-2, clip(r3)*-2) = min(-1.213, -1.6) = -1.6; kl 0
    tok3 = -(min(r3 * -2, 0.8 * -2) - beta * kl(0.0))
    want = ((tok1 + tok2) / 2 + tok3 / 1) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert stats["kl"] == pytest.approx((kl(-0.5) + kl(1.0) + 0.0) / 3, rel=1e-6)
    assert stats["clip_frac"] == pytest.approx(2 / 3)  # tokens 1 and 3 leave [0.8, 1.2]


def test_first_inner_update_is_the_policy_gradient_with_zero_kl():
    # ratio 1 and ref = policy: loss value 0 for zero-mean advantages, gradient -A/|o| per token
    logp = torch.tensor([[0.0, -1.0, -2.0], [0.0, -0.7, -0.3]], requires_grad=True)
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, 0.2, 0.04)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert stats["kl"] == 0.0
    want = torch.tensor([[0.0, -0.25, -0.25], [0.0, 0.25, 0.25]])  # -A / (|o| * num)
    assert torch.allclose(logp.grad, want)
