"""softmax_aux router: raw top-K probabilities, group limit by group max, DS-code oracle, and
the auxiliary balance loss in both scopes."""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.interfaces import BuildContext
from ablate.nn.balance import balance_loss, expert_counts, sequence_counts
from tests.components.router.gate_ref import ds_gate, sorted_pairs
from tests.conftest import tiny_model_config


def make(num_experts=16, topk=4, dim=32, **cfg):
    cls = registry.get("router", "softmax_aux")
    return cls(cls.Config(**cfg), BuildContext(tiny_model_config(dim=dim)), num_experts, topk)


def test_weights_are_raw_topk_probabilities():
    router = make(route_scale=1.0)
    x = torch.randn(64, 32)
    weights, ids = router(x)
    probs = torch.softmax(x @ router.weight.T, dim=-1)
    torch.testing.assert_close(weights, probs.topk(4, dim=-1).values)
    assert (weights.sum(-1) < 1).all()
    assert not any(name == "bias" for name, _ in router.named_buffers())
    router16 = make(route_scale=16.0)
    router16.load_state_dict(router.state_dict())
    torch.testing.assert_close(router16(x)[0], 16.0 * weights)


def test_group_limit_uses_group_max():
    router = make(num_experts=16, topk=3, num_groups=4, topk_groups=1)
    x = torch.randn(128, 32)
    _, ids = router(x)
    probs = torch.softmax(x @ router.weight.T, dim=-1)
    best_group = probs.view(128, 4, 4).amax(-1).argmax(-1)
    assert ((ids // 4) == best_group[:, None]).all()


@pytest.mark.parametrize("num_groups,topk_groups", [(1, 1), (4, 2)])
def test_matches_deepseek_gate_oracle(num_groups, topk_groups):
    router = make(route_scale=16.0, num_groups=num_groups, topk_groups=topk_groups)
    x = torch.randn(96, 32)
    got = sorted_pairs(*router(x))
    want = sorted_pairs(
        *ds_gate(x, router.weight.detach(), None, 4, num_groups, topk_groups, "softmax", 16.0)
    )
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("scope", ["sequence", "micro_batch"])
def test_aux_loss_formula_per_scope(scope):
    router = make(num_experts=8, topk=2, alpha=1e-3, scope=scope)
    x = torch.randn(4 * 16, 32)
    _, ids = router(x, num_seqs=4)
    loss = router.extra_losses()["aux_balance"]
    assert router.extra_losses() == {}
    probs = torch.softmax(x @ router.weight.T, dim=-1)
    num_scopes = 4 if scope == "sequence" else 1
    chosen = sequence_counts(ids, num_scopes, 8)
    want = 1e-3 * balance_loss(probs.view(num_scopes, -1, 8), chosen, 2)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    if scope == "micro_batch":  # the batch form by hand: E/(K T^2) sum_e c_e sum_t p_te
        manual = 8 / (2 * 64**2) * (expert_counts(ids, 8).float() * probs.sum(0)).sum()
        assert loss.item() == pytest.approx(1e-3 * manual.item(), rel=1e-5)
    loss.backward()
    assert router.weight.grad.abs().sum() > 0


def test_no_loss_outside_training():
    router = make(alpha=1e-2).eval()
    router(torch.randn(8, 32))
    assert router.extra_losses() == {}
