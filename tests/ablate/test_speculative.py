"""MTP speculative decoding: lossless vs plain greedy, acceptance as defined, MTP-free loading."""

from __future__ import annotations

import pytest
import torch

from ablate.core.model import Transformer
from ablate.infer.compare import compare_decoding
from ablate.infer.generate import drop_mtp, generate, load_without_mtp
from ablate.infer.speculative import SpecStats, speculative_generate
from ablate.registry import get
from tests.conftest import tiny_model_config

VOCAB = 37
MAX_LEN = 64
NEW_TOKENS = 40


def build(depth: int | None, seed: int = 0, **fields) -> Transformer:
    torch.manual_seed(seed)
    mtp = get("mtp", "mtp").Config(depth=depth, **fields) if depth else get("mtp", "none").Config()
    return Transformer(tiny_model_config(mtp=mtp, max_seq_len=MAX_LEN))


def chain_data(g: torch.Generator, B: int, T: int) -> torch.Tensor:
    """t_{i+1} = (5 t_i + 3) mod V, with 15% of tokens replaced by random ones: learnable."""
    seq = [torch.randint(0, VOCAB, (B, 1), generator=g)]
    for _ in range(T):
        noise = torch.rand(B, 1, generator=g) < 0.15
        rand = torch.randint(0, VOCAB, (B, 1), generator=g)
        seq.append(torch.where(noise, rand, (seq[-1] * 5 + 3) % VOCAB))
    return torch.cat(seq, 1)


def trained(depth: int, steps: int = 30) -> Transformer:
    model = build(depth)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(depth)
    for _ in range(steps):
        full = chain_data(g, 8, 24)
        _, loss = model(full[:, :-1], full[:, 1:])
        (loss + model.mtp.extra_losses()["mtp"]).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def trained_models():
    return {d: trained(d) for d in (1, 2)}


def prompts(B: int = 3, T: int = 5) -> torch.Tensor:
    return chain_data(torch.Generator().manual_seed(11), B, T - 1)


def check_drafts_and_acceptance(model: Transformer, prompt_1T: torch.Tensor) -> SpecStats:
    """Re-derive every round's drafts without caches and the acceptance from its definition."""
    K = model.mtp.num_depths
    stats = SpecStats()
    out = speculative_generate(model, prompt_1T, NEW_TOKENS, stats=stats)
    ref = generate(model, prompt_1T, NEW_TOKENS + K)  # greedy reference, K tokens further
    assert torch.equal(out, ref[:, : out.shape[1]])
    accepted = [0] * K
    with torch.no_grad():
        for L, drafts in stats.rounds:
            seq = torch.cat([ref[:, : L + 1], torch.tensor([drafts])], 1)  # t_0..t_L, d_1..d_K
            h = model.mtp.main_hidden(model.trunk(seq[:, :L]), model)  # positions 0..L-1
            for k in range(1, K + 1):
                h = model.mtp.depth_hidden(k, h, seq[:, k : L + k], model)
                want = model.mtp.depth_logits(k, h[:, -1:], model).argmax(-1).item()
                assert want == drafts[k - 1], (L, k)
            ok = True
            for k in range(K):  # accepted: this and all shallower drafts match main's greedy
                ok = ok and drafts[k] == ref[0, L + 1 + k].item()
                accepted[k] += ok
    assert stats.accepted == accepted
    assert stats.proposed == [len(stats.rounds)] * K
    # tokens per verify forward = 1 + sum of per-depth acceptance (1 + acceptance for D = 1)
    assert stats.tokens_per_forward() == pytest.approx(1 + sum(stats.acceptance()))
    return stats


@pytest.mark.parametrize("depth,hidden_input", [(1, "pre_norm"), (2, "pre_norm"), (2, "post_norm")])
def test_lossless_on_random_weights(depth, hidden_input):
    model = build(depth, seed=depth, hidden_input=hidden_input).eval()
    p = prompts()
    assert torch.equal(speculative_generate(model, p, NEW_TOKENS), generate(model, p, NEW_TOKENS))
    check_drafts_and_acceptance(model, p[:1])


