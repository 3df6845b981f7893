"""Balance metrics: MaxVio closed forms, per-sequence counts, relative load, f·P loss range."""

from __future__ import annotations

import pytest
import torch

from ablate.nn.balance import (
    balance_loss,
    check_routing,
    expert_counts,
    maxvio,
    relative_load,
    sequence_counts,
)


def test_maxvio_closed_forms():
    assert maxvio(torch.tensor([3, 1, 0, 4])).item() == pytest.approx(1.0)
    assert maxvio(torch.tensor([5, 5, 5, 5])).item() == 0.0
    assert maxvio(torch.tensor([0, 0, 0])).item() == 0.0  # nothing routed: no violation
    num_experts, topk = 16, 2  # collapse onto K of N experts: N/K - 1
    collapse = torch.zeros(num_experts).index_fill_(0, torch.arange(topk), 10.0)
    assert maxvio(collapse).item() == pytest.approx(num_experts / topk - 1)
    rows = maxvio(torch.tensor([[3, 1, 0, 4], [2, 2, 2, 2]]))
    torch.testing.assert_close(rows, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_counts_and_relative_load():
    ids = torch.tensor([[0, 1], [1, 3], [3, 0], [3, 2]])
    assert expert_counts(ids, 5).tolist() == [2, 2, 1, 3, 0]
    assert sequence_counts(ids, 2, 5).tolist() == [[1, 2, 0, 1, 0], [1, 0, 1, 2, 0]]
    rel = relative_load(torch.tensor([3, 1, 0, 4]))
    torch.testing.assert_close(rel, torch.tensor([1.5, 0.5, 0.0, 2.0], dtype=torch.float64))
    # sequence 0 loads (1,2,0,1,0): mean 0.8, MaxVio 1.5; sequence 1 (1,0,1,2,0): 1.5
    assert maxvio(sequence_counts(ids, 2, 5)).mean().item() == pytest.approx(1.5)


def test_balance_loss_range_and_gradient():
    num_experts, topk, tokens = 8, 2, 16
    uniform = torch.full((1, tokens, num_experts), 1 / num_experts, requires_grad=True)
    balanced = torch.full((1, num_experts), tokens * topk / num_experts)
    assert balance_loss(uniform, balanced, topk).item() == pytest.approx(1.0)
    # collapse onto K experts with s' equal on them: E/K
    probs = torch.zeros(1, tokens, num_experts)
    probs[..., :topk] = 1 / topk
    chosen = torch.zeros(1, num_experts)
    chosen[0, :topk] = tokens
    assert balance_loss(probs, chosen, topk).item() == pytest.approx(num_experts / topk)
    counts = torch.tensor([[4.0, 0, 0, 0, 0, 0, 0, 28]], requires_grad=True)
    balance_loss(uniform, counts, topk).backward()
    assert counts.grad is None and uniform.grad is not None  # only P carries gradient


@pytest.mark.parametrize(
    "args,match",
    [
        ((8, 9, 1, 1), "topk"),
        ((8, 2, 3, 1), "num_groups"),
        ((8, 2, 4, 5), "topk_groups"),
        ((8, 5, 4, 2), "exceeds"),
    ],
)
def test_check_routing_rejects_impossible_shapes(args, match):
    with pytest.raises(ValueError, match=match):
        check_routing(*args)
