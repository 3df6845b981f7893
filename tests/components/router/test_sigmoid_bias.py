"""sigmoid_bias router: gate closed forms, group limit, DS-code oracle, bias update rule and
precision, sequence-wise loss, and the bias seeing the whole global batch once per step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ablate import registry
from ablate.core.config import load_config
from ablate.core.trainer import train
from ablate.interfaces import BuildContext
from ablate.nn.balance import balance_loss, sequence_counts
from tests.components.router.gate_ref import ds_gate, sorted_pairs
from tests.conftest import REPO, tiny_model_config

GAMMA = 1.0e-3


def make(num_experts=16, topk=4, dim=32, **cfg):
    cls = registry.get("router", "sigmoid_bias")
    ctx = BuildContext(tiny_model_config(dim=dim))
    return cls(cls.Config(**cfg), ctx, num_experts, topk)


def test_weights_sum_to_route_scale_and_use_unbiased_scores():
    router = make(route_scale=2.5)
    router.bias.normal_(0, 0.3)
    x = torch.randn(64, 32)
    weights, ids = router(x)
    torch.testing.assert_close(weights.sum(-1), torch.full((64,), 2.5), rtol=0, atol=1e-6)
    scores = torch.sigmoid(x @ router.weight.T).gather(1, ids)
    torch.testing.assert_close(weights, 2.5 * scores / scores.sum(-1, keepdim=True))


def test_group_limit_keeps_chosen_experts_in_kept_groups():
    router = make(num_experts=16, topk=4, num_groups=4, topk_groups=2)
    router.bias.uniform_(-2.0, 0.5)  # negative biases: a 0 mask would wrongly win
    x = torch.randn(128, 32)
    _, ids = router(x)
    biased = torch.sigmoid(x @ router.weight.T) + router.bias
    group_score = biased.view(128, 4, 4).topk(2, dim=-1).values.sum(-1)
    kept = group_score.topk(2, dim=-1).indices
    assert (ids // 4)[..., None].eq(kept[:, None, :]).any(-1).all()


@pytest.mark.parametrize("num_groups,topk_groups", [(1, 1), (4, 2), (8, 3)])
def test_matches_deepseek_gate_oracle(num_groups, topk_groups):
    router = make(
        num_experts=16, topk=4, route_scale=2.5, num_groups=num_groups, topk_groups=topk_groups
    )
    router.bias.normal_(0, 0.5)
    x = torch.randn(96, 32)
    got = sorted_pairs(*router(x))
    want = sorted_pairs(
        *ds_gate(x, router.weight.detach(), router.bias, 4, num_groups, topk_groups, "sigmoid", 2.5)
    )
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)


def test_bias_update_closed_form():
    router = make(num_experts=4, topk=1, update_rate=GAMMA)
    router.counts.copy_(torch.tensor([3, 1, 0, 4]))
    router.after_optimizer_step()
    torch.testing.assert_close(router.bias, torch.tensor([-1, 1, 1, -1]) * GAMMA, rtol=0, atol=1e-9)
    assert router.counts.sum() == 0  # counts restart every step
    router.counts.fill_(5)
    before = router.bias.clone()
    router.after_optimizer_step()
    assert torch.equal(router.bias, before)  # sign(0) = 0


def test_thousand_updates_reach_one_in_fp32():
    router = make(num_experts=4, topk=1, update_rate=GAMMA)
    for _ in range(1000):
        router.counts.copy_(torch.tensor([0, 2, 2, 2]))  # expert 0 always under-loaded
        router.after_optimizer_step()
    assert router.bias.dtype == torch.float32
    assert abs(router.bias[0].item() - 1.0) <= 1e-5


def test_bias_is_fp32_buffer_outside_gradients_and_dtype_casts():
    router = make()
    assert "bias" in router.state_dict()
    assert all(p is not router.bias for p in router.parameters())
    router.to(torch.bfloat16)
    assert router.bias.dtype == torch.float32
    assert router.weight.dtype == torch.bfloat16


def test_large_bias_changes_choice_not_weight_values():
    router = make(num_experts=8, topk=2)
    x = torch.randn(64, 32)
    w0, ids0 = router(x)
    router.bias[:2] = 10.0  # forces experts 0 and 1 everywhere
    w1, ids1 = router(x)
    assert not torch.equal(ids0.sort(-1).values, ids1.sort(-1).values)
    assert (ids1.sort(-1).values == torch.tensor([0, 1])).all()
    scores = torch.sigmoid(x @ router.weight.T)
    chosen = scores.gather(1, ids1)
    torch.testing.assert_close(w1, chosen / chosen.sum(-1, keepdim=True))
    same = (ids0.sort(-1).values == ids1.sort(-1).values).all(-1)
    torch.testing.assert_close(sorted_pairs(w0, ids0)[0][same], sorted_pairs(w1, ids1)[0][same])


def test_sequence_loss_ignores_bias_and_matches_formula():
    router = make(num_experts=8, topk=2, seq_aux_alpha=1e-4)
    x = torch.randn(4 * 16, 32)
    router(x, num_seqs=4)
    loss0 = router.extra_losses()["seq_balance"]
    assert router.extra_losses() == {}  # a term belongs to one forward
    router.bias.normal_(0, 5.0)
    router(x, num_seqs=4)
    loss1 = router.extra_losses()["seq_balance"]
    assert loss0.item() == pytest.approx(loss1.item(), rel=1e-6)
    scores = torch.sigmoid(x @ router.weight.T)
    chosen = sequence_counts(scores.topk(2, dim=-1).indices, 4, 8)
    norm = (scores / scores.sum(-1, keepdim=True)).view(4, 16, 8)
    assert loss1.item() == pytest.approx(1e-4 * balance_loss(norm, chosen, 2).item(), rel=1e-6)
    loss1.backward()
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0


def test_sequence_loss_is_alpha_when_balanced():
    # 8 tokens, 8 experts, top-2: token t prefers experts t and t+1, so each expert is chosen
    # exactly twice (f_i = 1) and the loss is alpha whatever the scores.
    router = make(num_experts=8, topk=2, dim=8, seq_aux_alpha=1e-4)
    router.weight.data = torch.eye(8)
    x = 5.0 * (torch.eye(8) + torch.eye(8).roll(1, dims=1))
    router(x, num_seqs=1)
    assert router.extra_losses()["seq_balance"].item() == pytest.approx(1e-4, rel=1e-6)


def test_only_training_forwards_count():
    router = make()
    x = torch.randn(10, 32)
    with torch.no_grad():
        router(x)
    router.eval()
    router(x)
    assert router.counts.sum() == 0
    router.train()
    router(x)
    assert router.counts.sum() == 10 * 4


def test_grad_accum_bias_sees_whole_global_batch_once_per_step(tmp_path, monkeypatch):
    cls = registry.get("router", "sigmoid_bias")
    seen = []
    original = cls.after_optimizer_step

    def spy(self):
        counts, bias = self.counts.clone(), self.bias.clone()
        original(self)
        seen.append((id(self), counts, self.bias - bias))

    monkeypatch.setattr(cls, "after_optimizer_step", spy)
    batch, seq, topk, steps = 3, 16, 2, 2
    cfg = load_config(
        REPO / "sweeps" / "base" / "tiny.yaml",
        [
            "model.dim=32",
            "model.num_layers=2",
            "model.ffn.name=moe",
            f"model.ffn.topk={topk}",
            "model.ffn.num_routed_experts=4",
            f"data.batch_size={batch}",
            f"data.seq_len={seq}",
            "data.dataset.max_chars=20000",
            "data.eval_windows=4",
            f"train.steps={steps}",
            "train.grad_accum=2",
            "train.warmup_steps=1",
            "train.log_every=1",
            "train.eval_every=1",
        ],
    )
    train(cfg, tmp_path)
    assert len(seen) == steps * 2  # once per optimizer step for each of the 2 MoE layers
    assert len({rid for rid, _, _ in seen}) == 2
    for _, counts, delta in seen:
        assert counts.sum().item() == 2 * batch * seq * topk  # both micro-batches, no eval
        want = GAMMA * torch.sign(counts.double().mean() - counts.double()).float()
        torch.testing.assert_close(delta, want, rtol=0, atol=1e-7)


def test_config_rejects_negative_rate():
    cls = registry.get("router", "sigmoid_bias")
    with pytest.raises(ValueError, match="update_rate"):
        dataclasses.replace(cls.Config(), update_rate=-1.0).check(None)