@pytest.mark.parametrize("depth", [1, 2])
def test_lossless_on_trained_model(trained_models, depth):
    model = trained_models[depth]
    p = prompts()
    assert torch.equal(speculative_generate(model, p, NEW_TOKENS), generate(model, p, NEW_TOKENS))
    stats = check_drafts_and_acceptance(model, p[1:2])
    assert stats.acceptance()[0] > 0.5  # the drafter learned the chain
    assert stats.tokens_per_forward() > 1.5


def test_compare_decoding_reports_per_depth_metrics(trained_models):
    out = compare_decoding(trained_models[2], prompts(2), 16)
    assert out["spec_identical"] == 1.0
    assert {
        "spec_accept_d1",
        "spec_accept_d2",
        "spec_tokens_per_forward",
        "spec_speedup",
        "plain_decode_tokens_per_s",
        "spec_decode_tokens_per_s",
    } <= set(out)
    assert out["spec_accept_d2"] <= out["spec_accept_d1"]


def test_final_metrics_hook_runs_on_a_corpus(trained_models):
    from ablate.core.data import Corpus

    model = trained_models[1]
    val = chain_data(torch.Generator().manual_seed(3), 1, 400)[0]
    corpus = Corpus(tokenizer=None, train_N=val, val_N=val)
    with pytest.warns(UserWarning, match="clipped"):  # 32 + 64 tokens exceed max_seq_len 64
        out = model.mtp.final_metrics(model, corpus)
    assert out["spec_identical"] == 1.0
    assert 0 <= out["spec_accept_d1"] <= 1 and out["mtp_val_loss_d1"] > 0


def test_generate_dispatches_to_mtp_speculation(trained_models):
    model, p = trained_models[2], prompts()
    assert torch.equal(generate(model, p, 12, speculative="mtp"), generate(model, p, 12))
    with pytest.raises(ValueError, match="speculative"):
        generate(model, p, 4, speculative="mtp", temperature=1.0)


def test_errors():
    with pytest.raises(ValueError, match="MTP modules"):
        speculative_generate(build(None).eval(), prompts(), 4)
    with pytest.raises(ValueError, match="context_shift"):
        speculative_generate(build(2).eval(), prompts(T=10), 4, context_shift=MAX_LEN + 1)


@pytest.mark.parametrize("shift", [1, 7, None])
def test_lossless_past_the_context(trained_models, shift):
    model, p = trained_models[2], prompts(2, 20)
    plain = generate(model, p, 2 * MAX_LEN, context_shift=shift)
    stats = SpecStats()
    spec = speculative_generate(model, p, 2 * MAX_LEN, context_shift=shift, stats=stats)
    assert torch.equal(spec, plain)
    assert torch.equal(
        generate(model, p, 2 * MAX_LEN, context_shift=shift, speculative=True), plain
    )
    if shift != 1:  # a window that moves in steps leaves room to draft
        assert stats.accepted[0] > 0


def test_dropping_mtp_from_a_checkpoint_keeps_main_logits(trained_models, tmp_path):
    with_mtp = trained_models[2]
    torch.save({"model": with_mtp.state_dict(), "step": 30}, tmp_path / "checkpoint.pt")
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert any(k.startswith("mtp.") for k in ckpt["model"])
    assert not any(k.startswith("mtp.") for k in drop_mtp(ckpt["model"]))
    plain = load_without_mtp(build(None, seed=9), ckpt).eval()
    x = prompts(2, 20)
    with torch.no_grad():
        assert torch.equal(plain(x)[0], with_mtp(x)[0])
    assert torch.equal(generate(plain, x, 8), generate(with_mtp, x, 8))
    with pytest.raises(RuntimeError):  # anything else missing still fails loudly
        load_without_mtp(build(None), {k: v for k, v in ckpt["model"].items() if "head" not in k})
