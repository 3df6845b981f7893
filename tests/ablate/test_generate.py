"""generate: cached decoding gives the full forward's logits and tokens for every attention;
greedy/top-k/seeded sampling; argument checks."""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.core.model import Transformer
from ablate.infer.generate import generate
from ablate.infer.sampling import sample_next
from tests.conftest import tiny_model_config

ATTENTIONS = {
    "mha": ("mha", {}),
    "gqa": ("gqa", dict(num_kv_heads=2)),
    "mqa": ("gqa", dict(num_kv_heads=1)),
    "mla_naive": ("mla", dict(q_lora_rank=24, kv_lora_rank=16, cache_impl="naive")),
    "mla_absorbed": ("mla", dict(q_lora_rank=24, kv_lora_rank=16, cache_impl="absorbed")),
}


def model_with(arm: str) -> Transformer:
    name, fields = ATTENTIONS[arm]
    attn = registry.get("attention", name).Config(**fields)
    model = Transformer(tiny_model_config(attention=attn, init_std=0.2))  # peaky logits
    return model.eval()


@pytest.mark.parametrize("arm", list(ATTENTIONS))
def test_cached_logits_equal_full_forward(arm):
    model = model_with(arm)
    idx = torch.randint(0, 37, (2, 20))
    with torch.no_grad():
        full, _ = model(idx)
        caches = model.new_caches(2, 20)
        steps = [model(idx[:, :12], caches=caches)[0]]
        steps += [model(idx[:, t : t + 1], start_pos=t, caches=caches)[0] for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arm", list(ATTENTIONS))
def test_greedy_cached_equals_uncached(arm):
    model = model_with(arm).train()
    prompt = torch.randint(0, 37, (2, 5))
    a = generate(model, prompt, 12)
    b = generate(model, prompt, 12, use_cache=False)
    assert a.shape == (2, 17) and torch.equal(a[:, :5], prompt)
    assert torch.equal(a, b)
    assert model.training  # the caller's mode is restored


def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = model_with("mla_absorbed")
    prompt = torch.randint(0, 37, (3, 4))
    s1 = generate(model, prompt, 10, temperature=1.0, seed=1)
    assert torch.equal(s1, generate(model, prompt, 10, temperature=1.0, seed=1))
    assert not torch.equal(s1, generate(model, prompt, 10, temperature=1.0, seed=2))
    greedy = generate(model, prompt, 10)
    assert torch.equal(greedy, generate(model, prompt, 10, temperature=0.7, top_k=1, seed=3))
    cached = generate(model, prompt, 10, temperature=1.0, top_k=5, seed=4)
    assert torch.equal(
        cached, generate(model, prompt, 10, temperature=1.0, top_k=5, seed=4, use_cache=False)
    )


def nanogpt_greedy(model: Transformer, ids: torch.Tensor, num_new: int) -> torch.Tensor:
    """The reference: each token from a full forward of the last max_seq_len tokens."""
    for _ in range(num_new):
        logits, _ = model(ids[:, -model.cfg.max_seq_len :])
        ids = torch.cat((ids, logits[:, -1].argmax(-1, keepdim=True)), 1)
    return ids


@pytest.mark.parametrize("arm", ["mha", "mla_absorbed"])
def test_generation_past_the_context(arm):
    model = model_with(arm)  # max_seq_len 32
    prompt = torch.randint(0, 37, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = nanogpt_greedy(model, prompt, 70)
    assert torch.equal(generate(model, prompt, 70, context_shift=1), exact)
    for shift in (None, 5, 32):
        cached = generate(model, prompt, 70, context_shift=shift)
        assert torch.equal(
            cached, generate(model, prompt, 70, context_shift=shift, use_cache=False)
        )
    long_prompt = exact[:, :50]  # longer than the context: its last tokens are the context
    assert torch.equal(generate(model, long_prompt, 26, context_shift=1), exact)
    sampled = dict(temperature=1.0, top_k=8, seed=3, context_shift=4)
    s = generate(model, prompt, 60, **sampled)
    assert torch.equal(s, generate(model, prompt, 60, **sampled))
    assert torch.equal(s, generate(model, prompt, 60, **sampled, use_cache=False))


def test_sample_next_top_k_support():
    logits = torch.randn(4, 37)
    g = torch.Generator().manual_seed(0)
    allowed = logits.topk(3, dim=-1).indices
    for _ in range(20):
        ids = sample_next(logits, temperature=2.0, top_k=3, generator=g)
        assert (allowed == ids[:, None]).any(-1).all()
    assert torch.equal(sample_next(logits), logits.argmax(-1))


def test_argument_errors():
    model = model_with("mha")
    with pytest.raises(ValueError, match="context_shift=0"):
        generate(model, torch.zeros(1, 30, dtype=torch.long), 3, context_shift=0)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 3, temperature=-1.0)


def test_cli_generate_from_a_trained_trial(tmp_path):
    import subprocess
    import sys

    from ablate.core.config import load_config
    from ablate.core.trainer import train
    from tests.conftest import REPO

    cfg = load_config(
        REPO / "sweeps" / "base" / "tiny.yaml",
        ["train.steps=5", "model.max_seq_len=64", "data.seq_len=32"],
    )
    train(cfg, tmp_path)
    run = [
        sys.executable,
        "-m",
        "ablate",
        "generate",
        str(tmp_path),
        "--prompt",
        "def ",
        "--tokens",
        "20",
    ]
    out = subprocess.run(run, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.startswith("def ") and len(out.rstrip("\n")) >= 4 + 1
    again = subprocess.run(run, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out == again  # greedy is deterministic
    bad = subprocess.run(
        [sys.executable, "-m", "ablate", "generate", str(tmp_path / "x")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no checkpoint.pt" in bad.stderr
