"""MTP component: target alignment and masking, loss composition, schedule, MTP-off identity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ablate.core.config import Config, ConfigError, DataConfig, from_dict, to_dict
from ablate.core.model import Block, Transformer
from ablate.interfaces import BuildContext, components
from ablate.registry import get
from components.mtp.mtp import IGNORE, MultiTokenPrediction, depth_targets
from tests.conftest import tiny_model_config

MTPConfig = get("mtp", "mtp").Config


def build(seed: int = 0, **mtp) -> Transformer:
    torch.manual_seed(seed)
    cfg = MTPConfig(**mtp) if mtp else get("mtp", "none").Config()
    return Transformer(tiny_model_config(mtp=cfg))


def window(T: int = 8, first: int = 10):
    full = torch.arange(first, first + T + 1)[None]  # t_0..t_T = first..first+T
    return full[:, :-1], full[:, 1:]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_alignment_and_masking_on_hand_made_sequence(k):
    T = 8
    idx, tgt = window(T)
    emb, labels = depth_targets(idx, tgt, k)
    for i in range(T):
        if i <= T - k - 1:  # depth k at i embeds t_{i+k} and predicts t_{i+k+1}
            assert emb[0, i] == 10 + i + k and labels[0, i] == 10 + i + k + 1
        else:  # the last k positions have no target inside the window
            assert labels[0, i] == IGNORE
    assert int((labels != IGNORE).sum()) == T - k


def test_document_separator_is_never_crossed():
    idx = torch.tensor([[5, 6, 7, 0, 8, 9, 4, 3]])  # 0 ends the first document
    tgt = torch.tensor([[6, 7, 0, 8, 9, 4, 3, 2]])
    _, lab1 = depth_targets(idx, tgt, 1, doc_sep_id=0)
    _, lab2 = depth_targets(idx, tgt, 2, doc_sep_id=0)
    # depth 1 at i embeds t_{i+1}: crosses when t_i is the separator (i = 3)
    assert (lab1[0] == IGNORE).nonzero().flatten().tolist() == [3, 7]
    # depth 2 at i embeds t_{i+2}: crosses when t_i or t_{i+1} is the separator (i = 2, 3)
    assert (lab2[0] == IGNORE).nonzero().flatten().tolist() == [2, 3, 6, 7]
    _, plain = depth_targets(idx, tgt, 2)
    assert (plain[0] == IGNORE).nonzero().flatten().tolist() == [6, 7]


def test_depth_losses_match_a_by_hand_computation():
    model = build(depth=2)
    mtp = model.mtp
    g = torch.Generator().manual_seed(1)
    full = torch.randint(0, 37, (2, 13), generator=g)
    idx, tgt = full[:, :-1], full[:, 1:]
    T = idx.shape[1]
    h0 = model.trunk(idx)
    losses, _ = mtp.depth_losses(h0, idx, tgt, model)
    h = h0
    for k in (1, 2):
        emb_ids = torch.cat([full[:, k : k + T], torch.zeros(2, T, dtype=torch.long)], 1)[:, :T]
        m = mtp.depths[k - 1]
        x = m.eh_proj(torch.cat([m.enorm(model.tok_emb(emb_ids)), m.hnorm(h)], -1))
        h = m.block(x)
        logits = model.head(m.final_norm(h))
        want = F.cross_entropy(logits[:, : T - k].flatten(0, 1), full[:, k + 1 :].flatten())
        torch.testing.assert_close(losses[k - 1], want)  # the last k positions left out


def test_total_loss_is_main_plus_lambda_mean_of_depths():
    model = build(depth=2, weight=0.25)
    idx, tgt = window(10, first=3)
    _, main = model(idx, tgt)
    term = model.mtp.extra_losses()["mtp"]
    losses, _ = model.mtp.depth_losses(model.trunk(idx), idx, tgt, model)
    torch.testing.assert_close(term, 0.25 * (losses[0] + losses[1]) / 2)
    total = main + sum(v for c in components(model) for v in c.extra_losses().values())
    torch.testing.assert_close(total, main)  # extra_losses returns each forward's term once
    window_model = build(depth=2, weight=0.25, normalize="window")
    w_losses, _ = window_model.mtp.depth_losses(model.trunk(idx), idx, tgt, model)
    for k, (lv, lw) in enumerate(zip(losses, w_losses), start=1):  # paper's 1/T normaliser
        torch.testing.assert_close(lw, lv * (10 - k) / 10)


def test_hidden_input_pre_or_post_final_norm():
    h = torch.randn(2, 5, 64)
    pre, post = build(depth=1), build(depth=1, hidden_input="post_norm")
    assert torch.equal(pre.mtp.main_hidden(h, pre), h)  # torchtitan: before the final norm
    torch.testing.assert_close(post.mtp.main_hidden(h, post), post.final_norm(h))  # Megatron


def test_per_depth_metrics_and_eval_mode():
    model = build(depth=2)
    idx, tgt = window(10, first=3)
    model(idx, tgt)
    assert set(model.mtp.extra_losses()) == {"mtp"}
    m = model.mtp.metrics()
    assert set(m) == {"mtp_weight", "mtp_loss_d1", "mtp_loss_d2", "mtp_top1_d1", "mtp_top1_d2"}
    assert 0.0 <= m["mtp_top1_d1"] <= 1.0 and m["mtp_loss_d1"] > 0
    assert model.mtp.metrics() == m  # kept until new forwards arrive (summary reads it)
    model.eval()
    model(idx, tgt)
    assert model.mtp.metrics() == {} and model.mtp.extra_losses() == {}


def test_weight_schedule_survives_checkpoint_resume():
    model = build(depth=1, weight=0.3, weight_after=0.1, switch_step=2)
    assert model.mtp.current_weight() == 0.3
    model.mtp.after_optimizer_step()
    state = model.state_dict()
    assert int(state["mtp.num_steps"]) == 1
    resumed = build(seed=5, depth=1, weight=0.3, weight_after=0.1, switch_step=2)
    resumed.load_state_dict(state)
    resumed.mtp.after_optimizer_step()
    assert resumed.mtp.current_weight() == 0.1


def _train(model: Transformer, steps: int = 3) -> None:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}], lr=1e-2
    )
    g = torch.Generator().manual_seed(7)
    for _ in range(steps):
        full = torch.randint(0, 37, (4, 17), generator=g)
        _, loss = model(full[:, :-1], full[:, 1:])
        for c in components(model):
            loss = loss + sum(c.extra_losses().values(), torch.zeros(()))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        for c in components(model):
            c.after_optimizer_step()


def test_mtp_off_leaves_params_and_loss_exactly_as_without():
    off, on = build(seed=3), build(seed=3, depth=2)
    assert not [n for n, _ in off.named_parameters() if n.startswith("mtp.")]
    main_on = {k: v for k, v in on.state_dict().items() if not k.startswith("mtp.")}
    assert main_on.keys() == off.state_dict().keys()
    assert all(torch.equal(v, off.state_dict()[k]) for k, v in main_on.items())
    idx, tgt = window(10, first=3)
    assert torch.equal(off(idx, tgt)[1], on(idx, tgt)[1])  # forward's loss is the main loss
    # with lambda = 0 the MTP modules change nothing in the trunk's training trajectory
    off, zero = build(seed=3), build(seed=3, depth=1, weight=0.0)
    _train(off)
    _train(zero)
    assert all(torch.equal(v, zero.state_dict()[k]) for k, v in off.state_dict().items())


def test_blocks_come_from_make_block_after_the_trunk():
    cfg = tiny_model_config()
    seen = []

    def make_block(i):
        seen.append(i)
        return Block(cfg, i)

    mtp = MultiTokenPrediction(MTPConfig(depth=3), BuildContext(cfg, -1, make_block))
    assert seen == [cfg.num_layers, cfg.num_layers + 1, cfg.num_layers + 2]
    assert all(isinstance(d.block, Block) for d in mtp.depths)
    assert mtp.depths[0].eh_proj.weight.shape == (cfg.dim, 2 * cfg.dim)
    assert mtp.depths[0].eh_proj.bias is None


@pytest.mark.parametrize("field,value", [("depth", 0), ("weight", -1.0), ("doc_sep_id", 99)])
def test_config_errors_name_the_key(field, value):
    cfg = Config(model=tiny_model_config(mtp=MTPConfig()), data=DataConfig(seq_len=16))
    data = to_dict(cfg)
    data["model"]["mtp"][field] = value
    with pytest.raises(ConfigError, match="model.mtp"):
        from_dict(data)
